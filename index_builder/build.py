"""``synesthete-index build``: catalogue + audio -> Milvus vectors + fingerprints, incrementally.

The contract, and why it holds:

* **One writer.** ``<data_dir>/build.lock`` (fcntl) is held for the whole build;
  worker processes only compute, the main process alone writes.
* **Nothing lost or duplicated after ``kill -9``.** A track counts as done only
  when ``CatalogueDB.mark_indexed`` has run, and that happens *last*, after its
  vectors and fingerprints are written and Milvus is flushed.  Re-doing a track
  is harmless: ``VectorStore.upsert_tracks`` deletes old segments first and the
  fingerprint index replaces a track in one transaction.  At start, marks whose
  vectors or fingerprints are missing are not trusted, and vectors/fingerprints
  of tracks that should not be there (crash before marking a removal, a row that
  left the CSV) are deleted.
* **Incremental.** ``audio_sig`` = size + mtime_ns + a hash of the first and
  last 64 KiB; same sig and same model id => skipped.  Bad files are remembered
  with their sig, so an unchanged bad file is not decoded again every run.
* **Model change => rebuild.** The collections carry the model id; a different
  backbone/head recreates them and every track is embedded again.
* **One bad file never kills the build.** Typed audio errors are reported; a
  worker that dies (segfault, OOM kill) breaks the pool, which is restarted; the
  tracks that were in flight are retried one at a time so the culprit is found
  and marked bad.
* **Bounded memory.** At most ``max_in_flight`` tracks are decoded at once and
  results are written every ``batch_size`` tracks or ``batch_seconds``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.descriptors import DescriptorStore, backbone_key
from engine.catalogue import CatalogueDB, Track
from engine.errors import StoreLockedError, SynestheteError
from engine.settings import Settings

from .ingest import read_folder, read_kaggle_csv, tag_metadata
from .locking import BuildLock
from .matching import MatchResult, match_folder
from .report import BuildReport, FailedTrack
from .similarity_fit import refit_similarity
from .worker import DEFAULT_EMBEDDER, WorkResult

log = logging.getLogger(__name__)

FAILURES_META = "build_failures"
SIG_EDGE_BYTES = 64 * 1024


class BuildInputError(SynestheteError):
    """The user gave us something we cannot build from (bad CSV columns, missing folder)."""

    kind = "build_input"


class IndexInUseError(SynestheteError):
    kind = "index_in_use"
    user_message = "The bot or another build is using the index; stop it first."


class DiskFullError(SynestheteError):
    kind = "disk_full"
    user_message = ("The disk is full. The index is consistent (the unfinished batch was not marked); "
                    "free some space and run the build again to continue.")


@dataclass
class BuildOptions:
    csv: Path | None = None
    audio: Path | None = None
    not_spotify: bool = False
    rebuild: bool = False
    #: worker processes; None = CPU count
    workers: int | None = None
    report_path: Path | None = None
    batch_size: int = 16
    batch_seconds: float = 10.0
    #: tracks decoded at once (bounds memory); None = 2 x workers
    max_in_flight: int | None = None
    #: ``module:function(settings) -> Embedder`` run in each worker
    embedder: str = DEFAULT_EMBEDDER
    progress: bool = False
    use_tags: bool = True


def audio_sig(path: Path) -> str:
    """Cheap identity of a file's content: size, mtime and a hash of both ends.

    Why not a full hash: reading every byte of a large collection on every run
    costs more than the build; the ends catch re-encodes and retagging (ID3 at
    the start, APE/ID3v1 at the end) even when a copy kept the mtime.
    """
    st = os.stat(path)
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        h.update(fh.read(SIG_EDGE_BYTES))
        if st.st_size > SIG_EDGE_BYTES:
            fh.seek(max(SIG_EDGE_BYTES, st.st_size - SIG_EDGE_BYTES))
            h.update(fh.read(SIG_EDGE_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()}"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC anywhere in the exception chain, or a store's words for it (sqlite, Milvus)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        msg = str(e).lower()
        if "no space left" in msg or "disk is full" in msg or "database or disk is full" in msg:
            return True
        e = e.__cause__ or e.__context__
    return False


class _NotImplementedNoise(logging.Filter):
    """Drops milvus-lite's harmless grpc 'Method not implemented' tracebacks: pymilvus' query
    iterator probes a timestamp RPC that the lite server lacks, then falls back by itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage() and "mvccTs" not in record.getMessage()


