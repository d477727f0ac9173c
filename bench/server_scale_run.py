"""The full-size run on a real Milvus server, start to finish, in one command.

Starts a Milvus 2.3.5 standalone (``tests/milvus_server.py``) on a fresh data folder,
builds the full-size synthetic index into it (``bench/gen_catalogue.py build``, the
index builder's normal path), waits until the server has indexed every row and gone
idle, records the server's memory and disk, then runs the end-to-end query benchmark
(``bench/bench_query.py``) and the 10-concurrent-notes benchmark
(``bench/bench_concurrency.py``) against it, and stops the server (its whole process
group: the ``milvus`` child too).  Every figure goes into one JSON file.

    python bench/server_scale_run.py --work /work/data/scale/run_server \\
        --segment-tracks 26000 --notes-from /work/data/dev/catalogue \\
        --queries /work/data/dev/queries.csv --json /work/data/scale/server_scale_run.json

Needs the outputs of ``bench/gen_catalogue.py csv`` and ``vectors`` in ``--scale-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from benchutil import dir_bytes  # noqa: E402


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_indexed(uri: str, limit_s: float, server_pid: int) -> tuple[float, list]:
    """Wait until every row is indexed and the server is done; returns (seconds waited, last states).

    Milvus 2.3.5's ``pending_index_rows`` is not reliable here (it can equal
    ``total_rows`` while ``indexed_rows`` does too, as compaction re-indexes merged
    segments), so "done" is: every row indexed, and either nothing pending or the
    server idle for 5 s.
    """
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    t0 = time.time()
    states: list = []
    try:
        while time.time() - t0 < limit_s:
            states = []
            for name in client.list_collections():
                for idx in client.list_indexes(name):
                    d = client.describe_index(name, idx)
                    states.append([name, d.get("index_type"), d.get("indexed_rows"), d.get("total_rows"),
                                   d.get("pending_index_rows")])
            print(f"  {time.time() - t0:5.0f}s {states}", flush=True)
            if states and all(s[2] == s[3] for s in states):
                if all(s[4] == 0 for s in states):
                    break
                c0 = proc_cpu_s(server_pid)
                time.sleep(5)
                if proc_cpu_s(server_pid) - c0 < 0.5:
                    break
            time.sleep(15)
    finally:
        client.close()
    return time.time() - t0, states


def wait_idle(pid: int, limit_s: float = 180.0, busy_below: float = 0.1) -> float:
    """Wait until the server uses < ``busy_below`` of a core over 5 s (compaction, index loads)."""
    t0 = time.time()
    while time.time() - t0 < limit_s:
        c0 = proc_cpu_s(pid)
        time.sleep(5)
        busy = (proc_cpu_s(pid) - c0) / 5
        if busy < busy_below:
            break
    return time.time() - t0


def run_step(cmd: list[str], env: dict, log: Path) -> dict:
    """Run one benchmark under ``/usr/bin/time -v``; returns wall s and peak RSS MB."""
    t0 = time.time()
    with open(log, "w") as fh:
        subprocess.run(["nice", "-n", "5", "/usr/bin/time", "-v", *cmd], cwd=ROOT, env=env, check=True,
                       stdout=fh, stderr=subprocess.STDOUT)
    text = log.read_text()
    rss = [int(line.split(":")[1]) / 1024 for line in text.splitlines() if "Maximum resident set size" in line]
    return {"wall_s": round(time.time() - t0, 1), "peak_rss_mb": round(rss[-1]) if rss else None, "log": str(log)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="fresh folder for the server data, index and logs")
    ap.add_argument("--scale-dir", type=Path, default=Path("/work/data/scale"), help="gen_catalogue.py --out")
    ap.add_argument("--segment-tracks", type=int, default=2000)
    ap.add_argument("--notes-from", type=Path, required=True)
    ap.add_argument("--queries", type=Path)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--model-cache-dir", type=Path, default=Path("/work/data/train_dev/models"))
    ap.add_argument("--skip-concurrency", action="store_true")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)

    import milvus_server

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # so `finally` stops the server
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    py = sys.executable
    env = dict(os.environ, SYNESTHETE_MODEL_CACHE_DIR=str(args.model_cache_dir))
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} cores={os.cpu_count()}",
                    "loadavg_start": os.getloadavg(), "segment_tracks": args.segment_tracks}
    srv = milvus_server.start(args.work / "milvus")
    try:
        env["SYNESTHETE_MILVUS_URI"] = srv.uri
        report["server_rss_empty_mb"] = round(srv.rss_mb())
        report["server_disk_empty_mb"] = round(dir_bytes(args.work / "milvus") / 1e6)
        print("server", srv.uri, report, flush=True)
        index_dir = args.work / "index"
        build_json = args.work / "build.json"
        report["build"] = run_step(
            [py, "bench/gen_catalogue.py", "build", "--out", str(args.scale_dir), "--data-dir", str(index_dir),
             "--milvus-uri", srv.uri, "--segment-tracks", str(args.segment_tracks), "--json", str(build_json)],
            env, args.work / "build.log")
        report["build"].update(json.loads(build_json.read_text())["build"])
        report["server_rss_after_insert_mb"] = round(srv.rss_mb())
        print("build", report["build"], flush=True)
        waited, states = wait_indexed(srv.uri, limit_s=3600, server_pid=srv.milvus_pid)
        report["index_wait_s"] = round(waited)
        report["index_states"] = states
        report["idle_wait_s"] = round(wait_idle(srv.milvus_pid))
        report["server_rss_indexed_idle_mb"] = round(srv.rss_mb())
        report["server_disk_mb"] = round(dir_bytes(args.work / "milvus") / 1e6)
        print("indexed", {k: v for k, v in report.items() if k.startswith(("index", "server", "idle"))}, flush=True)

        q_json = args.work / "bench_query.json"
        cmd = [py, "bench/bench_query.py", "--data-dir", str(index_dir), "--notes-from", str(args.notes_from),
               "--n", str(args.n), "--json", str(q_json)]
        if args.queries:
            cmd += ["--queries", str(args.queries)]
        report["query"] = run_step(cmd, env, args.work / "bench_query.log")
        report["query"].update(json.loads(q_json.read_text()))
        report["server_rss_after_queries_mb"] = round(srv.rss_mb())
        print("query", json.dumps(report["query"]["runs"]), flush=True)

        if not args.skip_concurrency:
            wait_idle(srv.milvus_pid)
            c_json = args.work / "concurrency.json"
            report["concurrency"] = run_step(
                [py, "bench/bench_concurrency.py", "--data-dir", str(index_dir), "--notes-from",
                 str(args.notes_from), "--json", str(c_json)], env, args.work / "concurrency.log")
            report["concurrency"].update(json.loads(c_json.read_text()))
            report["server_rss_after_concurrency_mb"] = round(srv.rss_mb())
    finally:
        srv.stop()
        report["loadavg_end"] = os.getloadavg()
        args.json.write_text(json.dumps(report, indent=2))
        print("server stopped; report in", args.json, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
