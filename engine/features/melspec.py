"""Mel spectrograms in numpy/torch that reproduce librosa's, with no librosa at run time.

Why: the pretrained networks (musicnn) were trained on
``librosa.feature.melspectrogram`` output, so a port must feed them the same
numbers; but librosa (numba, llvmlite, soxr, ...) is a heavy install for two
small functions.  This module re-implements exactly what those defaults do:

* :func:`slaney_mel_filterbank` = ``librosa.filters.mel(sr=, n_fft=, n_mels=,
  fmin=0, fmax=sr/2, htk=False, norm="slaney")`` (computed in float64, returned
  as float32 like librosa);
* :class:`MelSpectrogram` = ``librosa.feature.melspectrogram(y=, sr=, n_fft=,
  hop_length=)`` defaults: centred frames padded with zeros (``pad_mode="constant"``,
  librosa >= 0.10), periodic Hann window of ``n_fft``, power 2.

``tests/test_melspec.py`` checks both against librosa when it is installed.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["MelSpectrogram", "hz_to_mel_slaney", "mel_to_hz_slaney", "slaney_mel_filterbank"]

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel_slaney(freqs: np.ndarray | float) -> np.ndarray:
    """Hz -> Slaney mel (librosa ``hz_to_mel(htk=False)``)."""
    f = np.asanyarray(freqs, dtype=np.float64)
    mels = f / _F_SP
    log_t = f >= _MIN_LOG_HZ
    mels = np.where(
        log_t, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels
    )
    return mels


def mel_to_hz_slaney(mels: np.ndarray | float) -> np.ndarray:
    """Slaney mel -> Hz (librosa ``mel_to_hz(htk=False)``)."""
    m = np.asanyarray(mels, dtype=np.float64)
    freqs = _F_SP * m
    log_t = m >= _MIN_LOG_MEL
    return np.where(log_t, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), freqs)


def slaney_mel_filterbank(
    sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, shape ``(n_mels, 1 + n_fft // 2)``, float32.

    Same arithmetic and order of operations as ``librosa.filters.mel`` so the
    result matches it to float32 rounding.
    """
    if fmax is None:
        fmax = sr / 2.0
    n_bins = 1 + n_fft // 2
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    min_mel = hz_to_mel_slaney(fmin)
    max_mel = hz_to_mel_slaney(fmax)
    mel_f = mel_to_hz_slaney(np.linspace(min_mel, max_mel, n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, n_bins), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights.astype(np.float32)


class MelSpectrogram:
    """Power mel spectrogram of a whole signal, ``(frames, n_mels)`` float32.

    Frames are centred (frame ``t`` covers samples ``t*hop - n_fft/2 ...``), so a
    signal of ``n`` samples gives ``1 + n // hop`` frames, as librosa does.
    The window and filterbank are built once per instance.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.filterbank = torch.from_numpy(
            slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        )
        # periodic Hann == scipy.signal.get_window("hann", n_fft, fftbins=True), librosa's window
        self.window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def power(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``|STFT|**2`` of mono ``audio``, shape ``(frames, 1 + n_fft // 2)`` float32."""
        x = torch.as_tensor(
            np.ascontiguousarray(audio, dtype=np.float32)
            if isinstance(audio, np.ndarray)
            else audio
        )
        x = x.to(torch.float32).reshape(-1)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return (spec.real.square() + spec.imag.square()).T.contiguous()

    def __call__(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram, ``(frames, n_mels)`` float32 (librosa's output transposed)."""
        with torch.inference_mode():
            return self.power(audio) @ self.filterbank.T
