"""Spectral-peak landmarks ("constellation" hashes, Wang 2003 / audfprint / Panako).

Why landmarks: a phone held near a speaker keeps only the *positions* of the
strongest time-frequency peaks reliably.  Reverb, the 300-3400 Hz phone band,
background noise at ~10 dB SNR, level drift and a low-bitrate codec all change
magnitudes a lot, but a local spectral maximum of the music usually stays a
local maximum.  A pair of peaks ``(f1, f2 - f1, t2 - t1)`` is invariant to the
query's start time, so the matcher only has to find many pairs that agree on
one time offset.

Pipeline (all vectorised numpy/scipy, no per-frame Python loops):

1. mono -> 8 kHz (``resample_poly``); everything the phone keeps is < 4 kHz.
2. STFT, Hann 512 (64 ms, 15.6 Hz bins), hop 128 (16 ms, 62.5 frames/s).
3. log magnitude, only bins in 300-3400 Hz (the phone band: peaks outside it
   in the reference could never be found again in a phone query).
4. per-band whitening: subtract each bin's running mean over ~1 s.  In the log
   domain, a microphone/room/phone frequency response and a slow level drift
   are additive, so this removes them and keeps weak bands from being drowned
   by loud ones.
5. peaks = local maxima of the log spectrum in a 21-bin x 15-frame
   neighbourhood (328 Hz x 240 ms: a peak must dominate its few semitones and
   about a note's length, so a reverb tail or a noise bump next to it cannot
   displace it), ranked by their whitened height; keep the strongest
   ``peaks_per_s`` in every 0.5-s block (an adaptive threshold: constant
   density whatever the loudness).  On the dev corpus 9x7 -> 15x11 -> 21x15
   raised phone top-1 0.93 -> 0.97 -> 0.98; larger (31x21, 21x25) starves the
   density and falls back to 0.92-0.95.
6. pair every anchor with the next ``fan_out`` peaks in a target zone
   (1..63 frames = 16 ms..1 s later, |df| <= 63 bins) -> a mixed-radix hash
   ``(f1 * 127 + df + 63) * 63 + dt - 1`` (198 x 127 x 63 values, < 2**21),
   stored with the anchor frame.

``density="query"`` keeps more peaks (45/s vs 30/s, where the music has
that many candidates) and pairs with a wider fan-out (12 vs 8) than
``density="reference"``: a degraded query loses some of the reference
peaks and gains spurious ones; picking *more* on the query side makes it likely
that the reference's (sparser, stronger) peaks and pairs are all still among
the query's, while the index stays small.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import gcd
from typing import Literal, NamedTuple

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage, signal

log = logging.getLogger(__name__)

#: Sample rate the landmarks are computed at.
#: Bumped whenever extraction changes (parameters, hashing): an index built with another
#: version must be rebuilt, so it is part of the index's model id (engine.embed).
LANDMARK_VERSION = 1

SR = 8000
N_FFT = 512
HOP = 128
#: Frames per second of the landmark time axis (``times`` are in these frames).
FRAMES_PER_S = SR / HOP
#: Phone band kept for peak picking (Hz).
F_LO_HZ = 300.0
F_HI_HZ = 3400.0

_BIN_HZ = SR / N_FFT
_BIN_LO = int(np.ceil(F_LO_HZ / _BIN_HZ))
_BIN_HI = int(np.floor(F_HI_HZ / _BIN_HZ))  # inclusive
#: Bins of the phone band: peak bins are 0..N_BAND_BINS - 1 (198 at 15.6 Hz).
N_BAND_BINS = _BIN_HI - _BIN_LO + 1

_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)

# target zone; hash = mixed radix of (f1, df, dt), < 2**21 (see module docstring)
_DF_MAX = 63
_DT_MAX = 63
HASH_BITS = 21


@dataclass(frozen=True)
class LandmarkParams:
    """Knobs of one density.  Defaults are the reference side."""

    #: peaks kept per second (strongest first, per 0.5 s block)
    peaks_per_s: float = 30.0
    #: pairs per anchor
    fan_out: int = 8
    #: local-max neighbourhood, in bins x frames (odd sizes)
    nb_freq: int = 21
    nb_time: int = 15
    #: a peak must stand this many dB above its band's running mean
    min_db: float = 3.0
    #: length of the per-band running mean (frames), ~1 s
    whiten_frames: int = 63
    #: look for local maxima in the whitened (True) or the raw log spectrogram
    pick_on_white: bool = False


REFERENCE = LandmarkParams()
QUERY = LandmarkParams(peaks_per_s=45.0, fan_out=12)

DENSITIES: dict[str, LandmarkParams] = {"reference": REFERENCE, "query": QUERY}


def to_8k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at :data:`SR` (polyphase resampling, its own anti-alias filter)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:  # (n, ch) or (ch, n): average the shorter axis
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    if sr != SR:
        g = gcd(int(sr), SR)
        x = signal.resample_poly(x, SR // g, int(sr) // g).astype(np.float32, copy=False)
    return x


def log_spectrogram(x8k: np.ndarray) -> np.ndarray:
    """Log power (dB) of the phone band, shape ``(n_bins_band, n_frames)``."""
    if x8k.size < N_FFT:
        x8k = np.pad(x8k, (0, N_FFT - x8k.size))
    frames = np.lib.stride_tricks.sliding_window_view(x8k, N_FFT)[::HOP] * _WINDOW
    spec = sp_fft.rfft(frames, axis=1)[:, _BIN_LO : _BIN_HI + 1]  # complex64: float32 FFT
    power = np.ascontiguousarray((spec.real * spec.real + spec.imag * spec.imag).T)
    # +1e-6: about -60 dB re a full-scale sine's bin power (~(N/4)^2) minus
    # another ~80 dB, so digital silence is flat and has no peaks
    return 10.0 * np.log10(power + np.float32(1e-6))


def find_peaks(logspec: np.ndarray, p: LandmarkParams) -> tuple[np.ndarray, np.ndarray]:
    """Peak (frame, bin) arrays, sorted by frame then bin; bins are band-relative."""
    n_frames = logspec.shape[1]
    if n_frames == 0:
        e = np.zeros(0, np.int32)
        return e, e
    # whitening: remove each band's slow level (EQ, reverb colour, level drift)
    mean = ndimage.uniform_filter1d(logspec, size=p.whiten_frames, axis=1, mode="nearest")
    white = logspec - mean
    # separable max filter: freq pass then time pass
    base = white if p.pick_on_white else logspec
    mx = ndimage.maximum_filter1d(base, size=p.nb_freq, axis=0, mode="nearest")
    mx = ndimage.maximum_filter1d(mx, size=p.nb_time, axis=1, mode="nearest")
    is_max = base == mx
    # silence / digital floor (-60 dB, see log_spectrogram) never counts
    cand = is_max & (white > p.min_db) & (logspec > -50.0)
    f_idx, t_idx = np.nonzero(cand)
    if f_idx.size == 0:
        e = np.zeros(0, np.int32)
        return e, e
    strength = white[f_idx, t_idx]
    # adaptive threshold: keep the strongest k per 0.5-s block
    block = np.maximum(1, int(round(0.5 * FRAMES_PER_S)))
    k = max(1, int(round(p.peaks_per_s * 0.5)))
    blk = t_idx // block
    order = np.lexsort((-strength, blk))  # by block, strongest first
    blk_sorted = blk[order]
    starts = np.searchsorted(blk_sorted, blk_sorted, side="left")
    rank = np.arange(order.size) - starts
    keep = order[rank < k]
    t_k, f_k = t_idx[keep], f_idx[keep]
    o = np.lexsort((f_k, t_k))
    return t_k[o].astype(np.int32), f_k[o].astype(np.int32)


def pair_peaks(t: np.ndarray, f: np.ndarray, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes and anchor times of each peak paired with its next ``fan_out`` targets."""
    n = t.size
    if n < 2:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    # look ahead over enough following peaks to fill the fan-out after
    # discarding those outside the target zone (same frame, |df| too large)
    look = min(n - 1, fan_out * 4)
    i = np.arange(n)[:, None]
    j = i + np.arange(1, look + 1)[None, :]
    valid_j = j < n
    j = np.minimum(j, n - 1)
    dt = t[j] - t[:, None]
    df = f[j] - f[:, None]
    ok = valid_j & (dt >= 1) & (dt <= _DT_MAX) & (np.abs(df) <= _DF_MAX)
    ok &= np.cumsum(ok, axis=1) <= fan_out
    ai, kj = np.nonzero(ok)
    # mixed-radix packing: f1 * (2*DF_MAX+1) * DT_MAX + (df+DF_MAX) * DT_MAX + (dt-1)
    hashes = (f[ai].astype(np.int64) * (2 * _DF_MAX + 1) + (df[ai, kj] + _DF_MAX)) * _DT_MAX + (dt[ai, kj] - 1)
    return hashes.astype(np.uint32), t[ai].astype(np.int32)


