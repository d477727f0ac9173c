"""What every feature backbone promises.

A backbone is a frozen pretrained network (or a plain front end) that turns mono
float32 audio at its own sample rate into one feature vector per patch.  The
fine-tuned head (``engine.head``) sits on top; the index stores what the head makes,
so a backbone's ``model_id`` is part of every collection's identity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentAnalysis:
    """One backbone pass over a recording, per segment."""

    features: np.ndarray  # (n, dim): the segment head's input (identification)
    descriptors: np.ndarray  # (n, sum of descriptor_layout dims): the similarity model's input
    tags: np.ndarray | None  # (n, len(tag_names)) probabilities, or None


class Backbone(ABC):
    #: short name used in settings and model ids ("musicnn", "openl3", "logmel")
    name: str
    #: the rate the audio passed to :meth:`features` must have
    sample_rate: int
    #: length of one patch in seconds (musicnn 3 s, OpenL3 1 s)
    patch_seconds: float
    #: feature dimension
    dim: int

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Stable id of the exact weights, e.g. ``musicnn-msd:3f2a9c1e`` (name + short sha256)."""

    @abstractmethod
    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        """Features of patches starting at ``0, hop, 2*hop, ...`` seconds.

        ``audio`` is mono float32 at :attr:`sample_rate`.  Audio shorter than one
        patch is zero-padded to one patch.  Returns ``(n_patches, dim)`` float32.
        Runs under ``torch.inference_mode`` with the model in ``eval()``.
        """

    def n_patches(self, n_samples: int, hop_seconds: float) -> int:
        patch = int(round(self.patch_seconds * self.sample_rate))
        hop = max(1, int(round(hop_seconds * self.sample_rate)))
        if n_samples <= patch:
            return 1
        return 1 + (n_samples - patch) // hop

    #: names of the tag probabilities :meth:`analyse` returns (empty: the backbone has no tags)
    tag_names: tuple[str, ...] = ()

    #: per-segment similarity descriptor layout: (name, dim) blocks, in order.  The first
    #: block's mean *and* spread over a track are used, the others' means (engine.similarity)
    descriptor_blocks: tuple[tuple[str, int], ...] = ()

    def analyse(self, audio: np.ndarray, hop_seconds: float) -> SegmentAnalysis:
        """Everything one backbone pass gives per segment (see :class:`SegmentAnalysis`).

        By default the descriptors are the features and there are no tags.
        """
        f = self.features(audio, hop_seconds)
        return SegmentAnalysis(f, f, None)

    @property
    def descriptor_layout(self) -> tuple[tuple[str, int], ...]:
        return self.descriptor_blocks or (("features", self.dim),)

