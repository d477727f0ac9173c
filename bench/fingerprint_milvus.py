"""The landmark index in Milvus (sparse vectors per window, then offset verification): recall and cost.

Usage::

    python bench/fingerprint_milvus.py --data-dir DIR --work WORK [--n 40] [--json out.json]

``DIR`` is an index built by ``synesthete-index build`` with the SQLite landmark backend (its
read snapshot is the source of the landmarks, so nothing is decoded again).  Every track's
landmarks are written through ``MilvusFingerprintIndex.add_landmarks`` into a fresh milvus-lite
database in ``WORK``, then ``--n`` phone-like 10-s notes of the index's own tracks (and their
first 5 s; bench/fingerprint_scale.py's ``generated_queries``) are matched.  Reported: insert
time, the first search after loading (milvus-lite builds the sparse index lazily), stage 1
(Milvus) and stage 2 (verification) ms, whether stage 1's windows hold the right song, top-1,
and the disk the collection takes (the per-row cost that docs/identification.md's sizing uses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import pct  # noqa: E402
from fingerprint_scale import generated_queries, load_snapshot  # noqa: E402

from engine.fingerprint.index import FingerprintIndex, score_candidates  # noqa: E402
from engine.fingerprint.landmarks import extract_landmarks  # noqa: E402
from engine.fingerprint.milvus_index import MilvusFingerprintIndex, rows_to_landmarks  # noqa: E402
from engine.fingerprint.peaks import BIN_SPAN  # noqa: E402
from engine.store import VectorStore  # noqa: E402


def fill(idx: MilvusFingerprintIndex, snapshot: Path) -> tuple[int, float]:
    """Every track of the SQLite index beside the snapshot into the collection; returns (tracks, seconds).

    The snapshot's rows are triplets (landmark version 2); this backend indexes pairs, which
    ``add_landmarks`` derives from each track's stored peaks, as the build gives them.
    """
    _, keys = load_snapshot(snapshot)
    src = FingerprintIndex(str(snapshot).removesuffix(".snapshot.npy"), read_only=True)
    t0 = time.perf_counter()
    none = np.zeros(0, np.int64)
    for key in keys.tolist():
        codes = src.peak_codes(int(key))
        if codes is None:
            continue
        t, f = np.divmod(codes, BIN_SPAN)
        idx.add_landmarks(int(key), none, none, 0.0, peaks=(t, f))
    idx.write_snapshot()
    src.close()
    return len(keys), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder for the milvus-lite database (replaced)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    store = VectorStore(str(args.work / "milvus.db"), "bench", 8)
    idx = MilvusFingerprintIndex(store)  # writable: no warm-up, the first search is timed below
    n_tracks, insert_s = fill(idx, args.data_dir / "fingerprints.sqlite.snapshot.npy")
    windows = idx._count()
    print(f"{n_tracks} tracks, {windows} windows inserted in {insert_s:.0f} s", flush=True)
    notes = generated_queries(args.data_dir, args.n)
    t0 = time.perf_counter()
    idx.warm_up()
    first_s = time.perf_counter() - t0
    print(f"first search after load: {first_s:.1f} s", flush=True)
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={os.cpu_count()}",
                    "tracks": n_tracks, "windows": windows, "insert_s": round(insert_s, 1),
                    "first_search_s": round(first_s, 1), "disk_bytes": sum(
                        f.stat().st_size for f in (args.work / "milvus.db").rglob("*") if f.is_file()), "kinds": {}}
    for seconds in (10, 5):
        s1, s2, recall, top1 = [], [], [], []
        for x, key in notes:
            qh, qt = extract_landmarks(x[: seconds * 16000], 16000, density="query")
            t1 = time.perf_counter()
            rows = idx._retrieve(qh)
            t2 = time.perf_counter()
            found = score_candidates(qh, qt, *rows_to_landmarks(rows), 5)
            s2.append((time.perf_counter() - t2) * 1000)
            s1.append((t2 - t1) * 1000)
            recall.append(key in {int(r["track_key"]) for r in rows})
            top1.append(bool(found) and found[0].track_key == key)
        report["kinds"][f"phone{seconds}"] = {
            "n": len(notes), "recall_windows": round(float(np.mean(recall)), 3), "top1": round(float(np.mean(top1)), 3),
            "stage1_ms_p50": round(pct(s1, 50)), "stage1_ms_p95": round(pct(s1, 95)),
            "stage2_ms_p50": round(pct(s2, 50)), "stage2_ms_p95": round(pct(s2, 95))}
        print(json.dumps(report["kinds"][f"phone{seconds}"]), flush=True)
    store.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