_NOISE = _NotImplementedNoise()


def _quietly(fn: Any) -> set[int]:
    return set(fn())


def _read_catalogue(opts: BuildOptions, report: BuildReport) -> tuple[dict[str, Track], MatchResult]:
    if opts.audio is not None and not Path(opts.audio).is_dir():
        raise BuildInputError(f"{opts.audio} is not a folder", user_message=f"The audio folder {opts.audio} does not exist.")
    if opts.csv is not None:
        if not Path(opts.csv).is_file():
            raise BuildInputError(f"{opts.csv} not found", user_message=f"The CSV file {opts.csv} does not exist.")
        try:
            res = read_kaggle_csv(Path(opts.csv), spotify_ids=not opts.not_spotify)
        except (ValueError, UnicodeError, OSError) as exc:
            raise BuildInputError(str(exc), user_message=f"Cannot read the catalogue CSV: {exc}") from exc
        tracks = res.tracks
        report.csv_rows = res.rows
        report.csv_problems = [{"line": p.line, "problem": p.reason} for p in res.problems]
        if opts.audio is not None:
            match = match_folder(tracks, Path(opts.audio), read_tags=tag_metadata if opts.use_tags else None)
        else:
            match = MatchResult(rows_without_audio=list(tracks))
    elif opts.audio is not None:
        tracks = read_folder(Path(opts.audio), use_tags=opts.use_tags)
        report.csv_rows = len(tracks)
        match = MatchResult(matched={tid: Path(t.audio_path) for tid, t in tracks.items() if t.audio_path},
                            how={tid: "folder" for tid in tracks})
    else:
        raise BuildInputError("no input", user_message="Give a catalogue CSV (--csv) and/or an audio folder (--audio).")
    for tid, path in match.matched.items():
        tracks[tid].audio_path = str(Path(path).absolute())
    report.catalogue_tracks = len(tracks)
    report.matched = len(match.matched)
    report.match_rules = dict(Counter(match.how.values()))
    report.rows_without_audio = list(match.rows_without_audio)
    report.files_without_rows = [{"path": str(p), "reason": r} for p, r in match.unmatched_files]
    return tracks, match


def _make_pool(settings: Settings, opts: BuildOptions, workers: int) -> ProcessPoolExecutor:
    from .worker import init_worker

    threads = settings.torch_threads or 1
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=init_worker,
        initargs=(settings, opts.embedder, threads, logging.getLogger().getEffectiveLevel()),
    )


def run_build(settings: Settings, opts: BuildOptions) -> BuildReport:
    """Build or update the index; returns the report (also written as JSON).

    Raises :class:`BuildInputError`, ``BuildLockedError``, :class:`IndexInUseError`
    (user errors), :class:`DiskFullError`, or anything unexpected.
    """
    t_start = time.monotonic()
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                         data_dir=str(data_dir), csv=str(opts.csv) if opts.csv else None,
                         audio_dir=str(opts.audio) if opts.audio else None)
    noisy = [logging.getLogger(n) for n in ("grpc._server", "pymilvus.client.iterator.query_iterator")]
    for lg in noisy:
        lg.addFilter(_NOISE)
    with BuildLock(data_dir / "build.lock"):
        try:
            build = _Build(settings, opts, report)
            build.run()
            report.index_elapsed_s = time.monotonic() - t_start
            report.calibration = _calibrate(settings, opts, build.fingerprinted)
            _remember_about(settings, opts)
        finally:
            report.elapsed_s = time.monotonic() - t_start
            report.measure_rss()
            for target in [data_dir / "build_report.json"] + ([Path(opts.report_path)] if opts.report_path else []):
                try:
                    report.write_json(target)
                except OSError as exc:
                    log.error("cannot write the build report %s: %s", target, exc)
            for lg in noisy:
                lg.removeFilter(_NOISE)
    return report


