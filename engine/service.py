"""The only door into the engine: recommend / similar_to / search_tracks.

Bot, CLI, web page and index builder all call this; it knows nothing of Discord,
HTTP or terminals.  Sync methods are thread-safe; the ``a*`` coroutines run the CPU
work in a bounded thread pool (never on the event loop) with a timeout.

What happens to a recording:
1. decode (ffmpeg) to mono float32 at the backbone's rate, loudness-normalised;
2. identify: spectral-peak landmarks against the fingerprint index (robust to a
   phone in a room) and, as a second opinion, time-consistent votes of segment
   embeddings against the Milvus segment collection;
3. recommend: the five nearest *other* tracks (cosine, Milvus track collection) to
   the identified track's catalogue vector, or to the recording's own vector when it
   is not a catalogue song; the identified track and its duplicates are excluded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import audio as audio_mod
from .answers import by_similarity_in_pages
from .catalogue import CatalogueDB, SearchHit, Track
from .embed import Embedder, Embedding
from .errors import BusyError, EmptyIndexError, NothingMatchesError, QueryTimeoutError, TrackNotFoundError
from .filters import TrackFilter
from .fingerprint.speed import match_any_speed, speed_variants
from .calibration import CalibrationStatus, load_calibration
from .identify import (MIN_VOTE_SEGMENTS, SAFE_MARGIN_CONFIDENCE, SEGMENT_CANDIDATES, Observations, decide, evidence,
                       landmark_surprise)
from .settings import Settings
from .store import VectorStore

log = logging.getLogger(__name__)


@dataclass
class ScoredTrack:
    track: Track
    similarity: float  # raw cosine of the track vectors
    #: 1..5 and 0..100: where the pair ranks among all pairs of this catalogue (engine.reasons.MatchScale)
    match: int | None = None
    match_percentile: float | None = None
    reason: str = ""  # what the two share, from the data (engine.reasons.explain)
    #: False: a catalogue row without audio, placed by its Spotify features (engine.feature_map)
    heard: bool = True

    def to_dict(self) -> dict:
        return {**self.track.to_dict(), "similarity": round(float(self.similarity), 4), "match": self.match,
                "match_percentile": None if self.match_percentile is None else round(self.match_percentile, 1),
                "match_text": self.match_text, "reason": self.reason, "heard": self.heard}

    @classmethod
    def from_dict(cls, d: dict) -> ScoredTrack:
        """The answer of a ``to_dict`` (an engine process's JSON answer, engine.client)."""
        return cls(Track.from_dict(d), float(d["similarity"]), d.get("match"), d.get("match_percentile"),
                   d.get("reason", ""), bool(d.get("heard", True)))

    @property
    def match_text(self) -> str:
        """What every surface shows for the match (``engine.reasons.match_label``)."""
        from .reasons import match_label

        # from the values as to_dict() sends them, so an answer read back over HTTP
        # (engine.client) shows exactly the words the engine would have shown
        pct = None if self.match_percentile is None else round(self.match_percentile, 1)
        return match_label(self.match, pct, round(float(self.similarity), 4))


@dataclass
class Identification:
    track: Track
    confidence: float
    offset_s: float
    method: str  # "fingerprint" | "embedding" | "both"
    #: engine.identify.confidence_level: certain | likely | possible (what the evidence says, in words)
    level: str = "possible"

    def to_dict(self) -> dict:
        return {**self.track.to_dict(), "confidence": round(self.confidence, 3),
                "offset_s": round(self.offset_s, 1), "method": self.method, "level": self.level,
                "level_text": self.level_text}

    @property
    def level_text(self) -> str:
        """The level in words (engine.identify.LEVEL_TEXT): what a person should read from it."""
        from .identify import LEVEL_TEXT

        return LEVEL_TEXT.get(self.level, self.level)

    @classmethod
    def from_dict(cls, d: dict) -> Identification:
        return cls(Track.from_dict(d), float(d["confidence"]), float(d["offset_s"]), d.get("method", ""),
                   d.get("level", "possible"))


@dataclass
class Recommendation:
    identified: Identification | None
    results: list[ScoredTrack]
    seed: Track | None = None  # for similar_to: the track we started from
    query_seconds: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_id: str = ""
    #: not identified, but the landmarks' best candidate is also the nearest track: "might be X"
    #: (shown hedged, and left out of the recommendations: never X recommended to itself)
    might_be: Track | None = None
    #: a sentence about the answer as a whole (a radio shorter than asked: why)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "identified": self.identified.to_dict() if self.identified else None,
            "might_be": self.might_be.to_dict() if self.might_be else None,
            "seed": self.seed.to_dict() if self.seed else None,
            "results": [r.to_dict() for r in self.results],
            "query_seconds": self.query_seconds,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "model_id": self.model_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        """The answer of a ``to_dict``: what an engine process sent over HTTP (engine.client)."""
        return cls(Identification.from_dict(d["identified"]) if d.get("identified") else None,
                   [ScoredTrack.from_dict(r) for r in d.get("results", [])],
                   Track.from_dict(d["seed"]) if d.get("seed") else None, d.get("query_seconds"),
                   dict(d.get("timings_ms") or {}), d.get("model_id", ""),
                   Track.from_dict(d["might_be"]) if d.get("might_be") else None, d.get("note", ""))


#: nearest tracks the discovery rule chooses from (enough for five artists in a catalogue of
#: albums; the same for every page of "more like this")
DIVERSE_POOL = 150
#: what an answer placed by its Spotify features says first
NOT_HEARD = "matched by its Spotify features, not heard"
#: tempo and key of an unknown recording are estimated on at most this much of it (s): ~50 ms
REASON_AUDIO_S = 15.0
#: Landmark candidates kept per recording: the runner-ups are the decision's chance level,
#: and the calibration removes the recorded song from its self-queries and still needs two.
IDENTIFY_TOP_K = 5


#: Least landmark evidence for a "might be": the top candidate's aligned votes at most 1-in-1000
#: likely by chance given the runner-up's (engine.identify.landmark_surprise).  Without it, in a
#: small catalogue an unknown recording's nearest track is also its (chance) top candidate 1/N of the time.
MIGHT_BE_SURPRISE = 3.0
#: How long a health check waits for the store (s): well under an orchestrator's probe timeout.
HEALTH_TIMEOUT_S = 2.0


class SynestheteService:
    """Thread-safe facade over decode -> identify -> embed -> search."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, read_only: bool = True) -> None:
        from .features import make_backbone
        from .fingerprint.backends import open_fingerprints

        from .threads import limit_blas_threads

        limit_blas_threads()  # engine.threads: torch's second thread needs the core BLAS would spin on
        self.settings = settings
        self.embedder = embedder or Embedder.create(make_backbone(settings), settings.resolved_head_path,
                                                    settings.embedding_dim)
        self.catalogue = CatalogueDB(settings.catalogue_db_path, read_only=read_only)
        self.store = VectorStore(settings.resolved_milvus_uri, self.embedder.model_id, self.embedder.dim,
                                 token=settings.milvus_token, prefix=settings.collection_prefix,
                                 index_type=settings.index_type)
        if read_only:
            self.store.check_ready()
        else:
            self.store.ensure_collections()
        self.similarity = load_similarity(settings, self.catalogue)
        self.match_scale = match_scale_of(self.similarity)
        self.hubness = None
        if settings.similarity_hubness == "mp":
            from .hubness import load_for

            self.hubness = load_for(settings.hubness_path, self.similarity.sha if self.similarity else None)
        from .descriptors import DescriptorStore

        self.descriptors = (DescriptorStore(settings.descriptors_db_path, read_only=True)
                            if settings.descriptors_db_path.exists() else None)
        self.fingerprints = open_fingerprints(settings, self.store, read_only=read_only)
        self.calibration = self.load_calibration()
        from .about_snapshot import snapshot_key

        #: the about snapshot's key as of the models loaded now: a later rebuild's files must not
        #: be vouched for by this process's older answer (engine.about_snapshot)
        self._about_key = snapshot_key(settings)
        self._executor = ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="synesthete")
        # lookups (similar_to: a vector fetch + one search) never queue behind decode/embed work
        self._light_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="synesthete-light")
        self._async_slots: asyncio.Semaphore | None = None

    # ---- construction helpers -----------------------------------------------

    @classmethod
    def open(cls, settings: Settings | None = None, **kw: Any) -> SynestheteService:
        return cls(settings or Settings.from_env(), **kw)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def load_calibration(self) -> CalibrationStatus:
        """(Re)read the identification calibration; :mod:`engine.calibration` says when it is not used."""
        from .fingerprint.backends import lookup_id
        from .fingerprint.landmarks import LANDMARK_VERSION

        path = self.settings.identify_calibration_path
        self._calibration_stamp = _file_stamp(path)
        # the indexed count (marks: vectors AND landmarks written), cheap on any backend
        n = self.catalogue.count(indexed_only=True) if self.fingerprints is not None else 0
        self.calibration = load_calibration(path, landmark_version=LANDMARK_VERSION, model_id=self.model_id,
                                            n_tracks=n, lookup=lookup_id(self.settings))
        return self.calibration

    def current_calibration(self) -> CalibrationStatus:
        """The calibration, re-read when a build or ``calibrate`` replaced the file (a stat per query)."""
        if _file_stamp(self.settings.identify_calibration_path) != self._calibration_stamp:
            self.load_calibration()
        return self.calibration

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._light_executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self.catalogue.close()
        if self.descriptors is not None:
            self.descriptors.close()
        if self.fingerprints is not None:
            self.fingerprints.close()

    def __enter__(self) -> SynestheteService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the API --------------------------------------------------------------

    def decode(self, source: audio_mod.AudioSource) -> audio_mod.DecodedAudio:
        return audio_mod.decode(source, self.embedder.sample_rate, audio_mod.limits_from_settings(self.settings))

    def recommend(self, source: audio_mod.AudioSource | audio_mod.DecodedAudio, k: int | None = None,
                  diverse: bool = True, filters: TrackFilter | None = None) -> Recommendation:
        """Identify the recording (when it is a catalogue song) and recommend k other tracks.

        ``diverse=False`` returns the raw similarity ranking (no per-artist cap);
        ``filters`` restrict the answers inside the search (``NothingMatchesError`` when none pass).
        """
        k = k or self.settings.top_k
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        decoded = source if isinstance(source, audio_mod.DecodedAudio) else self.decode(source)
        timings["decode"] = (time.perf_counter() - t0) * 1000

        t1 = time.perf_counter()
        fp_matches = self.landmark_candidates(decoded)
        timings["fingerprint"] = (time.perf_counter() - t1) * 1000

        t2 = time.perf_counter()
        emb = self.embedder.embed(decoded.samples, self.settings.query_hop_s)
        timings["embed"] = (time.perf_counter() - t2) * 1000

        t3 = time.perf_counter()
        identified = self._identify(self.observe(decoded, fp_matches, emb))
        if identified is not None:
            seed_vecs = self.store.track_vectors([identified.track.track_key])
            seed = seed_vecs.get(identified.track.track_key, emb.track)
            exclude = {identified.track.track_key}
        else:
            seed, exclude = self.query_track_vector(emb), set()
        # unidentified: one extra, in case the first is the played song itself (might_be_of)
        results = self._neighbours(seed, k + (identified is None), exclude, identified.track if identified else None,
                                   diverse, filters)
        might_be = might_be_of(identified, fp_matches, results)
        results = [r for r in results if might_be is None or r.track.track_key != might_be.track_key][:k]
        results = by_similarity_in_pages(results, self.settings.top_k, lambda r: r.similarity)
        self._annotate(results, identified.track if identified else None, emb, decoded)
        timings["search"] = (time.perf_counter() - t3) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Recommendation(identified, results, None, decoded.duration_s, timings, self.model_id, might_be)

    def query_track_vector(self, emb: Embedding) -> np.ndarray:
        """The recording's track vector in the space of the catalogue's track vectors."""
        if self.similarity is not None and emb.features is not None and len(emb.features):
            return self.similarity.track_vector(emb.features)
        return emb.track

    def similar_to(self, track_id: str, k: int | None = None, offset: int = 0,
                   diverse: bool = True, filters: TrackFilter | None = None) -> Recommendation:
        """Tracks most similar to a catalogue track (``offset`` pages: 'more like this').

        ``diverse=False``: the raw similarity ranking (no per-artist cap).
        """
        k = k or self.settings.top_k
        t0 = time.perf_counter()
        track, vecs = self._seed(track_id)
        results = self._neighbours(vecs[track.track_key], k + offset, {track.track_key}, track, diverse,
                                   filters)[offset:]
        results = by_similarity_in_pages(results, k, lambda r: r.similarity)
        self._annotate(results, track)
        return Recommendation(None, results, track, None, {"total": (time.perf_counter() - t0) * 1000},
                              self.model_id)

    def radio(self, track_id: str, n: int | None = None, filters: TrackFilter | None = None) -> Recommendation:
        """A radio playlist of ``n`` tracks (default 25, at most 50) that drifts from a catalogue track.

        ``track_id`` may be a Spotify track link.  How it walks: ``engine.radio``.  Each
        result's ``similarity`` is its cosine to the track **before** it (the seed first); fewer
        than ``n`` tracks when fewer qualify (``note`` says so).  Raises ``BadRadioLengthError``
        for ``n`` outside 1..50, ``TrackNotFoundError``, ``BadFilterError``/``NothingMatchesError``.
        """
        from .errors import BadRadioLengthError
        from .radio import RADIO_DEFAULT, RADIO_MAX, RADIO_POOL, walk

        n = RADIO_DEFAULT if n is None else int(n)
        if not 1 <= n <= RADIO_MAX:
            raise BadRadioLengthError(f"radio of {n} tracks")
        t0 = time.perf_counter()
        track, vecs = self._seed(track_id)
        seed_vec = vecs[track.track_key]
        pool = self._neighbours(seed_vec, RADIO_POOL, {track.track_key}, track, diverse=False, filters=filters)
        pool_vecs = self.store.track_vectors([r.track.track_key for r in pool])
        pool = [r for r in pool if r.track.track_key in pool_vecs]
        median = float(self.match_scale.quantiles[len(self.match_scale.quantiles) // 2]) if self.match_scale else -1.0
        steps = walk(seed_vec, np.stack([pool_vecs[r.track.track_key] for r in pool]) if pool else
                     np.zeros((0, len(seed_vec)), np.float32), [r.track.artist for r in pool], n,
                     min_similarity=median)
        results = [ScoredTrack(pool[s.index].track, s.to_previous, heard=pool[s.index].heard) for s in steps]
        self._annotate(results, track, chain=True)  # the reason, like the match, is about the track before it
        note = "" if len(results) >= n else (
            f"Only {len(results)} tracks qualify (near the one before, at most two per artist"
            f"{', within your filters' if filters is not None and filters.active else ''}).")
        return Recommendation(None, results, track, None, {"total": (time.perf_counter() - t0) * 1000},
                              self.model_id, note=note)

    def radio_from_recording(self, source: audio_mod.AudioSource, n: int | None = None,
                             filters: TrackFilter | None = None) -> tuple[Recommendation, Recommendation]:
        """A radio from a recording: ``(what the recording is, the radio)``.

        It starts at the song the recording is (identified), else the one it might be, else its
        nearest catalogue track: a radio walks over catalogue tracks, and those are where the
        recording already stands.  Raises what :meth:`recommend` and :meth:`radio` raise.
        """
        heard = self.recommend(source, k=1, filters=filters)
        return heard, self.radio(radio_start(heard).track_id, n, filters)

    def more_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        """The seed's own artist's other tracks, most similar first: "More by this artist".

        Raises ``TrackNotFoundError`` for an unknown id or a track without audio.
        """
        k = k or self.settings.top_k
        t0 = time.perf_counter()
        track, vecs = self._seed(track_id)
        keys = [x for x in self.catalogue.keys_by_artist(track.artist) if x != track.track_key] if track.artist else []
        hits = self.store.search_tracks(vecs[track.track_key][None, :], k + offset, include=keys)[0] if keys else []
        tracks = self.catalogue.get_many([h.track_key for h in hits])
        results = [ScoredTrack(tracks[h.track_key], h.similarity) for h in hits if h.track_key in tracks][offset:]
        self._annotate(results, track)
        return Recommendation(None, results, track, None, {"total": (time.perf_counter() - t0) * 1000},
                              self.model_id)

    def _seed(self, track_id: str) -> tuple[Track, dict[int, np.ndarray]]:
        """A catalogue track and ``{track_key: vector}``; ``TrackNotFoundError`` (one sentence) without one.

        ``track_id`` may be a pasted Spotify track link (issue 31): one rule for the CLI, the API
        and the bot (``engine.links``): an album/playlist/short link is ``NotATrackLinkError``; a
        song the catalogue lacks, or a catalogue without Spotify ids, gets its own sentence.
        """
        from .links import check_link_seed, looking_up, track_id_from

        track_id, link = track_id_from(track_id)
        with looking_up(link is not None, self.catalogue.has_spotify_ids):
            track, vecs = self._seed_by_id(track_id)
        check_link_seed(track, link is not None)
        return track, vecs

    def _seed_by_id(self, track_id: str) -> tuple[Track, dict[int, np.ndarray]]:
        track = self.catalogue.get(track_id)
        if track is None:
            raise TrackNotFoundError(f"no track with id {track_id!r}")
        vecs = self.store.track_vectors([track.track_key])
        if track.track_key not in vecs:
            raise TrackNotFoundError(f"track {track.track_id!r} has no vector in the index", user_message=(
                f"I know “{track.title}”, but I have nothing to compare it with: "
                "the catalogue has no audio for it."))
        return track, vecs

    def search_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        """Catalogue tracks by name (title and artist), prefix + typo-tolerant, <= 25."""
        return self.catalogue.search(text, limit=min(25, max(1, limit)))

    def _peaks_missing(self) -> tuple[int, int] | str:
        """``(tracks without stored peaks, tracks)`` of the landmark index, or why it cannot say (one sentence)."""
        try:
            return len(self.fingerprints.keys_without_peaks()), len(self.fingerprints.track_keys())
        except Exception as exc:  # noqa: BLE001 - about must answer; the detail goes to the log
            log.warning("cannot read the landmark index's peaks: %s", exc)
            return "unknown: the landmark index could not be read"

    def _landmarks_about(self, peaks: tuple[int, int] | str) -> str:
        """How the landmark stage finds its answer, and which tracks it cannot name (their peaks are missing)."""
        fp = self.fingerprints
        if fp is None:
            return "none: no landmark index"
        if not getattr(fp, "stores_peaks", False):
            return "pair landmarks in Milvus windows (docs/identification.md)"
        if isinstance(peaks, str):
            return peaks
        from .fingerprint.index import VERIFY_TRACKS

        missing, total = peaks
        said = f"triplets shortlist {VERIFY_TRACKS} tracks, their pairs (from the stored peaks) score them"
        if missing:
            return (f"{said}; {missing} of {total} tracks have no stored peaks and cannot be named: "
                    "run `synesthete-index build`")
        return said

    def _verification_about(self, peaks: tuple[int, int] | str) -> str:
        """Whether identification can verify its landmark candidates (``engine.identify.verified_rule``), and if not why."""
        fp = self.fingerprints
        if not self.settings.identify_verification:
            return "off (SYNESTHETE_IDENTIFY_VERIFICATION; docs/identification.md says why)"
        if fp is None:
            return "off: no landmark index"
        if not getattr(fp, "stores_peaks", False):
            return "off: this landmark backend keeps no peaks (identification decides without the verification)"
        if isinstance(peaks, str):
            return peaks
        missing, total = peaks
        if missing == 0:
            return "on: the best candidate is also named when its single peaks line up beyond a 1-in-10^10 chance"
        if missing < total:  # a build adding them was interrupted: the tracks with peaks are verified
            return (f"partly on: {total - missing} of {total} tracks have their peaks (the others cannot be "
                    "named); run `synesthete-index build` to add the rest")
        return ("off: the landmark index keeps no peaks, so no song can be named; "
                "run `synesthete-index build` to add them")

    def about(self) -> dict[str, Any]:
        """Catalogue size, model ids, calibration, build date; remembered for ``about`` without the engine.

        The answer is also written to ``<data_dir>/about.json`` (``engine.about_snapshot``) so the
        CLI's ``about`` can answer in ~0.1 s while nothing it depends on changed.
        """
        peaks = (self._peaks_missing() if getattr(self.fingerprints, "stores_peaks", False) else (0, 0))
        info = {
            "tracks": self.catalogue.count(),
            "indexed_tracks": self.catalogue.count(indexed_only=True),
            "model_id": self.model_id,
            "backbone": self.embedder.backbone.name,
            "head_trained": self.embedder.head.trained,
            "identification": {**self.current_calibration().about(),
                               "landmarks": self._landmarks_about(peaks),
                               "offset_verification": self._verification_about(peaks)},
            "similarity": {**similarity_about(self.similarity),
                           **({"hubness": "mutual proximity (Schnitzer et al. 2012): re-ranks the cosine candidates"}
                              if self.hubness is not None else {})},
            "index_built": self.catalogue.get_meta("built_at"),
            "milvus": "milvus-lite" if self.store.is_lite else self.store.uri,
        }
        from .about_snapshot import write_snapshot

        write_snapshot(self.settings, info, key=self._about_key)
        return info

    def health(self) -> dict[str, Any]:
        """Whether this engine can answer now: the catalogue has indexed tracks *and* the store answers.

        Returns ``{"ok", "tracks", "indexed_tracks", "model_id", "store"}``; ``store`` is
        ``"ok"`` or the reason it is not (one sentence).  Why the store too: counting the
        catalogue's SQLite rows said "ok" while Milvus was down and every search answered 503
        (issue 30), so an orchestrator kept a broken engine in service.  Bounded by
        :data:`HEALTH_TIMEOUT_S` (the store's ping), never by the store's 30-s client timeout.
        """
        from .errors import StoreError

        indexed = self.catalogue.count(indexed_only=True)
        out: dict[str, Any] = {"ok": False, "tracks": self.catalogue.count(), "indexed_tracks": indexed,
                               "model_id": self.model_id, "store": "ok"}
        try:
            self.store.ping(HEALTH_TIMEOUT_S)
        except BusyError:  # a queue of searches holds the client: working, not down
            out["store"] = "busy"
        except StoreError as exc:
            log.warning("health check: the store does not answer: %s", exc)
            out["store"] = exc.user_message
            return out
        out["ok"] = bool(indexed)
        return out

    # ---- async wrappers (bot, web) ---------------------------------------------

    async def _run(self, fn, *args: Any, light: bool = False) -> Any:
        if self._async_slots is None:
            self._async_slots = asyncio.Semaphore(max(1, self.settings.workers) * 4)
        if self._async_slots.locked():
            raise BusyError("all query slots are taken")
        async with self._async_slots:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._light_executor if light else self._executor, fn, *args)
            try:
                return await asyncio.wait_for(fut, timeout=self.settings.query_timeout_s)
            except TimeoutError as exc:
                raise QueryTimeoutError(f"query exceeded {self.settings.query_timeout_s}s") from exc

    async def arecommend(self, source: audio_mod.AudioSource, k: int | None = None,
                         diverse: bool = True, filters: TrackFilter | None = None) -> Recommendation:
        return await self._run(self.recommend, source, k, diverse, filters)

    async def asimilar_to(self, track_id: str, k: int | None = None, offset: int = 0,
                          diverse: bool = True, filters: TrackFilter | None = None) -> Recommendation:
        return await self._run(self.similar_to, track_id, k, offset, diverse, filters, light=True)

    async def amore_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        return await self._run(self.more_by_artist, track_id, k, offset, light=True)

    async def aradio(self, track_id: str, n: int | None = None, filters: TrackFilter | None = None) -> Recommendation:
        return await self._run(self.radio, track_id, n, filters, light=True)

    async def asearch_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        # name search is a few ms of SQLite: a thread hop, but no slot or timeout needed
        return await asyncio.get_running_loop().run_in_executor(None, self.search_tracks, text, limit)

    # ---- internals --------------------------------------------------------------

    def landmark_candidates(self, decoded: audio_mod.DecodedAudio, *, speeds: bool = True) -> list[Any]:
        """The fingerprint index's best candidates (``IDENTIFY_TOP_K``), trying speed variants when ``speeds``."""
        if self.fingerprints is None:
            return []
        variants = speed_variants(self.settings.speed_tolerance_pct) if speeds else speed_variants(0)
        return match_any_speed(self.fingerprints, decoded.samples, decoded.sample_rate, variants=variants,
                               stop_confidence=SAFE_MARGIN_CONFIDENCE, top_k=IDENTIFY_TOP_K)

    def observe(self, decoded: audio_mod.DecodedAudio, fp_matches: list[Any], emb: Embedding,
                segment_candidates: int = SEGMENT_CANDIDATES) -> Observations:
        """What identification decides from: landmark candidates plus the segments' nearest catalogue segments.

        The calibration (``index_builder.calibrate``) calls this too, with two candidates
        per segment, so it measures exactly what the service decides on.
        """
        hits: list[Any] = []
        if emb.n >= MIN_VOTE_SEGMENTS:
            hits = self.store.search_segments(emb.segments, segment_candidates)
        return Observations(tuple(fp_matches), tuple(tuple(h) for h in hits),
                            np.asarray(emb.times if hits else [], dtype=np.float64),
                            self.settings.segment_hop_s, decoded.duration_s)

    def _identify(self, obs: Observations) -> Identification | None:
        """The service's answer to "which song is it?" (:func:`engine.identify.decide`) as a catalogue track."""
        decision = decide(evidence(obs), self.current_calibration().calibration,
                          threshold=self.settings.identify_threshold)
        if decision is None:
            return None
        track = self.catalogue.get_many([decision.track_key]).get(decision.track_key)
        if track is None:  # index and catalogue out of step: never claim a track we cannot name
            log.warning("identified key %s has no catalogue row", decision.track_key)
            return None
        return Identification(track, decision.confidence, decision.offset_s, decision.method, decision.level)

    def _annotate(self, results: list[ScoredTrack], seed: Track | None, emb: Embedding | None = None,
                  decoded: audio_mod.DecodedAudio | None = None, *, chain: bool = False) -> None:
        """Match level and reason for each answer (engine.reasons); best effort, never fails the answer.

        ``chain``: each answer is explained against the one before it (the seed first), as a
        radio's similarities are; every track's traits are still read once.
        """
        from .reasons import Traits, explain

        try:
            known = self._traits([r.track for r in results] + ([seed] if seed else []))

            def traits_of(t: Track) -> Traits:
                return known.get(t.track_key) or Traits(bpm=(t.audio_features or {}).get("tempo"),
                                                        genres=tuple(t.genres))

            if seed is not None:
                seed_traits = traits_of(seed)
            else:  # a recording of no catalogue song: its own tags, tempo and key
                from .analysis import rhythm_and_key

                rk = (rhythm_and_key(decoded.samples[: int(REASON_AUDIO_S * decoded.sample_rate)], decoded.sample_rate)
                      if decoded is not None else None)
                seed_traits = Traits.from_arrays(self.embedder.backbone.tag_names,
                                                 emb.tags if emb is not None else None,
                                                 rk.bpm if rk else None, rk.key if rk else None)
            for i, r in enumerate(results):
                if chain and i > 0:
                    seed_traits = traits_of(results[i - 1].track)
                if self.match_scale is not None:
                    r.match = self.match_scale.level(r.similarity)
                    r.match_percentile = self.match_scale.percentile(r.similarity)
                if self.descriptors is not None and r.track.track_key not in known and r.track.audio_features:
                    r.heard = False
                    other = Traits(bpm=r.track.audio_features.get("tempo"), genres=tuple(r.track.genres))
                    shared = explain(seed_traits, other)
                    r.reason = NOT_HEARD + ("" if shared == "similar overall sound" else f"; {shared}")
                    continue
                r.reason = explain(seed_traits, known.get(r.track.track_key) or Traits(genres=tuple(r.track.genres)))
        except Exception:  # noqa: BLE001 - a reason is a courtesy; the answer stands without it
            log.warning("could not explain the answers", exc_info=True)

    def _traits(self, tracks: list[Track]) -> dict[int, Any]:
        """``{track_key: Traits}`` of the tracks the descriptors know (heard tracks only)."""
        from .descriptors import backbone_key
        from .reasons import Traits

        if self.descriptors is None:
            return {}
        by_key = {t.track_key: t for t in tracks}
        rows = self.descriptors.traits(backbone_key(self.model_id), by_key)
        names = self.embedder.backbone.tag_names
        return {k: Traits.from_arrays(names, tags, bpm, key, by_key[k].genres) for k, (tags, bpm, key) in rows.items()}

    def _neighbours(self, vector: np.ndarray, k: int, exclude: set[int], seed: Track | None,
                    diverse: bool = True, filters: TrackFilter | None = None) -> list[ScoredTrack]:
        """The k answers: nearest tracks passing ``filters`` (in the search), duplicates of the
        seed and each other dropped, then the discovery rule (:func:`engine.answers.diversify`)
        unless ``diverse`` is False."""
        from .answers import diversify
        from .catalogue import dedup_key

        per_artist = self.settings.answers_per_artist if diverse else 0
        # one candidate pool for every page (k + offset grows page by page): pages of the
        # discovery re-ranking are then slices of one list and never repeat a track
        fetch = max(DIVERSE_POOL, k * 3 + 10) if per_artist > 0 else (k * 3 + 10)
        if self.hubness is not None:
            from .hubness import MP_POOL

            fetch = max(fetch, MP_POOL)
        expr = filters.validated().to_expr() if filters is not None and filters.active else ""
        hits = self.store.search_tracks(vector[None, :], fetch, exclude=sorted(exclude), expr=expr)[0]
        if self.hubness is not None and hits:
            hits = self._by_mutual_proximity(vector, hits)
        if not hits and self.store.count_tracks() == 0:
            raise EmptyIndexError("no tracks in the vector index")
        if not hits and expr:
            raise NothingMatchesError(f"no track passes {expr}", user_message=(
                f"No track in the catalogue matches {filters.describe()}; try loosening the filters."))
        tracks = self.catalogue.get_many([h.track_key for h in hits])
        seen = {dedup_key(seed)} if seed is not None else set()
        ranked: list[ScoredTrack] = []
        for h in hits:
            t = tracks.get(h.track_key)
            if t is None or h.track_key in exclude:
                continue
            dk = dedup_key(t)
            if dk in seen:
                continue
            seen.add(dk)
            ranked.append(ScoredTrack(t, h.similarity))
        return diversify(ranked, k, lambda r: r.track.artist, per_artist=per_artist,
                         seed_artist=seed.artist if seed is not None else None)

    def _by_mutual_proximity(self, vector: np.ndarray, hits: list) -> list:
        """``hits`` re-ordered by mutual proximity (``engine.hubness``); each keeps its cosine for display.

        Why cosine stays: the "% match" a person reads is the audio similarity; MP only decides
        which candidates come first (hubs, near everything, sink).
        """
        vecs = self.store.track_vectors([h.track_key for h in hits])
        known = [h for h in hits if h.track_key in vecs]
        if not known:
            return hits
        mp = self.hubness.scores(np.asarray(vector, np.float64), np.stack([vecs[h.track_key] for h in known]),
                                 np.array([h.similarity for h in known]))
        order = np.argsort(-mp, kind="stable")
        return [known[i] for i in order] + [h for h in hits if h.track_key not in vecs]


def radio_start(heard: Recommendation) -> Track:
    """Where a recording's radio starts: the song it is, else the one it might be, else its nearest
    track (a radio walks over catalogue tracks).  One rule for the CLI, the API and the page.
    Raises ``NothingMatchesError`` when the answer holds no track at all."""
    start = (heard.identified.track if heard.identified else heard.might_be
             or (heard.results[0].track if heard.results else None))
    if start is None:
        raise NothingMatchesError("no catalogue track near the recording",
                                  user_message="Nothing in the catalogue is near enough to start a radio from.")
    return start


def might_be_of(identified: Identification | None, fp_matches: list[Any], results: list[ScoredTrack]) -> Track | None:
    """The track a recording *might* be: nothing identified, yet its nearest track is the landmarks' best candidate.

    Two independent opinions (the similarity search and the landmark offset histogram) name
    the same song, too weakly to say "sounds like" (the calibrated rule said no); recommending
    that song to itself as #1 (measured: at 0.575 similarity, issue 30) would be the product
    contradicting itself, so it is named hedged instead and left out of the answers.
    """
    if identified is not None or not fp_matches or not results:
        return None
    best = fp_matches[0]
    chance = float(fp_matches[1].score) if len(fp_matches) > 1 else 0.0
    if landmark_surprise(float(best.score), chance) < MIGHT_BE_SURPRISE:  # a few coincidental landmarks
        return None
    nearest = max(results, key=lambda r: r.similarity)  # by cosine: mutual proximity may rank a hub first
    return nearest.track if nearest.track.track_key == best.track_key else None


def load_similarity(settings: Settings, catalogue: CatalogueDB):
    """The similarity model the catalogue's track vectors were made with, or None (head means).

    Raises ``ModelError`` when the catalogue names a model whose file is missing,
    unreadable or different: the track vectors would then be in another space than the
    query's, and every answer wrong.
    """
    from .errors import ModelError
    from .similarity import MODEL_META, TrackEncoder

    want = catalogue.get_meta(MODEL_META) or ""
    if not want:
        return None
    path = settings.similarity_model_path
    try:
        enc = TrackEncoder.load(path)
    except (ModelError, OSError) as exc:
        raise ModelError(f"{exc}; run `synesthete-index build` to fit it again") from exc
    if enc.sha != want:
        raise ModelError(f"the similarity model {path} ({enc.sha}) is not the one the index was built with "
                         f"({want}); run `synesthete-index build` to fit it again")
    return enc


def match_scale_of(enc):
    """The match scale calibrated at build time (saved with the similarity model), or None."""
    from .reasons import MatchScale

    if enc is None or not enc.meta.get("match_scale"):
        return None
    try:
        return MatchScale.from_list(enc.meta["match_scale"])
    except ValueError:
        log.warning("the similarity model's match scale is unreadable; answers show no match level")
        return None


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None when absent: enough to notice an atomic replacement."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def similarity_about(enc) -> dict[str, Any]:
    """What ``about`` says of the similarity model (one place for CLI, bot and web)."""
    if enc is None:
        return {"method": "pretrained features (no similarity model: fewer than 2 tracks, or disabled)",
                "trained": False}
    return {"method": enc.meta.get("method", "?"), "trained": bool(enc.meta.get("trained")),
            "n_tracks": enc.meta.get("n_tracks"), "components": enc.n_components, "id": enc.sha,
            "fitted": enc.meta.get("created")}


__all__ = ["Identification", "Path", "Recommendation", "ScoredTrack", "SynestheteService"]
