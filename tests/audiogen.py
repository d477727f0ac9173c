"""Audio the tests make themselves: numpy signals encoded by the real ffmpeg.

Why a module and not fixtures only: the end-to-end tests, the bot tests and the
benchmarks all need the same "synthetic track" generator, so it lives in one place.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

SR = 44100


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chord(freqs: list[float], seconds: float, sr: int = SR) -> np.ndarray:
    return sum(tone(f, seconds, sr, 0.3 / len(freqs)) for f in freqs).astype(np.float32)


def noise(seconds: float, sr: int = SR, amp: float = 0.2, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def synthetic_track(seed: int, seconds: float = 30.0, sr: int = SR) -> np.ndarray:
    """A distinct little 'song': a melody with rhythm over one chord per bar, plus percussion.

    Each seed gives its own tempo, key, scale, timbre and rhythm, so tracks are
    distinguishable by content (what identification must do) yet all music-like.
    Every percussion hit is its own noise burst: identical drum samples in every
    track would make all tracks share landmarks.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    beat = 60.0 / rng.uniform(70, 160)
    root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    harm = rng.uniform(0.2, 1.0, 5) / np.arange(1, 6)
    t_note = 0.0
    while t_note < seconds:
        dur = beat * rng.choice([0.25, 0.5, 0.5, 1.0, 1.5])
        f = root * 2 ** ((scale[rng.integers(0, 7)] + 12 * rng.integers(0, 2)) / 12)
        i0, i1 = int(t_note * sr), min(n, int((t_note + dur) * sr))
        t = np.arange(i1 - i0) / sr
        env = np.exp(-t * rng.uniform(2.0, 6.0)) * np.minimum(1.0, t * 300)
        out[i0:i1] += 0.3 * env * sum(h * np.sin(2 * np.pi * f * (k + 1) * t) for k, h in enumerate(harm))
        t_note += dur
    bar = 4 * beat
    for b in range(int(seconds / bar) + 1):
        i0, i1 = int(b * bar * sr), min(n, int((b + 1) * bar * sr))
        t = np.arange(i1 - i0) / sr
        deg = scale[rng.integers(0, 7)]
        out[i0:i1] += sum(0.06 * np.sin(2 * np.pi * root / 2 * 2 ** ((deg + d) / 12) * t) for d in (0, 4, 7))
    hit = int(0.06 * sr)
    decay = np.exp(-np.arange(hit) / sr * 60)
    for i in range(int(seconds / (beat / 2))):
        i0 = int(i * beat / 2 * sr)
        if rng.random() < 0.6 and i0 + hit < n:
            out[i0 : i0 + hit] += 0.08 * rng.standard_normal(hit) * decay
    out /= np.max(np.abs(out)) / 0.8
    return out.astype(np.float32)


def encode(samples: np.ndarray, path: Path, sr: int = SR, codec_args: list[str] | None = None) -> Path:
    """Encode float32 mono with the real ffmpeg; the format follows the extension."""
    path = Path(path)
    args = codec_args or []
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:", *args, str(path)],
        input=np.ascontiguousarray(samples, dtype="<f4").tobytes(), check=True,
    )
    return path


def phone_degrade(samples: np.ndarray, sr: int = SR, snr_db: float = 15.0, seed: int = 0) -> np.ndarray:
    """A cheap 'recorded next to a speaker' view: room echo, phone band, noise, gain."""
    from scipy.signal import butter, fftconvolve, sosfilt

    rng = np.random.default_rng(seed)
    ir_len = int(0.3 * sr)
    ir = rng.standard_normal(ir_len) * np.exp(-np.arange(ir_len) / (0.06 * sr))
    ir[0] = 1.0
    wet = fftconvolve(samples, ir / np.sqrt(np.sum(ir**2)), mode="full")[: len(samples)]
    sos = butter(4, [300, 3400], btype="band", fs=sr, output="sos")
    band = sosfilt(sos, wet)
    sig_p = np.mean(band**2) + 1e-12
    nz = rng.standard_normal(len(band))
    nz *= np.sqrt(sig_p / (10 ** (snr_db / 10)) / np.mean(nz**2))
    out = (band + nz) * 0.3 / (np.max(np.abs(band + nz)) + 1e-9)
    return out.astype(np.float32)