def _density(density: str, params: LandmarkParams | None) -> LandmarkParams:
    if params is not None:
        return params
    try:
        return DENSITIES[density]
    except KeyError:
        raise ValueError(f"density must be 'reference' or 'query', not {density!r}") from None


def extract_peaks(
    audio: np.ndarray,
    sr: int,
    *,
    density: Literal["reference", "query"] | str = "reference",
    params: LandmarkParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The single spectral peaks the landmarks are paired from: ``(frames, band bins)``, both (p,) int32.

    Frames at :data:`FRAMES_PER_S`, bins band-relative (0..:data:`N_BAND_BINS` - 1), sorted by
    frame then bin.  The offset verification (:mod:`engine.fingerprint.peaks`, Wang 2003) compares
    them after the hashes have named a candidate.  Raises ValueError for an unknown ``density``.
    """
    p = _density(density, params)
    x = to_8k(audio, sr)
    if x.size == 0:
        e = np.zeros(0, np.int32)
        return e, e
    return find_peaks(log_spectrogram(x), p)


class Fingerprint(NamedTuple):
    """What one extraction gives: the landmarks and the single peaks they were paired from.

    ``hashes`` (n,) uint32 < 2**21 and ``times`` (n,) int32 anchor frames: the landmarks;
    ``peak_t`` (p,) int32 frames at :data:`FRAMES_PER_S` and ``peak_f`` (p,) int32
    band-relative bins (0..:data:`N_BAND_BINS` - 1): every peak kept, sorted by frame then bin.
    """

    hashes: np.ndarray
    times: np.ndarray
    peak_t: np.ndarray
    peak_f: np.ndarray


def extract_fingerprint(
    audio: np.ndarray,
    sr: int,
    *,
    density: Literal["reference", "query"] | str = "reference",
    params: LandmarkParams | None = None,
) -> Fingerprint:
    """Landmarks *and* their peaks of mono float audio at ``sr`` Hz, from one spectrogram.

    The build stores both; a query's peaks verify the candidates its hashes named
    (:mod:`engine.fingerprint.peaks`).  Raises ValueError for an unknown ``density``.
    """
    p = _density(density, params)
    t, f = extract_peaks(audio, sr, params=p)
    h, ht = pair_peaks(t, f, p.fan_out)
    return Fingerprint(h, ht, t, f)


def extract_landmarks(
    audio: np.ndarray,
    sr: int,
    *,
    density: Literal["reference", "query"] | str = "reference",
    params: LandmarkParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark hashes (uint32, < 2**21) and their anchor times (int32 frames at 62.5/s).

    ``density="reference"`` for indexing, ``"query"`` for recordings to identify
    (denser peaks and fan-out, see the module docstring).  ``params`` overrides
    the density's parameters (for experiments).  Raises ValueError for an unknown ``density``.
    """
    fp = extract_fingerprint(audio, sr, density=density, params=params)
    return fp.hashes, fp.times
