"""A voice-message view of music: what a phone hears when it records next to a speaker.

Training the embedding head contrastively needs, for each moment of a catalogue
track, a second view that sounds the way a query will: the song played by a
loudspeaker into a room, picked up by a phone microphone next to people and
things making noise, squeezed into a voice-message codec.  :func:`phone_degrade`
makes such a view, one random draw of every stage, from a seeded generator:

1. **time shift**: the recording never starts on a patch boundary; a small
   delay (0-60 ms, zero-padded) stands for speaker/phone latency and air.
2. **room**: convolution with a synthetic impulse response: a direct path, a few
   early reflections (2-25 ms) and a late tail of exponentially decaying noise with
   RT60 0.2-0.8 s whose high frequencies die faster (air and furnishings absorb
   them), mixed at a random direct-to-reverberant ratio (-3..+12 dB).
3. **background noise** at 0-20 dB SNR (relative to the reverberant music): pink
   noise (air conditioning, traffic), speech-shaped babble (several "talkers":
   speech-spectrum noise gated by syllable-rate envelopes), or, when
   ``noise_pool`` is given, other audio (another song, a TV) cut from the pool.
4. **phone band**: a small speaker and a phone microphone: band-pass with random
   edges (low 200-450 Hz, high 2.8-4.2 kHz, 2nd-4th order) and a mild random
   tilt.
5. **gain and level drift**: a random overall level (-18..0 dB) and a slow
   random drift (+-0-4 dB over seconds), like a phone's AGC or a moving hand;
   peaks beyond full scale are soft-clipped, as a phone's limiter does.
6. **codec**: an Opus round trip at 16-32 kbit/s through the real ffmpeg
   (libopus), VoIP or audio mode, the way Discord / WhatsApp voice messages are
   sent.  ``opus=False`` skips it (faster; for tests or when ffmpeg is absent).

Every stage is vectorised (FFT convolution, IIR filters from scipy, numpy noise
generation); the only process launched is ffmpeg for the codec.  The output has
the input's length and sample rate, float32, at the *random* level of stage 5:
callers that feed a model should normalise loudness the way
:func:`engine.audio.decode` does for a real query (``engine.audio.normalise_loudness``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, oaconvolve, sosfilt

__all__ = ["DegradeParams", "babble_noise", "draw_params", "opus_roundtrip", "phone_degrade", "pink_noise"]


@dataclass(frozen=True)
class DegradeParams:
    """One random draw of every stage (kept so tests and logs can say what was done)."""

    shift_s: float
    rt60_s: float
    drr_db: float
    noise_kind: str  # "pink" | "babble" | "pool"
    snr_db: float
    band_low_hz: float
    band_high_hz: float
    band_order: int
    tilt_db_per_oct: float
    gain_db: float
    drift_db: float
    drift_period_s: float
    opus_kbps: int
    opus_application: str


def draw_params(rng: np.random.Generator, *, has_pool: bool = False) -> DegradeParams:
    kinds = ["pink", "babble", "pool"] if has_pool else ["pink", "babble"]
    return DegradeParams(
        shift_s=float(rng.uniform(0.0, 0.06)),
        rt60_s=float(rng.uniform(0.2, 0.8)),
        drr_db=float(rng.uniform(-3.0, 12.0)),
        noise_kind=str(rng.choice(kinds)),
        snr_db=float(rng.uniform(0.0, 20.0)),
        band_low_hz=float(rng.uniform(200.0, 450.0)),
        band_high_hz=float(rng.uniform(2800.0, 4200.0)),
        band_order=int(rng.integers(2, 5)),
        tilt_db_per_oct=float(rng.uniform(-2.0, 2.0)),
        gain_db=float(rng.uniform(-18.0, 0.0)),
        drift_db=float(rng.uniform(0.0, 4.0)),
        drift_period_s=float(rng.uniform(2.0, 10.0)),
        opus_kbps=int(rng.integers(16, 33)),
        opus_application=str(rng.choice(["voip", "audio"])),
    )


# ---------------------------------------------------------------- noise sources

def _shaped_noise(n: int, rng: np.random.Generator, gain_of_f) -> np.ndarray:
    """White Gaussian noise shaped in the frequency domain by ``gain_of_f(freq_norm)``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)  # cycles/sample, 0..0.5
    spec *= gain_of_f(f)
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance 1/f (pink) noise of ``n`` samples."""
    return _shaped_noise(n, rng, lambda f: 1.0 / np.sqrt(np.maximum(f, 1.0 / max(n, 2))))


def babble_noise(n: int, sr: int, rng: np.random.Generator, talkers: int | None = None) -> np.ndarray:
    """Unit-variance speech-like babble: speech-spectrum noise gated by syllable rhythms.

    Each talker is noise with the long-term speech spectrum (flat to ~500 Hz, then
    about -9 dB/octave) multiplied by a smooth random envelope at 3-6 syllables/s
    with pauses; 3-7 talkers are summed, as in a café.
    """
    talkers = int(rng.integers(3, 8)) if talkers is None else talkers
    f0 = 500.0 / sr
    gain = lambda f: 1.0 / (1.0 + (f / f0) ** 1.5)
    src = np.stack([_shaped_noise(n, rng, gain) for _ in range(talkers)])  # (T, n)
    # syllabic envelopes: band-limited noise around 3-6 Hz, rectified, plus pauses
    env_sr = 100
    m = n * env_sr // sr + 2
    t_env = np.arange(m) / env_sr
    rates = rng.uniform(3.0, 6.0, size=(talkers, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(talkers, 1))
    wobble = np.cumsum(rng.normal(0.0, 0.05, size=(talkers, m)), axis=1)
    env = np.maximum(np.sin(2 * np.pi * rates * t_env + phase + wobble), 0.0) ** 1.5
    pauses = np.repeat(rng.random((talkers, m // 50 + 1)) < 0.75, 50, axis=1)[:, :m]
    env *= pauses
    env_full = np.stack([np.interp(np.arange(n) / sr, t_env, e) for e in env])
    out = np.sum(src * env_full * rng.uniform(0.5, 1.0, size=(talkers, 1)), axis=0)
    return out / (np.std(out) + 1e-12)


def _pool_noise(n: int, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of other audio (looped if the pool is short), unit variance."""
    pool = np.asarray(pool, dtype=np.float64).ravel()
    if pool.size == 0:
        return pink_noise(n, rng)
    if pool.size < n:
        pool = np.tile(pool, n // pool.size + 1)
    start = int(rng.integers(0, pool.size - n + 1))
    out = pool[start:start + n].copy()
    sd = np.std(out)
    return out / sd if sd > 1e-9 else pink_noise(n, rng)


# ---------------------------------------------------------------- stages

def room_impulse_response(sr: int, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct path + early reflections + exponentially decaying noise tail.

    The tail's amplitude falls by 60 dB in ``rt60_s`` (``exp(-6.91 t / RT60)``);
    a second, faster-decaying copy is low-passed away from it so the highs die
    first.  The reverberant energy is scaled so direct/reverberant = ``drr_db``.
    """
    n = int(max(rt60_s * 1.2, 0.05) * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60_s)
    # highs decay ~2x faster: subtract a high-passed part that decays slower than it should
    hp = butter(2, min(3000.0, 0.45 * sr), btype="high", fs=sr, output="sos")
    highs = sosfilt(hp, tail)
    tail = tail - highs * (1.0 - np.exp(-6.908 * t / rt60_s))
    onset = int(rng.uniform(0.002, 0.010) * sr)
    tail[:onset] = 0.0
    # early reflections: a few discrete taps 2-25 ms, decaying
    k = int(rng.integers(3, 7))
    taps = (rng.uniform(0.002, 0.025, size=k) * sr).astype(int)
    tail[taps] += rng.uniform(0.3, 0.8, size=k) * rng.choice([-1.0, 1.0], size=k) * np.max(np.abs(tail) + 1e-9)
    rev_energy = np.sum(tail**2) + 1e-12
    tail *= np.sqrt(10 ** (-drr_db / 10.0) / rev_energy)  # direct has unit energy
    ir = tail
    ir[0] = 1.0
    return ir


def _band_and_tilt(x: np.ndarray, sr: int, p: DegradeParams) -> np.ndarray:
    nyq = sr / 2.0
    lo = min(p.band_low_hz, 0.4 * nyq)
    hi = min(p.band_high_hz, 0.95 * nyq)
    sos = butter(p.band_order, [lo, hi], btype="band", fs=sr, output="sos")
    y = sosfilt(sos, x)
    if abs(p.tilt_db_per_oct) > 1e-3:
        # gentle spectral tilt around 1 kHz in the FFT domain (phase-free)
        spec = np.fft.rfft(y)
        f = np.maximum(np.fft.rfftfreq(len(y), 1.0 / sr), 50.0)
        spec *= 10 ** (p.tilt_db_per_oct * np.log2(f / 1000.0) / 20.0)
        y = np.fft.irfft(spec, len(y))
    return y


def _level(x: np.ndarray, sr: int, p: DegradeParams, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    t = np.arange(n) / sr
    phase = rng.uniform(0, 2 * np.pi)
    drift = p.drift_db * np.sin(2 * np.pi * t / p.drift_period_s + phase)
    # normalise the music+noise to a nominal -20 dBFS RMS before the random gain
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    y = x * (0.1 / rms) * 10 ** ((p.gain_db + drift) / 20.0)
    peak = np.max(np.abs(y)) if n else 0.0
    if peak > 0.99:  # a phone limiter: soft clip instead of wrapping
        y = np.tanh(y)
    return y


def opus_roundtrip(samples: np.ndarray, sr: int, kbps: int = 24, application: str = "voip",
                   timeout_s: float = 60.0) -> np.ndarray:
    """Encode to Ogg/Opus with the real ffmpeg (libopus) and decode back, same length and rate."""
    pcm = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    enc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:",
         "-c:a", "libopus", "-b:a", f"{int(kbps)}k", "-application", application, "-f", "ogg", "pipe:"],
        input=pcm, capture_output=True, timeout=timeout_s, check=False,
    )
    if enc.returncode != 0:
        raise RuntimeError(f"ffmpeg opus encode failed: {enc.stderr.decode(errors='replace')[-300:]}")
    dec = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "ogg", "-i", "pipe:", "-f", "f32le", "-ac", "1",
         "-ar", str(sr), "pipe:"],
        input=enc.stdout, capture_output=True, timeout=timeout_s, check=False,
    )
    if dec.returncode != 0:
        raise RuntimeError(f"ffmpeg opus decode failed: {dec.stderr.decode(errors='replace')[-300:]}")
    out = np.frombuffer(dec.stdout[: len(dec.stdout) // 4 * 4], dtype="<f4")
    n = len(samples)
    if len(out) >= n:
        return out[:n].astype(np.float32)
    return np.concatenate([out, np.zeros(n - len(out), dtype=np.float32)])


def phone_degrade(samples: np.ndarray, sr: int, rng: np.random.Generator, *, opus: bool = True,
                  noise_pool: np.ndarray | None = None, params: DegradeParams | None = None) -> np.ndarray:
    """A voice-message-like view of ``samples`` (mono float, any level) at rate ``sr``.

    ``rng`` decides every random choice, so the same generator state gives the same
    view (the Opus encoder is deterministic for the same input).  ``noise_pool``:
    optional other audio at ``sr`` to draw "another song / TV in the room" noise
    from.  ``params`` fixes the draw (else :func:`draw_params`).  Returns float32 of
    the same length, at a random level (see the module docstring).
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    p = params or draw_params(rng, has_pool=noise_pool is not None and np.size(noise_pool) > 0)

    # 1. delay
    d = int(p.shift_s * sr)
    if d:
        x = np.concatenate([np.zeros(d), x[: n - d]]) if d < n else np.zeros(n)

    # 2. room
    ir = room_impulse_response(sr, p.rt60_s, p.drr_db, rng)
    wet = oaconvolve(x, ir, mode="full")[:n]

    # 3. noise at the microphone
    if p.noise_kind == "pool" and noise_pool is not None:
        nz = _pool_noise(n, noise_pool, rng)
    elif p.noise_kind == "babble":
        nz = babble_noise(n, sr, rng)
    else:
        nz = pink_noise(n, rng)
    sig_power = np.mean(wet**2)
    if sig_power > 1e-14:
        mix = wet + nz * np.sqrt(sig_power / 10 ** (p.snr_db / 10.0))
    else:
        mix = wet + nz * 1e-4

    # 4. speaker + microphone band
    y = _band_and_tilt(mix, sr, p)

    # 5. level
    y = _level(y, sr, p, rng)

    # 6. codec
    y = y.astype(np.float32)
    if opus:
        y = opus_roundtrip(y, sr, p.opus_kbps, p.opus_application)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
