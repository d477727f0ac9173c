"""What asking a running engine over HTTP costs, against calling it in-process.

    python bench/engine_client_overhead.py --data-dir DATA --note NOTE.ogg [--n 30] [--json out.json]

``DATA`` is a built index (milvus-lite is fine), ``NOTE`` a recording.  Phase 1 runs in a
child process (milvus-lite lets a process open an index once): the in-process service
times ``recommend(NOTE)``, ``similar_to`` and ``search_tracks``.  Phase 2 starts
``synesthete serve`` on a free port and times the same calls through
:class:`engine.client.EngineClient` (a bot or CLI in client mode).  Both phases run on the
same machine one after the other; the ratio of medians is what the hop costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALLS = """
import json, sys, time
from engine.settings import Settings
def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    return out
def run(svc, note, n):
    tid = svc.search_tracks("so", 1)[0].track.track_id
    svc.recommend(note)  # warm-up
    return {"recommend": timed(lambda: svc.recommend(note), n),
            "similar_to": timed(lambda: svc.similar_to(tid), n),
            "search_tracks": timed(lambda: svc.search_tracks("so", 10), n)}
"""


def in_process(data_dir: Path, note: Path, n: int) -> dict[str, list[float]]:
    code = CALLS + """
from engine.service import SynestheteService
with SynestheteService(Settings.from_env(env_file=None)) as svc:
    print(json.dumps(run(svc, sys.argv[1], int(sys.argv[2]))))
"""
    env = {**os.environ, "SYNESTHETE_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-c", code, str(note), str(n)], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"the in-process phase failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def through_engine(data_dir: Path, note: Path, n: int) -> dict[str, list[float]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SYNESTHETE_DATA_DIR": str(data_dir), "SYNESTHETE_ENGINE_TOKEN": "bench"}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        from engine.client import EngineClient
        from engine.settings import Settings

        ns: dict = {}
        exec(CALLS, ns)  # noqa: S102 - the same call list as phase 1
        client = EngineClient(Settings.from_env(env_file=None).replace(engine_url=url, engine_token="bench"))
        return ns["run"](client, note, n)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--note", type=Path, required=True)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    a = in_process(args.data_dir, args.note, args.n)
    b = through_engine(args.data_dir, args.note, args.n)
    rows = {}
    for call in a:
        ma, mb = statistics.median(a[call]), statistics.median(b[call])
        rows[call] = {"in_process_ms_p50": round(ma, 1), "client_ms_p50": round(mb, 1),
                      "added_ms": round(mb - ma, 1), "ratio": round(mb / ma, 2)}
        print(f"{call:14s} in-process p50 {ma:7.1f} ms   through the engine {mb:7.1f} ms   "
              f"(+{mb - ma:.1f} ms, {mb / ma:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"date": datetime.now(UTC).isoformat(), "machine": platform.platform(),
                                         "cpus": os.cpu_count(), "n": args.n, "calls": rows}, indent=1))


if __name__ == "__main__":
    main()
