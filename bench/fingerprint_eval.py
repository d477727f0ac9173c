"""Measure the landmark identifier on a real-music corpus.

Usage::

    python bench/fingerprint_eval.py --corpus /work/data/dev [--first-seconds 5] [--json out.json]

Corpus layout: ``DIR/catalogue/*.mp3`` (track id = file stem) and
``DIR/queries.csv`` with columns ``query_file,kind,track_id,offset_s`` (query
files relative to ``DIR``; kinds e.g. ``clean10``, ``phone10``).  Without a
``queries.csv`` (a corpus still being built) the queries are taken from
``DIR/queries/<track_id>_<kind>.<ext>``; queries whose track is not (yet) in the
catalogue are skipped either way.

It builds a fresh index of the catalogue (in a temp dir unless ``--index``),
then reports top-1 / top-5 per kind, on the full query and on its first
``--first-seconds`` seconds, plus ms per query, build speed (x real time,
fingerprint + insert only; decoding is reported apart) and index bytes per hour.
Audio is decoded with ``ffmpeg -ac 1 -ar 16000 -f f32le`` like the product does.
``--cache DIR`` keeps decoded catalogue audio (int16 .npy) between runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fingerprint.index import FingerprintIndex

log = logging.getLogger("fingerprint_eval")
SR = 16000


def decode(path: Path, sr: int = SR) -> np.ndarray:
    """Mono float32 at ``sr`` through an ffmpeg pipe."""
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"],
        capture_output=True,
        check=True,
    )
    return np.frombuffer(proc.stdout, dtype=np.float32)


def decode_cached(path: Path, cache: Path | None) -> np.ndarray:
    if cache is None:
        return decode(path)
    f = cache / (path.stem + ".npy")
    if f.is_file():
        return np.load(f).astype(np.float32) / 32767.0
    x = decode(path)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f, np.clip(np.round(x * 32767.0), -32767, 32767).astype(np.int16))
    return x


def read_queries(corpus: Path) -> list[dict[str, str]]:
    csv_path = corpus / "queries.csv"
    if csv_path.is_file():
        with csv_path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    rows = []
    for p in sorted((corpus / "queries").glob("*_*.*")):
        if p.suffix == ".json":
            continue
        track_id, _, kind = p.stem.rpartition("_")
        rows.append({"query_file": str(p.relative_to(corpus)), "kind": kind, "track_id": track_id, "offset_s": ""})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--first-seconds", type=float, default=5.0, help="also score the first N s of each query (0: off)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--index", type=Path, default=None, help="index file to (re)build; default a temp file")
    ap.add_argument("--reuse-index", action="store_true", help="don't rebuild --index if it has the tracks")
    ap.add_argument("--cache", type=Path, default=None, help="cache decoded catalogue audio here")
    ap.add_argument("--limit", type=int, default=0, help="only the first N catalogue tracks")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    # "*.tmp.mp3" are files the corpus builder is still writing
    cat_files = sorted(p for p in (args.corpus / "catalogue").glob("*.mp3") if "." not in p.stem)
    if args.limit:
        cat_files = cat_files[: args.limit]
    keys = {p.stem: i for i, p in enumerate(cat_files)}
    tmp = tempfile.TemporaryDirectory(prefix="fpeval-")
    index_path = args.index or Path(tmp.name) / "fingerprints.sqlite"
    if index_path.exists() and not args.reuse_index:
        for suffix in ("", "-wal", "-shm"):
            Path(str(index_path) + suffix).unlink(missing_ok=True)
    index = FingerprintIndex(index_path)
    have = index.track_keys()

    t_decode = t_build = 0.0
    audio_s = 0.0
    for p in cat_files:
        if keys[p.stem] in have:
            continue
        t0 = time.perf_counter()
        x = decode_cached(p, args.cache)
        t1 = time.perf_counter()
        index.add_track(keys[p.stem], x, SR)
        t2 = time.perf_counter()
        t_decode += t1 - t0
        t_build += t2 - t1
        audio_s += x.size / SR
    t0 = time.perf_counter()
    if not index.snapshot_is_current():  # what a product build does last; queries then use it
        index.write_snapshot()
    log.info("read snapshot written in %.1f s", time.perf_counter() - t0)
    stats = index.stats()
    hours = stats["seconds"] / 3600.0
    log.info(
        "index: %d tracks, %.2f h, %d rows, %.1f MB", stats["n_tracks"], hours, stats["n_hashes"], stats["file_bytes"] / 1e6
    )

    queries = [q for q in read_queries(args.corpus) if q["track_id"] in keys]
    variants = [("full", 0.0)] + ([(f"first{args.first_seconds:g}s", args.first_seconds)] if args.first_seconds else [])
    hits: dict[tuple[str, str], list[tuple[bool, bool, float]]] = defaultdict(list)
    q_times: list[float] = []
    details = []
    for q in queries:
        x = decode(args.corpus / q["query_file"])
        truth = keys[q["track_id"]]
        for vname, secs in variants:
            xx = x[: int(secs * SR)] if secs else x
            t0 = time.perf_counter()
            res = index.match(xx, SR, top_k=5)
            q_times.append(time.perf_counter() - t0)
            ranked = [m.track_key for m in res]
            top1 = bool(ranked) and ranked[0] == truth
            top5 = truth in ranked
            conf = res[0].confidence if res else 0.0
            hits[(q["kind"], vname)].append((top1, top5, conf))
            details.append(
                {
                    "query": q["query_file"],
                    "kind": q["kind"],
                    "variant": vname,
                    "top1": top1,
                    "top5": top5,
                    "score": res[0].score if res else 0,
                    "second": res[1].score if len(res) > 1 else 0,
                    "true_score": next((m.score for m in res if m.track_key == truth), 0),
                    "confidence": conf,
                    "offset_s": res[0].offset_s if res else None,
                    "expected_offset_s": q.get("offset_s"),
                }
            )

    table = {}
    print(f"{'kind':<10} {'variant':<9} {'n':>4} {'top1':>6} {'top5':>6} {'conf>=.5 prec':>14} {'recall':>7}")
    for (kind, vname), rows in sorted(hits.items()):
        a = np.array(rows, dtype=float)
        confident = a[:, 2] >= 0.5
        prec = float(a[confident, 0].mean()) if confident.any() else float("nan")
        rec = float((confident & (a[:, 0] > 0)).mean())
        table[f"{kind}/{vname}"] = {
            "n": len(rows),
            "top1": float(a[:, 0].mean()),
            "top5": float(a[:, 1].mean()),
            "precision_at_conf_0.5": prec,
            "recall_at_conf_0.5": rec,
        }
        print(f"{kind:<10} {vname:<9} {len(rows):>4} {a[:, 0].mean():>6.3f} {a[:, 1].mean():>6.3f} {prec:>14.3f} {rec:>7.3f}")
    summary = {
        "tracks": stats["n_tracks"],
        "audio_hours": hours,
        "rows": stats["n_hashes"],
        "file_bytes": stats["file_bytes"],
        "rows_per_hour": stats["n_hashes"] / hours if hours else 0,
        "bytes_per_hour": stats["file_bytes"] / hours if hours else 0,
        "build_x_realtime": audio_s / t_build if t_build else None,
        "decode_x_realtime": audio_s / t_decode if t_decode else None,
        "ms_per_query_mean": 1000 * float(np.mean(q_times)) if q_times else None,
        "ms_per_query_p95": 1000 * float(np.percentile(q_times, 95)) if q_times else None,
    }
    for k, v in summary.items():
        print(f"{k:>20}: {v:.4g}" if isinstance(v, float) else f"{k:>20}: {v}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "table": table, "details": details}, indent=1))
    index.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
