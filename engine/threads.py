"""CPU threads of the processes that run the network: BLAS on one thread beside torch.

Why: the network (torch, OpenMP) runs on ``Settings.torch_threads`` threads and each of its
layers waits for the slowest of them.  NumPy and SciPy bring OpenBLAS, whose own pool of
threads keeps spinning for a while after every matrix call, so on a machine with few cores
it takes the core torch's second thread needs.  Measured on the 2-core VM (docs/performance.md,
"BLAS threads"): a 10-s note's embed stage 150 -> 120 ms p50 with BLAS on one thread.  The
query path's own BLAS calls are small (a projection, a few hundred dot products), so one
thread costs them nothing.  The build's main process is left alone: its similarity fit is
the one large BLAS job, and it runs when the workers are done.  Uses threadpoolctl, the
library scikit-learn uses for the same purpose.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def limit_blas_threads(n: int = 1) -> None:
    """Limit every BLAS pool loaded in this process (OpenBLAS, MKL, BLIS) to ``n`` threads, for good.

    Best effort: without threadpoolctl, or when no BLAS library reports itself, nothing changes.
    """
    import numpy  # noqa: F401 - load every BLAS this process will use (NumPy's and SciPy's own
    import scipy.linalg  # noqa: F401 - OpenBLAS builds), so the limit reaches all of them
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency, always installed with it
        log.debug("threadpoolctl missing: BLAS threads left as they are")
        return
    threadpool_limits(limits=max(1, int(n)), user_api="blas")
