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
hours.

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
from engine.fingerprint.landmarks import FRAMES_PER_S, extract_landmarks  # noqa: E402
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
    n_hash = 1 << 21
    if decoys == "copy":
        arr = np.lib.format.open_memmap(out, mode="w+", dtype=SNAPSHOT_DTYPE, shape=(base.size * k,))
        for s in range(0, base.size, CHUNK_ROWS):
            b = np.asarray(base[s: s + CHUNK_ROWS])
            rep = np.repeat(b, k)
            copy = np.tile(np.arange(k, dtype=np.int64), b.size)
            kk = rep["k"].astype(np.int64)
            rand_t = (rng.random(rep.size) * (t_max[kk] + 1)).astype(np.uint32)
            rep["t"] = np.where(copy == 0, rep["t"], rand_t)
            rep["k"] = (kk + copy * n_keys).astype(np.uint32)
            arr[s * k: (s + b.size) * k] = rep
        arr.flush()
        return arr
    # remap: write copies unsorted, then sort by hash (stable radix sort on uint32)
    freq = np.bincount(np.asarray(base["h"], dtype=np.int64), minlength=n_hash)
    by_rank = np.argsort(freq, kind="stable")
    raw = np.lib.format.open_memmap(out.with_suffix(".unsorted.npy"), mode="w+", dtype=SNAPSHOT_DTYPE,
                                    shape=(base.size * k,))
    raw[: base.size] = base
    for j in range(1, k):
        perm = by_rank.reshape(-1, 64)[np.arange(n_hash // 64)[:, None], rng.permuted(
            np.tile(np.arange(64), (n_hash // 64, 1)), axis=1)].ravel()
        mapping = np.empty(n_hash, np.uint32)
        mapping[by_rank] = perm
        for s in range(0, base.size, CHUNK_ROWS):
            b = np.array(base[s: s + CHUNK_ROWS])
            kk = b["k"].astype(np.int64)
            b["t"] = (rng.random(b.size) * (t_max[kk] + 1)).astype(np.uint32)
            b["k"] = (kk + j * n_keys).astype(np.uint32)
            b["h"] = mapping[b["h"]]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot", type=Path, required=True, help="a FingerprintIndex read snapshot (.snapshot.npy)")
    ap.add_argument("--queries", type=Path, required=True, help="dev corpus queries.csv (its phone10 rows)")
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

    base, keys = load_snapshot(args.snapshot)
    # The snapshot stores track keys: bench/fingerprint_eval.py numbers the sorted catalogue files.
    cat_files = sorted(p for p in (args.queries.parent / "catalogue").glob("*.mp3") if "." not in p.stem)
    key_of = {i: p.stem for i, p in enumerate(cat_files)}
    per_track_max = np.zeros(len(keys), np.int64)
    np.maximum.at(per_track_max, base["k"].astype(np.int64), base["t"].astype(np.int64))
    hours = args.hours or float(per_track_max.sum() / FRAMES_PER_S / 3600)
    limits = limits_from_settings(Settings.from_env(env_file=None))
    queries = []
    for path, tid in phone_queries(args.queries, args.n):
        a = decode(path, 16000, limits)
        qh, qt = extract_landmarks(a.samples, 16000, density="query")
        queries.append((qh, qt, tid))
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
        all_keys = np.arange(len(keys) * k, dtype=np.int64)  # index -> key; real keys for copy 0 below
        all_keys[: len(keys)] = keys
        for budget in args.budgets:
            fp = FingerprintIndex.__new__(FingerprintIndex)  # only the lookup is used: no SQLite
            fp.max_candidates = budget
            # warm the page cache the way a long-running process would be warm
            _ = [fp._lookup_snapshot(q[0], arr, all_keys) for q in queries[:3]]
            lookup_ms, score_ms, rows, conf, top1 = [], [], [], [], []
            for qh, qt, tid in queries:
                t1 = time.perf_counter()
                rh, rtr, rt = fp._lookup_snapshot(qh, arr, all_keys)
                t2 = time.perf_counter()
                matches = score_candidates(qh, qt, rh, rtr, rt, 5)
                t3 = time.perf_counter()
                lookup_ms.append((t2 - t1) * 1e3)
                score_ms.append((t3 - t2) * 1e3)
                rows.append(int(rh.size))
                best = matches[0] if matches else None
                ok = best is not None and key_of.get(best.track_key) == tid
                top1.append(ok)
                conf.append(ok and best.confidence >= CONFIDENT)
            run = {"factor": k, "decoys": args.decoys, "budget": budget, "rows": int(arr.size), "hours": round(hours * k, 1),
                   "tracks": len(keys) * k, "snapshot_gb": round(arr.size * SNAPSHOT_DTYPE.itemsize / 1e9, 2),
                   "grow_s": round(grow_s, 1),
                   "candidate_rows_p50": int(pct(rows, 50)), "candidate_rows_p95": int(pct(rows, 95)),
                   "lookup_ms_p50": round(pct(lookup_ms, 50), 1), "lookup_ms_p95": round(pct(lookup_ms, 95), 1),
                   "score_ms_p50": round(pct(score_ms, 50), 1), "score_ms_p95": round(pct(score_ms, 95), 1),
                   "top1": round(float(np.mean(top1)), 3), "confident_correct": round(float(np.mean(conf)), 3)}
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
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
