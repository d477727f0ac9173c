"""Track-level top-5 cosine search: recall@5 vs exact and latency, per index, backend and size.

Vectors: bench/gen_catalogue.py's synthetic track vectors (made from real musicnn +
head vectors of the dev corpus), extended past the catalogue by re-mixing for 1M.
Queries: catalogue vectors + real segment-residual noise (what a voice note's vector
looks like next to its track's).  Ground truth: exact numpy top-5.

Backends: milvus-lite (a file) and a real Milvus 2.3.5 standalone (tests/milvus_server.py).
Index configs: FLAT, IVF_FLAT (nlist = 4 sqrt(n); nprobe 8/16/32), HNSW (M 16,
efConstruction 200; ef 16/32/64/128).  On lite, single-vector calls AND one batched
call (every vector of a query in one call, as the service does) are timed.

Segments (--segments N): N tracks' per-segment vectors (duration / 3 s each) into a
segment collection on the server (HNSW): insert + index time, disk, server RSS
growth per vector, p95 of a 10-s query (7 vectors at a 1.5-s hop, top-10, one call).

    python bench/bench_vector_search.py --sizes 10000 50000 232725 --backends lite server --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine.embed import l2n

OUT = Path("/work/data/scale")
K = 5


def pct(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 2) if v else float("nan")


def load_vectors(n: int) -> np.ndarray:
    from gen_catalogue import extend_vectors

    v = np.load(OUT / "track_vectors.npy")
    return extend_vectors(v, n)


def make_queries(v: np.ndarray, n: int, seed: int = 11) -> np.ndarray:
    from gen_catalogue import Synth

    syn = Synth(OUT / "dev_embeddings.npz")
    r = np.random.default_rng(seed)
    idx = r.choice(len(v), n, replace=False)
    # a 30-s note's track vector = mean of ~10 segment vectors of the track: residual noise / sqrt(10)
    res = syn.resid[r.integers(0, len(syn.resid), (n, 10))].mean(1)
    return l2n(v[idx] + res * 1.5)


def exact_top(v: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    out = []
    for i in range(0, len(q), 50):
        s = q[i : i + 50] @ v.T
        out.append(np.argsort(-s, axis=1)[:, :k])
    return np.concatenate(out)


def dir_mb(path: Path) -> float:
    """A server data folder's size in MiB."""
    from benchutil import dir_bytes

    return round(dir_bytes(path) / 2**20, 1)


def make_collection(client, name: str, dim: int, index: str, n: int) -> dict:
    from pymilvus import DataType, MilvusClient

    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("track_key", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema, consistency_level="Strong")
    params = {"FLAT": {}, "IVF_FLAT": {"nlist": int(max(16, 4 * np.sqrt(n)))},
              "HNSW": {"M": 16, "efConstruction": 200}}[index]
    return params


def hit_key(hit) -> int:
    """A hit's primary key: a server names it ``id``, milvus-lite by its field name."""
    try:
        return int(hit["id"])
    except KeyError:
        return int(hit["track_key"])


