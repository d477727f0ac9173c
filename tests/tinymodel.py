"""A tiny, fast stand-in backbone for index-builder tests (real pipeline, toy features).

Why: the builder's tests are about bookkeeping (resume, skip, remove, crash
survival), not about what musicnn hears; a 16-band spectrum per 3-s patch keeps
each file's embedding to a millisecond.  Build workers are spawned processes
that import this module by name (``tests.tinymodel:make_embedder``), so the repo root
must be on ``sys.path`` (conftest puts it there; subprocesses get ``PYTHONPATH``).
"""

from __future__ import annotations

import os

import numpy as np

from engine.embed import Embedder
from engine.features.base import Backbone

#: a file of exactly this many seconds kills the worker process (crash survival test)
CRASH_SECONDS = 7.77


class TinyBackbone(Backbone):
    name = "tiny"
    sample_rate = 16000
    patch_seconds = 3.0
    dim = 16

    def __init__(self, version: str = "v1") -> None:
        self.version = version

    @property
    def model_id(self) -> str:
        return f"tiny-{self.version}"

    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        if abs(len(audio) / self.sample_rate - CRASH_SECONDS) < 0.03:
            os._exit(3)  # simulate a segfault in native code
        patch = int(self.patch_seconds * self.sample_rate)
        hop = int(hop_seconds * self.sample_rate)
        n = self.n_patches(len(audio), hop_seconds)
        x = np.pad(audio, (0, max(0, (n - 1) * hop + patch - len(audio))))
        out = np.empty((n, self.dim), np.float32)
        for i in range(n):
            spec = np.abs(np.fft.rfft(x[i * hop : i * hop + patch]))
            bands = np.array_split(spec[1:], self.dim)
            out[i] = np.log1p([b.mean() for b in bands])
        return out


def make_embedder(settings) -> Embedder:
    return Embedder.create(TinyBackbone("v1"), None, 8)


def make_embedder_v2(settings) -> Embedder:
    return Embedder.create(TinyBackbone("v2"), None, 8)
