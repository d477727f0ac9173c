"""Audio -> segment embeddings -> track embedding, the one path queries and the catalogue share.

Two kinds of vector come out of one backbone pass:
- per-segment vectors (one per ``patch_seconds`` window, at a hop) to recognise the
  recorded song itself by time-consistent voting;
- the backbone's similarity descriptors of every segment, from which the similarity
  model (``engine.similarity``) makes the track vector that answers "what sounds like
  this"; the renormalised mean of the segment vectors is the fallback track vector when
  no such model can be fitted (``index_builder.similarity_fit``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .features import Backbone
from .head import LoadedHead, load_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedding:
    segments: np.ndarray  # (n, D) float32, L2-normalised
    times: np.ndarray  # (n,) float32 seconds, start of each segment
    track: np.ndarray  # (D,) float32, L2-normalised mean of the segment vectors (identification space)
    #: (n, d) the backbone's similarity descriptor of each segment
    #: (``Backbone.analyse``): what ``engine.similarity`` turns into a track vector
    features: np.ndarray | None = None
    #: (n_tags,) mean tag probabilities over the segments (musicnn), or None
    tags: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.times)


def l2n(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)).astype(np.float32)


class Embedder:
    """Backbone + head.  Thread-safe: torch modules in eval mode are re-entrant for inference."""

    def __init__(self, backbone: Backbone, head: LoadedHead) -> None:
        self.backbone = backbone
        self.head = head
        self._lock = threading.Lock()  # torch inference is re-entrant, but CPU threads are better not oversubscribed

    @classmethod
    def create(cls, backbone: Backbone, head_path: Path | None, out_dim: int) -> Embedder:
        return cls(backbone, load_head(head_path, backbone.dim, out_dim, backbone.model_id))

    @property
    def sample_rate(self) -> int:
        return self.backbone.sample_rate

    @property
    def dim(self) -> int:
        return self.head.head.out_dim

    @property
    def model_id(self) -> str:
        """What the index is keyed on: backbone weights + head weights + landmark extractor.

        The landmark version is here too because the build writes vectors and
        fingerprints together, and the tracks collection's schema version because its
        fields are written with the vectors: one id says when the whole index must be rebuilt.
        """
        from .fingerprint.landmarks import LANDMARK_VERSION
        from .store import TRACKS_SCHEMA_VERSION

        return f"{self.backbone.model_id}+head:{self.head.sha}+fp{LANDMARK_VERSION}+t{TRACKS_SCHEMA_VERSION}"

    def embed_features(self, feats: np.ndarray, times: np.ndarray, descriptors: np.ndarray | None = None,
                       tags: np.ndarray | None = None) -> Embedding:
        segs = self.head.head.embed(feats)
        desc = feats if descriptors is None else descriptors
        mean_tags = None if tags is None or len(tags) == 0 else np.asarray(tags, np.float32).mean(0)
        return Embedding(segs, times, l2n(segs.mean(axis=0)), np.asarray(desc, np.float32), mean_tags)

    def embed(self, samples: np.ndarray, hop_s: float) -> Embedding:
        with self._lock, torch.inference_mode():
            a = self.backbone.analyse(samples, hop_s)
            times = (np.arange(len(a.features)) * hop_s).astype(np.float32)
            return self.embed_features(a.features, times, a.descriptors, a.tags)
