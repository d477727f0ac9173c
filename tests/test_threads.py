"""BLAS on one thread in the processes that run the network (engine.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, numpy{extra}
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
from engine.threads import limit_blas_threads
limit_blas_threads()
after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps([before, after]))
"""


def _probe(extra: str) -> tuple[list[int], list[int]]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(extra=extra)], capture_output=True, text=True,
                         env=env, timeout=120, check=True, cwd=ROOT).stdout
    before, after = json.loads(out.strip().splitlines()[-1])
    return before, after


def test_every_blas_pool_runs_on_one_thread_after_the_limit() -> None:
    """In a fresh process told to use two BLAS threads (as a 2-core machine does by default)."""
    before, after = _probe(", scipy.linalg")
    assert len(before) >= 2 and set(before) == {2}  # NumPy's and SciPy's own OpenBLAS
    assert after == [1] * len(before)


def test_a_blas_loaded_only_later_is_limited_too() -> None:
    """A build worker imports SciPy after the limit: the limit loads SciPy's BLAS first so it reaches it."""
    before, after = _probe("")
    assert len(before) == 1 and len(after) >= 2 and set(after) == {1}


def test_the_service_and_the_build_workers_limit_blas() -> None:
    """One rule, called where the network runs beside NumPy: the service and each build worker."""
    for path in ("engine/service.py", "index_builder/worker.py"):
        assert "limit_blas_threads()" in (ROOT / path).read_text(), path