def _remember_about(settings: Settings, opts: BuildOptions) -> None:
    """Write ``about``'s snapshot for the finished index (``engine.about_snapshot``), so the first
    ``synesthete about`` after a build answers without opening the engine.  A failure is logged:
    the index is complete, and ``about`` then opens the engine as before.
    """
    from engine.service import SynestheteService

    from .worker import load_factory

    try:
        service = SynestheteService(settings, embedder=load_factory(opts.embedder)(settings), read_only=True)
    except Exception as exc:  # noqa: BLE001 - only a cache: say it, go on
        log.info("about snapshot not written: %s", exc)
        return
    try:
        service.about()
    except Exception as exc:  # noqa: BLE001 - only a cache: say it, go on
        log.info("about snapshot not written: %s", exc)
    finally:
        service.close()


def _calibrate(settings: Settings, opts: BuildOptions, fingerprinted: int) -> dict[str, Any]:
    """The build's last step: refit the identification calibration (``index_builder.calibrate``).

    A failure here leaves a whole index that answers with the safe rule: it is logged and
    reported, not raised (the index is not half-written, only uncalibrated).  Below
    ``MIN_TRACKS`` fingerprinted tracks nothing is loaded: the old file is removed.
    """
    from .calibrate import MIN_TRACKS, run_calibration, too_small
    from .worker import load_factory

    if settings.identify_calibration_queries == 0:
        settings.identify_calibration_path.unlink(missing_ok=True)
        return {"status": "disabled", "message": "SYNESTHETE_IDENTIFY_CALIBRATION_QUERIES=0: the safe rule answers"}
    if fingerprinted < MIN_TRACKS:
        return too_small(settings, fingerprinted).to_dict()
    try:
        res = run_calibration(settings, embedder=load_factory(opts.embedder)(settings),
                              budget=settings.identify_calibration_queries)
    except Exception as exc:  # noqa: BLE001 - the index is complete; say why it is uncalibrated
        log.error("identification calibration failed (%s); queries use the safe rule", exc, exc_info=True)
        return {"status": "failed", "message": f"calibration failed: {exc}"}
    log.info("identification calibration: %s (%s)", res.status, res.message)
    return res.to_dict()


