"""A model-free backbone: statistics of log-mel bands per 3-s patch.

Why: a baseline and a fallback that needs no downloaded weights at all, so the
whole pipeline (index, head, search) can be built and tested anywhere, and so
a learned backbone always has a cheap yardstick to beat.  Same front end as
musicnn (16 kHz, 96 Slaney mels, n_fft 512, hop 256, 187-frame patches), so
the two are directly comparable.

Per patch, per band: mean and standard deviation of ``log10(10000 * mel + 1)``
over time, plus the standard deviation of its frame-to-frame difference (how
much the band moves: separates sustained tones from percussive texture).
Computed with cumulative sums, so any hop costs O(frames), not O(patches x 187).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.features.base import Backbone
from engine.features.melspec import MelSpectrogram

__all__ = ["LogMelBackbone"]

_SR = 16000
_N_FFT = 512
_HOP = 256
_N_MELS = 96
_PATCH_FRAMES = 187


class LogMelBackbone(Backbone):
    """``(n_patches, 288)`` = [mean(96) | std(96) | std of delta(96)] of the log-mel."""

    name = "logmel"
    sample_rate = _SR
    patch_seconds = 3.0
    dim = 3 * _N_MELS

    def __init__(self, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        self._mel = MelSpectrogram(_SR, _N_FFT, _HOP, _N_MELS)

    @property
    def model_id(self) -> str:
        """Bump the version whenever the feature definition changes: indexes depend on it."""
        return "logmel:v1"

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """``(frames, 96)`` float64 log-mel of the whole, padded signal."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        patch = round(self.patch_seconds * self.sample_rate)
        if audio.size < patch:
            audio = np.pad(audio, (0, patch - audio.size))
        with torch.inference_mode():
            lm = torch.log10(self._mel(audio) * 10000.0 + 1.0)
        return lm.numpy().astype(np.float64)

    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        n_samples = int(np.asarray(audio).size)
        lm = self.log_mel(audio)
        n = self.n_patches(n_samples, hop_seconds)
        hop_samples = max(1, round(hop_seconds * self.sample_rate))
        starts = np.array([round(i * hop_samples / _HOP) for i in range(n)], dtype=np.int64)
        need = int(starts[-1]) + _PATCH_FRAMES
        if need > lm.shape[0]:
            lm = np.pad(lm, ((0, need - lm.shape[0]), (0, 0)))
        ends = starts + _PATCH_FRAMES

        def window_mean_std(
            x: np.ndarray, s: np.ndarray, e: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray]:
            zero = np.zeros((1, x.shape[1]))
            c1 = np.concatenate([zero, np.cumsum(x, axis=0)])
            c2 = np.concatenate([zero, np.cumsum(x * x, axis=0)])
            cnt = (e - s)[:, None].astype(np.float64)
            mean = (c1[e] - c1[s]) / cnt
            var = np.maximum((c2[e] - c2[s]) / cnt - mean * mean, 0.0)
            return mean, np.sqrt(var)

        mean, std = window_mean_std(lm, starts, ends)
        delta = np.diff(lm, axis=0)  # delta[t] = lm[t+1] - lm[t]; a patch holds 186 of them
        _dmean, dstd = window_mean_std(delta, starts, ends - 1)
        return np.concatenate([mean, std, dstd], axis=1).astype(np.float32)
