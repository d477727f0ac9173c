"""The librosa-free mel front end against librosa itself (skipped without librosa)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.features.melspec import MelSpectrogram, slaney_mel_filterbank

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmax",
    [
        (16000, 512, 96, None),
        (22050, 2048, 128, None),
        (16000, 512, 40, 6000.0),
        (48000, 1024, 64, None),
    ],
)
def test_filterbank_matches_librosa(sr: int, n_fft: int, n_mels: int, fmax: float | None) -> None:
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax, htk=False, norm="slaney"
    )
    ours = slaney_mel_filterbank(sr, n_fft, n_mels, fmax=fmax)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    y = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t * (1 + 0.1 * t))
    y += 0.05 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def _ref_mel(y: np.ndarray) -> np.ndarray:
    return librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T


def test_melspectrogram_matches_librosa() -> None:
    y = _signal(5.0)
    ref = _ref_mel(y)
    ours = MelSpectrogram()(y).numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1 + y.size // 256, 96)
    assert np.abs(ours - ref).max() <= 2e-6 * np.abs(ref).max()
    # log compression as musicnn uses it: differences vanish at its scale
    assert np.abs(np.log10(1e4 * ours + 1) - np.log10(1e4 * ref + 1)).max() < 1e-4


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
@pytest.mark.parametrize("n", [1, 255, 256, 257, 700, 16000])
def test_short_and_odd_lengths(n: int) -> None:
    y = _signal(1.0, seed=n)[:n]
    ref = _ref_mel(y)
    ours = MelSpectrogram()(y).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 2e-6 * max(np.abs(ref).max(), 1e-12)


def test_loud_signal_stays_finite() -> None:
    y = np.clip(3 * _signal(2.0), -1, 1)
    ours = MelSpectrogram()(y).numpy()
    ref = _ref_mel(y)
    assert np.isfinite(ours).all()
    assert ours.max() > 6.56  # 10000 * x overflows float16 above this: the musicnn bug regime
    assert np.abs(ours - ref).max() <= 2e-6 * np.abs(ref).max()
