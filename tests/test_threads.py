"""BLAS on one thread in the processes that run the network (engine.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, numpy
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
from engine.threads import limit_blas_threads
limit_blas_threads()
after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps([before, after]))
"""


def test_every_blas_pool_runs_on_one_thread_after_the_limit() -> None:
    """In a fresh process told to use two BLAS threads (as a 2-core machine does by default)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120,
                         check=True, cwd=ROOT).stdout
    before, after = json.loads(out.strip().splitlines()[-1])
    assert before and max(before) == 2
    assert after == [1] * len(before)


def test_the_service_and_the_build_workers_limit_blas() -> None:
    """One rule, called where the network runs beside NumPy: the service and each build worker."""
    for path in ("engine/service.py", "index_builder/worker.py"):
        assert "limit_blas_threads()" in (ROOT / path).read_text(), path