class _Build:
    """One build run; state shared by the steps of :func:`run_build`."""

    def __init__(self, settings: Settings, opts: BuildOptions, report: BuildReport) -> None:
        self.settings, self.opts, self.report = settings, opts, report
        self.fingerprinted = 0  # tracks in the landmark index at the end (the calibration needs enough)
        self.workers = max(1, opts.workers or os.cpu_count() or 1)
        self.max_in_flight = max(1, opts.max_in_flight or 2 * self.workers)
        report.workers = self.workers
        self.pool: ProcessPoolExecutor | None = None
        self.store = self.catalogue = self.fp = self.descriptors = None
        self.failures: dict[str, list[str]] = {}
        self.batch: list[tuple[tuple[int, str, Path, str], WorkResult]] = []
        self.pending_deletes: list[int] = []
        self.marked: set[int] = set()
        self.present: set[int] = set()

    # ---- setup ------------------------------------------------------------------

    def _identity(self, fut: Future) -> tuple[str, int, int, str, tuple, tuple]:
        try:
            return fut.result()
        except BrokenProcessPool as exc:
            raise SynestheteError(
                "a build worker died while loading the model",
                user_message="The build worker died while loading the model; run with -v for details.") from exc

    def _open_store(self, model_id: str, dim: int):
        from engine.store import VectorStore

        s = self.settings
        try:
            return VectorStore(s.resolved_milvus_uri, model_id, dim, token=s.milvus_token,
                               prefix=s.collection_prefix, index_type=s.index_type)
        except StoreLockedError as exc:
            raise IndexInUseError(str(exc)) from exc

    def run(self) -> None:
        from engine.fingerprint.backends import open_fingerprints

        opts, report, s = self.opts, self.report, self.settings
        from .worker import embedder_identity

        tracks, match = _read_catalogue(opts, report)
        # workers load the model while this process imports and starts Milvus
        self.pool = _make_pool(s, opts, self.workers)
        try:
            ident = self.pool.submit(embedder_identity, opts.embedder, s)
            import engine.store  # noqa: F401 - pymilvus + milvus-lite take seconds to import

            self.catalogue = CatalogueDB(s.catalogue_db_path)
            self.descriptors = DescriptorStore(s.descriptors_db_path)
            model_id, dim, _sr, backbone, layout, tag_names = self._identity(ident)
            report.model_id, report.backbone = model_id, backbone
            self.model_id = model_id
            self.store = self._open_store(model_id, dim)
            self.fp = open_fingerprints(s, self.store, read_only=False, for_build=True)
            self._run(tracks, match)
            fit = refit_similarity(s, self.store, self.catalogue, self.descriptors, backbone_key(model_id), layout,
                                   tag_names)
            report.similarity = {"status": fit.status, "tracks": fit.n_tracks, "seconds": round(fit.seconds, 1),
                                 "model": fit.model_sha, **fit.detail}
            report.index_changes = self.store.tune_index()  # the collections' size is known now
            if not self.fp.snapshot_is_current():
                self.fp.write_snapshot()  # the fast read copy query processes use
            self.fingerprinted = self.catalogue.count(indexed_only=True)  # marked: vectors and landmarks
        except Exception as exc:
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                report.aborted = f"disk full: {exc}"
                raise DiskFullError(str(exc)) from exc
            raise
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
            for res in (self.store, self.catalogue, self.fp, self.descriptors):
                if res is not None:
                    try:
                        res.close()
                    except Exception:
                        log.debug("close failed", exc_info=True)

    def _run(self, tracks: dict[str, Track], match: MatchResult) -> None:
        """The build's steps, in order: metadata, collections, trusted state, plan, removals, embedding."""
        cat, report = self.catalogue, self.report

        # 1. metadata for every row (rows without audio are still searchable by name)
        old_keys = {t.track_key for t in cat.all_tracks()}
        cat.upsert_tracks(tracks.values())
        new_keys = {t.track_key for t in tracks.values()}

        self._ensure_collections()
        state, milvus_keys, fp_keys = self._trusted_state()
        desired, todo = self._plan(tracks, match, state)
        self._remove_stale(tracks, desired, state, milvus_keys | fp_keys, fp_keys)
        gone_rows = old_keys - new_keys
        self._flush()
        if gone_rows:
            cat.delete_tracks(gone_rows)
        cat.set_meta(FAILURES_META, json.dumps(self.failures))

        # 6. embed
        log.info("%d tracks to embed, %d unchanged, %d workers", len(todo), report.skipped_unchanged, self.workers)
        self._embed_all(todo)
        self._flush()
        cat.set_meta(FAILURES_META, json.dumps(self.failures))
        cat.set_meta("built_at", datetime.now(UTC).isoformat(timespec="seconds"))
        cat.set_meta("model_id", self.model_id)
        cat.set_meta("backbone", report.backbone)

    def _ensure_collections(self) -> None:
        """2. The Milvus collections, recreated (and reported) when the model changed."""
        store, report, model_id = self.store, self.report, self.model_id
        found = store.collection_model(store.tracks_name)
        if found is not None and found != model_id:
            report.recreated = True
            report.recreate_reason = f"the model changed ({found} -> {model_id}); every track is embedded again"
            log.warning("the model changed (%s -> %s): recreating the collections and re-embedding every track",
                        found, model_id)
        store.ensure_collections(recreate_on_mismatch=True)

    def _trusted_state(self) -> tuple[dict[int, tuple[str, str]], set[int], set[int]]:
        """3. What is really in the index: (trusted marks, keys with vectors, keys with fingerprints).

        A mark (track_key -> (audio_sig, model_id)) is trusted only when the track has
        vectors AND fingerprints AND descriptors; the others are unmarked so the track is
        embedded again.  Sets ``marked``, ``present`` and ``failures`` (``--rebuild``
        forgets marks and remembered failures).
        """
        opts, report, cat = self.opts, self.report, self.catalogue
        state = cat.indexed_state()
        milvus_keys = _quietly(self.store.all_track_keys)
        fp_keys = self.fp.track_keys()
        if opts.rebuild:
            report.recreated = True
            report.recreate_reason = report.recreate_reason or "--rebuild: every track is embedded again"
            cat.unmark_indexed(list(state))
            state = {}
        described = self.descriptors.keys(backbone_key(self.model_id))
        # a track whose peaks are not stored cannot be scored (its pairs are derived from them): done again
        unscorable = self.fp.keys_without_peaks() if getattr(self.fp, "stores_peaks", False) else set()
        untrusted = [k for k in state if k not in milvus_keys or k not in fp_keys or k not in described
                     or k in unscorable]
        if untrusted:
            log.info("%d indexed marks have no vectors, fingerprints, peaks or descriptors; re-embedding them",
                     len(untrusted))
            cat.unmark_indexed(untrusted)
            for k in untrusted:
                state.pop(k, None)
        self.marked = set(state)
        self.present = milvus_keys | fp_keys
        self.failures = {} if opts.rebuild else json.loads(cat.get_meta(FAILURES_META, "{}") or "{}")
        return state, milvus_keys, fp_keys

    def _plan(self, tracks: dict[str, Track], match: MatchResult, state: dict[int, tuple[str, str]],
              ) -> tuple[dict[int, tuple[str, Path]], list[tuple[int, str, Path, str]]]:
        """4. What needs doing: (track_key -> (track_id, file) for every matched row, the items to embed).

        A file whose signature and model match its mark is skipped; so is one that failed
        before with the same signature and model.  Failures of rows no longer matched are forgotten.
        """
        report, model_id = self.report, self.model_id
        desired: dict[int, tuple[str, Path]] = {tracks[tid].track_key: (tid, p) for tid, p in match.matched.items()}
        todo: list[tuple[int, str, Path, str]] = []
        for key, (tid, path) in desired.items():
            try:
                sig = audio_sig(path)
            except OSError as exc:
                self._fail((key, tid, path, ""), "io", "I couldn't read that file.", str(exc))
                continue
            if state.get(key) == (sig, model_id):
                report.skipped_unchanged += 1
                continue
            prev = self.failures.get(str(key))
            if prev and prev[0] == sig and prev[1] == model_id:
                report.failed_unchanged += 1
                continue
            todo.append((key, tid, path, sig))
        self.failures = {k: v for k, v in self.failures.items() if int(k) in desired}
        report.to_embed = len(todo)
        return desired, todo

    def _remove_stale(self, tracks: dict[str, Track], desired: dict[int, tuple[str, Path]],
                      state: dict[int, tuple[str, str]], present: set[int], fp_keys: set[int]) -> None:
        """5. Queue removals: audio gone, row gone, or leftovers of a crash (``present``: vectors or fingerprints).

        Rows placed by their Spotify features (no audio) are the similarity step's to keep or drop.
        """
        by_features = {t.track_key for t in tracks.values() if t.audio_features} - set(desired)
        remove = (set(state) | present) - set(desired) - (by_features - set(state) - fp_keys)
        if remove:
            self.report.removed = len(remove & set(state)) or 0
            log.info("removing %d tracks whose audio or row is gone", len(remove))
            self.pending_deletes.extend(remove)

    # ---- embedding loop -----------------------------------------------------------

    def _fail(self, item: tuple[int, str, Path, str], kind: str, reason: str, detail: str) -> None:
        key, tid, path, sig = item
        self.report.failed.append(FailedTrack(tid, str(path), kind, reason, detail))
        if sig:
            self.failures[str(key)] = [sig, self.model_id, kind, reason]
        if key in self.marked or key in self.present:  # was indexed, its audio is now bad: drop the old vectors
            self.pending_deletes.append(key)
        log.warning("skipped %s: %s (%s)", path, reason, detail)

    def _embed_all(self, todo: list[tuple[int, str, Path, str]]) -> None:
        from .worker import process_file

        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        bar = tqdm(total=len(todo), unit="track", disable=not self.opts.progress or tqdm is None,
                   dynamic_ncols=True, smoothing=0.05) if tqdm else None
        hop = self.settings.segment_hop_s
        pending = deque(todo)
        suspects: deque = deque()
        attempts: Counter = Counter()
        in_flight: dict[Future, tuple[int, str, Path, str]] = {}
        last_flush = time.monotonic()
        t0 = time.monotonic()
        try:
            while pending or suspects or in_flight:
                if self.pool is None:
                    self.pool = _make_pool(self.settings, self.opts, self.workers)
                    self.report.worker_restarts += 1
                # suspects of a crash run alone, so the next crash names its culprit
                while (pending or suspects) and len(in_flight) < (1 if suspects else self.max_in_flight):
                    if suspects and in_flight:
                        break
                    item = suspects.popleft() if suspects else pending.popleft()
                    in_flight[self.pool.submit(process_file, item[0], str(item[2]), hop)] = item
                done, _ = wait(list(in_flight), timeout=self.opts.batch_seconds, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    item = in_flight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        in_flight[fut] = item  # handled with the others below
                        continue
                    except Exception as exc:  # noqa: BLE001 - one file never stops the build
                        self._fail(item, "internal", "The worker failed on this file.", repr(exc))
                    else:
                        if res.ok:
                            self.batch.append((item, res))
                            self.report.audio_seconds += res.seconds
                            self.report.worker_peak(res.peak_rss_mb)
                        else:
                            self._fail(item, res.kind, res.reason, res.detail)
                    if bar is not None:
                        bar.update(1)
                        el = time.monotonic() - t0
                        bar.set_postfix_str(f"{self.report.audio_seconds / max(el, 1e-9):.1f}x real time", refresh=False)
                if broken:
                    crashed = list(in_flight.values())
                    in_flight.clear()
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = None
                    log.warning("a build worker died with %d tracks in flight; restarting the pool", len(crashed))
                    for item in crashed:
                        attempts[item[0]] += 1
                        if len(crashed) == 1 or attempts[item[0]] >= 3:
                            self._fail(item, "worker_crash", "Processing this file crashed the worker.",
                                       "the worker process died (BrokenProcessPool) while decoding/embedding it")
                            if bar is not None:
                                bar.update(1)
                        else:
                            suspects.append(item)
                if len(self.batch) >= self.opts.batch_size or (
                        self.batch and time.monotonic() - last_flush >= self.opts.batch_seconds):
                    self._flush()
                    last_flush = time.monotonic()
        finally:
            if bar is not None:
                bar.close()

    def _flush(self) -> None:
        """Write a batch: vectors, fingerprints, deletions, Milvus flush, THEN marks."""
        if not self.batch and not self.pending_deletes:
            return
        store, fp, cat = self.store, self.fp, self.catalogue
        batch, deletes = list(self.batch), sorted(set(self.pending_deletes))
        if batch:
            store.upsert_tracks([(item[0], r.track_vector, r.segments, r.times) for item, r in batch])
            self.descriptors.put_many(backbone_key(self.model_id),
                                      [r.descriptor for _, r in batch if r.descriptor is not None])
            for item, r in batch:
                if r.fp_hashes is not None:
                    fp.add_landmarks(item[0], r.fp_hashes, r.fp_times, r.seconds, peaks=r.fp_peaks)
                else:
                    fp.add_track(item[0], r.samples, r.sample_rate)
        if deletes:
            store.delete_tracks(deletes)
            self.descriptors.delete(deletes)
            for k in deletes:
                fp.remove_track(k)
        store.flush()
        # the point of no return for this batch: from here on these tracks count as done
        for item, r in batch:
            cat.mark_indexed(item[0], item[3], self.model_id, len(r.times))
            self.failures.pop(str(item[0]), None)
            self.marked.add(item[0])
        if deletes:
            cat.unmark_indexed(deletes)
            self.marked.difference_update(deletes)
        cat.set_meta(FAILURES_META, json.dumps(self.failures))
        self.report.indexed += len(batch)
        self.report.segments += sum(len(r.times) for _, r in batch)
        self.batch.clear()
        self.pending_deletes.clear()
        log.debug("wrote %d tracks, deleted %d", len(batch), len(deletes))
