"""Filtered track search at the Kaggle catalogue's size (issue 14): latency and "five come back".

    python bench/bench_filters.py --dir /tmp/filters [--rows 232725] [--uri http://127.0.0.1:19530] [--json out.json]

Fills a tracks collection (the product's schema, ``engine.store``) with ``--rows`` unit
vectors (256-d, random) and Kaggle-like filter fields (1-3 of 26 genres, tempo 60-200,
instrumental score, popularity 0-100), re-picks the index as a build does
(``tune_index``), then times ``search_tracks`` for 5 answers with no filter and with
each kind of filter (``engine.filters``), and counts how often fewer than five came back
although more than five rows pass.  milvus-lite by default; a Milvus server with ``--uri``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import pct  # noqa: E402

GENRES = ["pop", "rap", "rock", "hip-hop", "dance", "indie", "electronic", "r&b", "alternative", "country",
          "folk", "children's music", "soul", "jazz", "reggaeton", "reggae", "world", "blues", "ska", "anime",
          "soundtrack", "classical", "opera", "comedy", "movie", "a capella"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--rows", type=int, default=232_725)
    p.add_argument("--uri", default="")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from engine.filters import make_filter
    from engine.store import VectorStore, track_row

    args.dir.mkdir(parents=True, exist_ok=True)
    uri = args.uri or str(args.dir / "milvus.db")
    store = VectorStore(uri, "bench-filters:1", 256, prefix="benchfilters")
    store.ensure_collections(recreate_on_mismatch=True)
    if 0 < store.count_tracks() < args.rows:  # a run cut short: start again
        store.delete_tracks(list(range(args.rows)))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    if store.count_tracks() < args.rows:
        for a in range(0, args.rows, 5000):
            n = min(5000, args.rows - a)
            v = rng.normal(size=(n, 256)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            rows = [track_row(a + i, v[i], {"genres": list(rng.choice(GENRES, rng.integers(1, 4), replace=False)),
                                            "bpm": float(rng.uniform(60, 200)), "instrumental": float(rng.uniform()),
                                            "popularity": int(rng.integers(0, 101))}) for i in range(n)]
            store._client.insert(store.tracks_name, rows)  # fresh keys: insert (lite's upsert is far slower)
        store.flush()
    fill_s = time.perf_counter() - t0
    changes = store.tune_index()
    filters = {
        "none": None,
        "one genre": make_filter("jazz"),
        "two genres": make_filter("rock,blues"),
        "tempo 100-110": make_filter(bpm="100-110"),
        "instrumental": make_filter(instrumental=True),
        "popularity 90-100": make_filter(popularity="90-100"),
        "genre + tempo + popularity": make_filter("classical", "60-90", False, "0-40"),
    }
    out: dict = {"rows": store.count_tracks(), "fill_s": round(fill_s, 1), "index_changes": changes,
                 "backend": "milvus-lite" if store.is_lite else uri, "results": {}}
    q = rng.normal(size=(args.queries, 256)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for name, f in filters.items():
        expr = f.to_expr() if f is not None else ""
        store.search_tracks(q[:1], 5, expr=expr)  # warm-up (lite builds lazily)
        lat, short = [], 0
        for v in q:
            t = time.perf_counter()
            hits = store.search_tracks(v[None], 5, expr=expr)[0]
            lat.append((time.perf_counter() - t) * 1000)
            short += len(hits) < 5
        out["results"][name] = {"expr": expr, "p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1),
                                "fewer_than_5": short}
        print(f"{name:28s} p50 {pct(lat, 50):7.1f} ms  p95 {pct(lat, 95):7.1f} ms  fewer than 5: {short}", flush=True)
    store.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