def wait_until_indexed(client, name: str, n: int, limit_s: float = 3600.0) -> None:
    """A server builds indexes in the background after ``create_index`` returns.

    Searching before every sealed segment is indexed times a brute-force scan of the
    rest (at 1M vectors that is most of the collection), so wait until
    ``indexed_rows`` covers every row.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        d = client.describe_index(name, "vector")
        if int(d.get("indexed_rows", 0)) >= n:
            return
        time.sleep(2)
    raise TimeoutError(f"{name}: index not built after {limit_s:.0f} s")


def run_config(client, name: str, v: np.ndarray, q: np.ndarray, truth: np.ndarray, index: str, searches: list[dict],
               lite: bool, n_single: int, insert_batch: int = 5000) -> dict:
    n, dim = v.shape
    # what VectorStore does on a server: Session reads (a Strong read waits ~300 ms for the time tick)
    kw = {} if lite else {"consistency_level": "Session"}
    params = make_collection(client, name, dim, index, n)
    t0 = time.perf_counter()
    for i in range(0, n, insert_batch):
        client.insert(name, [{"track_key": int(j), "vector": v[j].tolist()} for j in range(i, min(n, i + insert_batch))])
    client.flush(name)
    t_insert = time.perf_counter() - t0
    ip = client.prepare_index_params()
    ip.add_index("vector", index_type=index, metric_type="COSINE", params=params)
    t1 = time.perf_counter()
    client.create_index(name, ip)
    if not lite:
        wait_until_indexed(client, name, n)
    try:
        client.release_collection(name)
    except Exception:  # noqa: BLE001
        pass
    client.load_collection(name)
    t_index = time.perf_counter() - t1
    out = {"index": index, "params": params, "insert_s": round(t_insert, 1), "index_and_load_s": round(t_index, 1),
           "searches": []}
    for sp in searches:
        lat = []
        got = []
        nq = min(n_single, len(q))
        client.search(name, data=[q[0].tolist()], limit=K, search_params={"metric_type": "COSINE", "params": sp}, **kw)
        for i in range(nq):
            t = time.perf_counter()
            res = client.search(name, data=[q[i].tolist()], limit=K, search_params={"metric_type": "COSINE", "params": sp},
                                **kw)
            lat.append((time.perf_counter() - t) * 1000)
            got.append([hit_key(h) for h in res[0]])
        # recall over all queries in batched calls (also the lite batching cost)
        tb = time.perf_counter()
        res = client.search(name, data=q.tolist(), limit=K, search_params={"metric_type": "COSINE", "params": sp}, **kw)
        batch_ms = (time.perf_counter() - tb) * 1000
        ids = [[hit_key(h) for h in r] for r in res]
        recall = float(np.mean([len(set(a) & set(t.tolist())) / K for a, t in zip(ids, truth)]))
        entry = {"params": sp, "recall_at_5": round(recall, 4), "single_p50_ms": pct(lat, 50),
                 "single_p95_ms": pct(lat, 95), "n_single": nq,
                 "batched_call_ms": round(batch_ms, 1), "batched_queries": len(q)}
        out["searches"].append(entry)
        print(f"    {index:8} {json.dumps(sp):24} recall@5 {recall:.3f}  p50 {entry['single_p50_ms']:7.2f} ms  "
              f"p95 {entry['single_p95_ms']:7.2f} ms  batch of {len(q)}: {batch_ms:7.1f} ms", flush=True)
    client.drop_collection(name)
    return out


def bench_segments(client, srv, n_tracks: int, dim: int, queries: int = 30) -> dict:
    from gen_catalogue import Synth
    from pymilvus import DataType, MilvusClient

    syn = Synth(OUT / "dev_embeddings.npz")
    keys = np.load(OUT / "track_keys.npy")
    vecs = np.load(OUT / "track_vectors.npy", mmap_mode="r")
    secs = np.load(OUT / "track_seconds.npy")
    name = "bench_segments"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("seg_id", DataType.INT64, is_primary=True)
    schema.add_field("track_key", DataType.INT64)
    schema.add_field("t", DataType.FLOAT)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(name, schema=schema, consistency_level="Strong")
    rss0 = srv.rss_mb()
    disk0 = dir_mb(srv.data_dir)
    t0 = time.perf_counter()
    total, rows = 0, []
    for i in range(n_tracks):
        segs, times = syn.segment_vectors(vecs[i], max(1, int(secs[i] // 3.0)), int(keys[i]))
        rows += [{"track_key": int(keys[i]), "t": float(t), "vector": s.tolist()} for s, t in zip(segs, times)]
        total += len(times)
        if len(rows) >= 5000:
            client.insert(name, rows)
            rows = []
    if rows:
        client.insert(name, rows)
    client.flush(name)
    t_insert = time.perf_counter() - t0
    ip = client.prepare_index_params()
    ip.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
    t1 = time.perf_counter()
    client.create_index(name, ip)
    wait_until_indexed(client, name, total)
    client.load_collection(name)
    t_index = time.perf_counter() - t1
    time.sleep(2)
    rss1, disk1 = srv.rss_mb(), dir_mb(srv.data_dir)
    r = np.random.default_rng(3)
    lat = []
    hits_right = 0
    for _ in range(queries):
        i = int(r.integers(0, n_tracks))
        segs, _t = syn.segment_vectors(vecs[i], max(8, int(secs[i] // 3.0)), int(keys[i]))
        start = int(r.integers(0, max(1, len(segs) - 7)))
        qv = l2n(segs[start : start + 7] + 0.15 * syn.resid[r.integers(0, len(syn.resid), 7)])
        t = time.perf_counter()
        res = client.search(name, data=qv.tolist(), limit=10, output_fields=["track_key", "t"],
                            search_params={"metric_type": "COSINE", "params": {"ef": 64}}, consistency_level="Session")
        lat.append((time.perf_counter() - t) * 1000)
        top = [h["entity"]["track_key"] for h in res[0]]
        hits_right += int(keys[i]) in top
    client.drop_collection(name)
    out = {"tracks": n_tracks, "segment_vectors": total, "insert_s": round(t_insert, 1),
           "index_and_load_s": round(t_index, 1), "server_rss_growth_mb": round(rss1 - rss0, 1),
           "disk_growth_mb": round(disk1 - disk0, 1),
           "rss_bytes_per_vector": round((rss1 - rss0) * 2**20 / max(1, total)),
           "disk_bytes_per_vector": round((disk1 - disk0) * 2**20 / max(1, total)),
           "query_10s_p50_ms": pct(lat, 50), "query_10s_p95_ms": pct(lat, 95),
           "own_track_in_top10_of_first_segment": round(hits_right / queries, 3)}
    print(f"  segments: {json.dumps(out)}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 232_725])
    ap.add_argument("--backends", nargs="+", default=["lite", "server"])
    ap.add_argument("--indexes", nargs="+", default=["FLAT", "IVF_FLAT", "HNSW"])
    ap.add_argument("--lite-hnsw-max", type=int, default=50_000, help="lite HNSW build blocks ~9 min at 232k")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--single", type=int, default=100, help="single-vector calls timed (lite: capped at 20)")
    ap.add_argument("--segments", type=int, default=0, help="tracks whose segments go to the server")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import signal

    from pymilvus import MilvusClient

    from tests import milvus_server

    # a SIGTERM must still stop the server (finally below), or its milvus child is orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={__import__('os').cpu_count()}",
                    "command": " ".join(sys.argv), "k": K, "results": []}
    srv = None
    try:
        for backend in args.backends:
            tmp = Path(tempfile.mkdtemp(prefix=f"vbench-{backend}-", dir=OUT))
            if backend == "server":
                srv = milvus_server.start(tmp / "server")
                client = MilvusClient(uri=srv.uri, timeout=1200)
                report["server_idle_rss_mb"] = round(srv.rss_mb())
            else:
                client = MilvusClient(uri=str(tmp / "lite.db"), timeout=1200)
            for n in args.sizes:
                v = load_vectors(n)
                q = make_queries(v, args.queries)
                truth = exact_top(v, q)
                print(f"{backend} n={n}", flush=True)
                for index in args.indexes:
                    if backend == "lite" and index == "HNSW" and n > args.lite_hnsw_max:
                        continue
                    searches = {"FLAT": [{}], "IVF_FLAT": [{"nprobe": 8}, {"nprobe": 16}, {"nprobe": 32}],
                                "HNSW": [{"ef": 16}, {"ef": 32}, {"ef": 64}, {"ef": 128}]}[index]
                    single = min(args.single, 20) if backend == "lite" else args.single
                    res = run_config(client, "bench_tracks", v, q, truth, index, searches, backend == "lite", single)
                    if srv is not None and backend == "server":
                        res["server_rss_mb"] = round(srv.rss_mb())
                    report["results"].append({"backend": backend, "n": n, **res})
                    if args.json:
                        args.json.write_text(json.dumps(report, indent=2))
            if backend == "server" and args.segments:
                report["segments"] = bench_segments(client, srv, args.segments, v.shape[1])
            client.close()
            if srv is not None:
                srv.stop()
                srv = None
            subprocess.run(["rm", "-rf", str(tmp)])
    finally:
        if srv is not None:
            srv.stop()
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
