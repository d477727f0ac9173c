"""How the landmark identifier's query cost and accuracy grow with the catalogue.

Audio for a full-size catalogue cannot be had here, so this grows a real index
instead: the read snapshot of the dev corpus's landmark index (written by
``FingerprintIndex.write_snapshot``, e.g. after ``bench/fingerprint_eval.py --index
F``) is copied ``k`` times.  Every copy keeps the real hashes, so every posting
list is exactly ``k`` times as long as the real one, which is what a catalogue
``k`` times the size with the same music statistics gives, and so is the work of a
query.  Each copy's rows belong to new track keys and get random frame times, so a
copy never lines up with a query.  It is decoy noise with the *same* hashes as the
true song, which is harsher than unrelated songs would be, so the accuracy here is a
lower bound.

For each factor it reports, over the corpus's phone10 queries (10-s voice-note-like
recordings): candidate rows per query, lookup and scoring ms (p50 / p95), top-1 and
the share of confident answers (confidence >= the service's 0.5), plus the
snapshot's size.  Then it fits cost = a + b x rows and extrapolates to catalogue
hours.  Since landmark version 2 the snapshot's rows are triplets: the one-stage columns
(``lookup``, ``score``, ``top1``, ``confident_correct``) are triplets alone, the
``two_stage`` ones what the engine answers (the shortlist scored with its pairs).  Those
pairs come from the peaks in the SQLite index beside the snapshot, which must be there; a
decoy's pairs are its real track's peaks at random frames (:class:`GrownPeaks`).

    python bench/fingerprint_eval.py --corpus /work/data/dev --index /work/data/fpwork/base.sqlite \\
        --cache /work/data/fpwork/cache16k
    python bench/fingerprint_scale.py --snapshot /work/data/fpwork/base.sqlite.snapshot.npy \\
        --queries /work/data/dev/queries.csv --factors 1 4 16 48 --work /work/data/fpwork/scale \\
        --json /work/data/fpwork/fingerprint_scale.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchutil import pct  # noqa: E402

from engine.audio import decode, limits_from_settings  # noqa: E402
from engine.fingerprint.index import SNAPSHOT_DTYPE, FingerprintIndex, score_candidates  # noqa: E402
from engine.fingerprint.landmarks import FRAMES_PER_S, extract_fingerprint  # noqa: E402
from engine.fingerprint.peaks import BIN_SPAN  # noqa: E402
from engine.settings import Settings  # noqa: E402

CONFIDENT = 0.5
CHUNK_ROWS = 2_000_000


def load_snapshot(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.load(path, mmap_mode="r")
    keys = np.load(path.with_name(path.name + ".keys.npy"))
    return arr[1:], keys


def grow(base: np.ndarray, n_keys: int, k: int, out: Path, decoys: str = "copy", seed: int = 0) -> np.ndarray:
    """``base`` and ``k - 1`` decoy copies of it, sorted by hash, in a memory-mapped file.

    Copy 0 is the real index.  Copy j's rows go to track index ``k_row + j * n_keys``
    with a uniform random frame time within the real track's span.  ``decoys``:

    * ``copy``: the copies keep the real hashes, so every posting list is exactly
      ``k`` times as long (the real skew of common and rare hashes is kept) and every
      decoy shares *all* its hashes with one real song -- the harshest case for
      telling songs apart, a lower bound on accuracy.
    * ``remap``: each copy maps every hash to another hash of about the same
      frequency (a random permutation within blocks of 64 hashes ranked by their
      count), so posting lists keep their lengths and skew, but a decoy no longer
      shares its exact hashes with one real song, as with unrelated music.
    """
    if k == 1:
        return base
    rng = np.random.default_rng(seed)
    t_max = np.zeros(n_keys, np.int64)
    np.maximum.at(t_max, base["k"].astype(np.int64), base["t"].astype(np.int64))
    if decoys == "copy":
        arr = np.lib.format.open_memmap(out, mode="w+", dtype=SNAPSHOT_DTYPE, shape=(base.size * k,))
        # chunks end on hash boundaries, and each is sorted by (hash, track): the order the
        # engine's snapshot has
        col = base["h"]
        cuts = sorted({0, base.size, *(int(np.searchsorted(col, col[c], "left"))
                                       for c in range(CHUNK_ROWS, base.size, CHUNK_ROWS))})
        for s, e in zip(cuts[:-1], cuts[1:]):
            b = np.asarray(base[s:e])
            rep = np.repeat(b, k)
            copy = np.tile(np.arange(k, dtype=np.int64), b.size)
            kk = rep["k"].astype(np.int64)
            rand_t = (rng.random(rep.size) * (t_max[kk] + 1)).astype(np.uint32)
            rep["t"] = np.where(copy == 0, rep["t"], rand_t)
            rep["k"] = (kk + copy * n_keys).astype(np.uint32)
            arr[s * k: e * k] = rep[np.lexsort((rep["k"], rep["h"]))]
        arr.flush()
        return arr
    # remap: write copies unsorted, then sort by hash (stable radix sort on uint32).  The permutation
    # runs over the hashes the index holds (32-bit triplets are too many values to count them all),
    # padded to blocks of 64 with values no real row has.
    uniq, inv = np.unique(np.asarray(base["h"]), return_inverse=True)
    n_hash = -(-uniq.size // 64) * 64
    values = np.concatenate([uniq.astype(np.int64), int(uniq.max()) + 1 + np.arange(n_hash - uniq.size)])
    freq = np.bincount(inv, minlength=n_hash)
    by_rank = np.argsort(freq, kind="stable")
    raw = np.lib.format.open_memmap(out.with_suffix(".unsorted.npy"), mode="w+", dtype=SNAPSHOT_DTYPE,
                                    shape=(base.size * k,))
    raw[: base.size] = base
    for j in range(1, k):
        perm = by_rank.reshape(-1, 64)[np.arange(n_hash // 64)[:, None], rng.permuted(
            np.tile(np.arange(64), (n_hash // 64, 1)), axis=1)].ravel()
        mapping = np.empty(n_hash, np.int64)
        mapping[by_rank] = perm
        for s in range(0, base.size, CHUNK_ROWS):
            b = np.array(base[s: s + CHUNK_ROWS])
            kk = b["k"].astype(np.int64)
            b["t"] = (rng.random(b.size) * (t_max[kk] + 1)).astype(np.uint32)
            b["k"] = (kk + j * n_keys).astype(np.uint32)
            b["h"] = values[mapping[inv[s: s + b.size]]].astype(np.uint32)
            raw[j * base.size + s: j * base.size + s + b.size] = b
    raw.flush()
    order = np.argsort(raw["h"], kind="stable")
    arr = np.lib.format.open_memmap(out, mode="w+", dtype=SNAPSHOT_DTYPE, shape=(base.size * k,))
    for s in range(0, order.size, CHUNK_ROWS * 4):
        arr[s: s + CHUNK_ROWS * 4] = raw[np.sort(order[s: s + CHUNK_ROWS * 4])][
            np.argsort(np.argsort(order[s: s + CHUNK_ROWS * 4]))]
    arr.flush()
    del order, raw
    out.with_suffix(".unsorted.npy").unlink()
    return arr


def phone_queries(queries_csv: Path, n: int) -> list[tuple[Path, str]]:
    root = queries_csv.parent
    with open(queries_csv) as fh:
        rows = [(root / r["query_file"], r["track_id"]) for r in csv.DictReader(fh) if r["kind"] == "phone10"]
    return rows[:n]


def generated_queries(data_dir: Path, n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """``n`` phone-like 10-s notes of an index's own tracks (16 kHz), made here, with their track keys.

    For an index built by ``synesthete-index build`` (no queries.csv): 10 s from 30 s into
    each of the first ``n`` tracks longer than 50 s, through ``phone_degrade`` (room, noise,
    phone band, level drift, Opus), as bench/speed_reach.py does.
    """
    import sqlite3
    import subprocess

    from index_builder.augment import phone_degrade

    db = sqlite3.connect(data_dir / "catalogue.sqlite")
    rows = db.execute("SELECT track_key, audio_path FROM tracks WHERE audio_path IS NOT NULL AND duration_ms > 50000 "
                      "ORDER BY track_key").fetchall()[:n]
    rng = np.random.default_rng(seed)
    out = []
    for key, path in rows:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", "30", "-t", "10", "-i", path, "-ac", "1",
                              "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
        out.append((phone_degrade(np.frombuffer(raw, "<f4").astype(np.float32), 16000, rng), int(key)))
    return out


def _queries(args: argparse.Namespace, keys: np.ndarray) -> tuple[list, dict]:
    """``(qh, qt, truth)`` per query and the snapshot-key -> truth map, from queries.csv or generated."""
    if args.data_dir is not None:
        notes = generated_queries(args.data_dir, args.n)
        return ([(extract_fingerprint(x, 16000, density="query"), key) for x, key in notes],
                {int(k): int(k) for k in keys})
    # The snapshot stores track keys: bench/fingerprint_eval.py numbers the sorted catalogue files.
    cat_files = sorted(p for p in (args.queries.parent / "catalogue").glob("*.mp3") if "." not in p.stem)
    limits = limits_from_settings(Settings.from_env(env_file=None))
    queries = []
    for path, tid in phone_queries(args.queries, args.n):
        a = decode(path, 16000, limits)
        queries.append((extract_fingerprint(a.samples, 16000, density="query"), tid))
    return queries, {i: p.stem for i, p in enumerate(cat_files)}


class GrownPeaks:
    """``peak_codes`` of the grown index: a real track's stored peaks, or a decoy's (key ``-i``).

    Stage 2 scores the shortlist with pairs derived from each track's peaks.  A copy decoy of real
    track ``i % n`` has that track's peaks at random frames (its seed: the decoy's key), as its
    landmark rows have random times: the same frequencies, never the song's time structure.
    """

    def __init__(self, real: FingerprintIndex, keys: np.ndarray) -> None:
        self.read, self.keys = real.peak_codes, keys  # the index's own method, before this replaces it

    def __call__(self, key: int) -> np.ndarray | None:
        if key >= 0:
            return self.read(key)
        codes = self.read(int(self.keys[(-key) % len(self.keys)]))
        if codes is None or codes.size == 0:
            return codes
        t, f = np.divmod(codes, BIN_SPAN)
        t = np.random.default_rng(-key).integers(0, int(t.max()) + 1, t.size)
        return np.unique(t * BIN_SPAN + f)


def _time_queries(fp: FingerprintIndex, arr: np.ndarray, all_keys: np.ndarray, queries: list,
                  key_of: dict) -> dict[str, list]:
    """Per query: stage-1 lookup and scoring ms, rows, and the two-stage lookup's ms and answer."""
    m: dict[str, list] = {k: [] for k in ("lookup", "score", "rows", "top1", "conf", "two_ms", "two_top1",
                                           "two_conf")}
    for qfp, tid in queries:
        qh, qt = qfp.hashes, qfp.times
        t1 = time.perf_counter()
        rh, rtr, rt = fp._lookup_snapshot(qh, arr, all_keys)
        t2 = time.perf_counter()
        matches = score_candidates(qh, qt, rh, rtr, rt, 5)
        t3 = time.perf_counter()
        two = fp._match_snapshot(qfp, arr, all_keys, 5)
        t4 = time.perf_counter()
        m["lookup"].append((t2 - t1) * 1e3)
        m["score"].append((t3 - t2) * 1e3)
        m["two_ms"].append((t4 - t3) * 1e3)
        m["rows"].append(int(rh.size))
        for prefix, found in (("", matches), ("two_", two)):
            best = found[0] if found else None
            ok = best is not None and key_of.get(best.track_key) == tid
            m[f"{prefix}top1"].append(ok)
            m[f"{prefix}conf"].append(ok and best.confidence >= CONFIDENT)
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot", type=Path, help="a FingerprintIndex read snapshot (.snapshot.npy)")
    ap.add_argument("--queries", type=Path, help="dev corpus queries.csv (its phone10 rows)")
    ap.add_argument("--data-dir", type=Path, help="instead: an index built by synesthete-index (its snapshot, and "
                                                  "phone-like notes of its tracks made here)")
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16, 48])
    ap.add_argument("--n", type=int, default=60, help="phone10 queries")
    ap.add_argument("--budgets", type=int, nargs="+", default=[0, 1_000_000, 250_000],
                    help="FingerprintIndex.max_candidates values to run at each factor (0 = no limit)")
    ap.add_argument("--hours", type=float, default=0.0, help="hours of audio in the snapshot (0: from its times)")
    ap.add_argument("--decoys", choices=["copy", "remap"], default="copy",
                    help="how the added tracks relate to the real ones (see grow())")
    ap.add_argument("--work", type=Path, required=True, help="folder for the grown snapshots (deleted after each)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    if args.data_dir is not None:
        args.snapshot = args.data_dir / "fingerprints.sqlite.snapshot.npy"
    elif args.snapshot is None or args.queries is None:
        ap.error("give --snapshot and --queries, or --data-dir")
    base, keys = load_snapshot(args.snapshot)
    per_track_max = np.zeros(len(keys), np.int64)
    np.maximum.at(per_track_max, base["k"].astype(np.int64), base["t"].astype(np.int64))
    hours = args.hours or float(per_track_max.sum() / FRAMES_PER_S / 3600)
    queries, key_of = _queries(args, keys)
    print(f"base: {base.size:,} rows, {len(keys)} tracks, {hours:.1f} h; {len(queries)} phone10 queries", flush=True)

    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={os.cpu_count()}",
                    "base_rows": int(base.size), "base_tracks": int(len(keys)), "base_hours": round(hours, 2),
                    "bytes_per_row": SNAPSHOT_DTYPE.itemsize, "runs": []}
    for k in args.factors:
        t0 = time.perf_counter()
        path = args.work / f"grown_x{k}.npy"
        arr = grow(base, len(keys), k, path, decoys=args.decoys)
        grow_s = time.perf_counter() - t0
        all_keys = -np.arange(len(keys) * k, dtype=np.int64)  # index -> key: decoys negative, real keys for copy 0
        all_keys[: len(keys)] = keys
        for budget in args.budgets:
            # the real index (its peaks score the shortlist); the grown snapshot is handed to the lookup
            fp = FingerprintIndex(str(args.snapshot).removesuffix(".snapshot.npy"), read_only=True,
                                  max_candidates=budget)
            fp.peak_codes = GrownPeaks(fp, keys)  # type: ignore[method-assign]
            # warm the page cache the way a long-running process would be warm
            _ = [fp._lookup_snapshot(q[0].hashes, arr, all_keys) for q in queries[:3]]
            m = _time_queries(fp, arr, all_keys, queries, key_of)
            lookup_ms, score_ms, rows, top1, conf = m["lookup"], m["score"], m["rows"], m["top1"], m["conf"]
            run = {"factor": k, "decoys": args.decoys, "budget": budget, "rows": int(arr.size), "hours": round(hours * k, 1),
                   "tracks": len(keys) * k, "snapshot_gb": round(arr.size * SNAPSHOT_DTYPE.itemsize / 1e9, 2),
                   "grow_s": round(grow_s, 1),
                   "candidate_rows_p50": int(pct(rows, 50)), "candidate_rows_p95": int(pct(rows, 95)),
                   "lookup_ms_p50": round(pct(lookup_ms, 50), 1), "lookup_ms_p95": round(pct(lookup_ms, 95), 1),
                   "score_ms_p50": round(pct(score_ms, 50), 1), "score_ms_p95": round(pct(score_ms, 95), 1),
                   "top1": round(float(np.mean(top1)), 3), "confident_correct": round(float(np.mean(conf)), 3),
                   "two_stage_ms_p50": round(pct(m["two_ms"], 50), 1),
                   "two_stage_ms_p95": round(pct(m["two_ms"], 95), 1),
                   "two_stage_top1": round(float(np.mean(m["two_top1"])), 3),
                   "two_stage_confident_correct": round(float(np.mean(m["two_conf"])), 3)}
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
            fp.close()
        del arr
        if k != 1:
            path.unlink()

    # Cost per candidate row at the largest factor run without a budget.  The scoring sorts
    # the votes, so the cost per row grows slowly with the rows: extrapolating with the
    # largest run's figure is a lower bound.
    r = [v for v in report["runs"] if v["budget"] == 0]
    if r:
        big = max(r, key=lambda v: v["factor"])
        us_per_row = (big["lookup_ms_p50"] + big["score_ms_p50"]) * 1e3 / max(1, big["candidate_rows_p50"])
        rows_per_hour = big["candidate_rows_p50"] / big["hours"]
        report["extrapolation"] = {"from_factor": big["factor"], "us_per_candidate_row": round(us_per_row, 3),
                                   "candidate_rows_per_catalogue_hour_10s_query": round(rows_per_hour)}
        # 176,774 distinct songs; their Kaggle durations sum to ~11,170 h (bench/gen_catalogue.py)
        for label, h in (("30-s previews of 176,774 songs (1,473 h)", 1473.0),
                         ("full tracks of 176,774 songs (11,170 h)", 11170.0)):
            rows_q = rows_per_hour * h
            report["extrapolation"][label] = {
                "candidate_rows_10s_query": int(rows_q), "ms_per_10s_query_unbudgeted": round(us_per_row * rows_q / 1e3),
                "snapshot_gb": round(base.size / hours * h * SNAPSHOT_DTYPE.itemsize / 1e9, 1)}
        print(json.dumps(report["extrapolation"], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
