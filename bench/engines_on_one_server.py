"""Several engine processes serving one index on a Milvus server: same answers from each.

    python bench/engines_on_one_server.py --csv tracks.csv --audio DIR --note note.ogg [--engines 2] [--work DIR]

Starts the Milvus 2.3.5 standalone test helper (tests/milvus_server.py), builds the catalogue
into it, starts ``--engines`` ``synesthete serve`` processes over the same data directory and
Milvus URI, and sends the note to all of them at once through ``EngineClient``: the answers
must be identical (docs/scaling.md).  The log-mel backbone keeps the build short.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.client import EngineClient  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests import milvus_server  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--csv", required=True)
ap.add_argument("--audio", required=True)
ap.add_argument("--note", required=True)
ap.add_argument("--engines", type=int, default=2)
ap.add_argument("--work", default=None)
args = ap.parse_args()
root = args.work or tempfile.mkdtemp(prefix="engines-")
srv = milvus_server.start(Path(root) / "srv")
procs = []
try:
    env = {**os.environ, "SYNESTHETE_DATA_DIR": f"{root}/data", "SYNESTHETE_MILVUS_URI": srv.uri,
           "SYNESTHETE_BACKBONE": "logmel", "SYNESTHETE_WORKERS": "1", "SYNESTHETE_ENGINE_TOKEN": "t"}
    b = subprocess.run([sys.executable, "-m", "index_builder.cli", "--env-file", os.devnull, "build", "--csv",
                        args.csv, "--audio", args.audio, "--workers", "1", "--no-tags"],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    print("build rc", b.returncode, b.stdout.splitlines()[:1])
    ports = []
    for _ in range(args.engines):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    for p in ports:
        procs.append(subprocess.Popen([sys.executable, "-m", "engine.cli", "--env-file", os.devnull, "serve", "--port",
                                       str(p)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=open(f"{root}/serve{p}.log", "w")))
    for p in ports:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
    clients = [EngineClient(Settings(engine_url=f"http://127.0.0.1:{p}", engine_token="t")) for p in ports]
    note = args.note
    def ask(c):
        t = time.perf_counter()
        rec = c.recommend(note)
        return rec, (time.perf_counter() - t) * 1000
    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(ask, clients * 4))
    answers = {json.dumps([r.track.track_id for r in rec.results]) for rec, _ in out}
    idents = {rec.identified.track.track_id if rec.identified else None for rec, _ in out}
    print("engines", len(ports), "requests", len(out), "distinct answers", len(answers), "identified", idents)
    print("ms", [round(ms) for _, ms in out])
    print("about", [c.about()["milvus"] for c in clients])
finally:
    for p in procs:
        p.terminate()
        p.wait(timeout=30)
    srv.stop()
