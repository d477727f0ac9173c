"""Small measuring helpers shared by the benchmarks in bench/ (run as ``python bench/X.py``)."""

from __future__ import annotations

import numpy as np


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, NaN for no values (a figure that was not measured stays visible)."""
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")
