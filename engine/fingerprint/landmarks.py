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
7. the inverted index is keyed by **triplets** instead (landmark version 2,
   :func:`triplet_hashes`): the anchor with two later peaks of a narrower zone
   (|df| <= 31 bins), ``(f1, df2, dt2, df3, dt3)`` in 32 bits.  A pair's 21 bits
   make every posting list long: at 684 h a 10-s note touched ~5.7 M rows.  A
   triplet's ~11 more bits cut that ~30x, but a phone breaks an exact triplet
   often (the third peak moves by a frame), so the query side looks each
   triplet up with its two targets moved by +-1 frame (9 variants), and the
   triplets only *shortlist* tracks: the shortlist is scored with the pairs of
   each candidate, derived from its stored peaks (:mod:`engine.fingerprint.index`).
   Measured on real phone recordings (bench/landmark_specificity.py,
   docs/identification.md "Pairs or triplets"): within noise of pairs alone on
   the share named right, and its shortlist keeps the right song as the
   catalogue grows 48x.

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
LANDMARK_VERSION = 2

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
# triplet zone: |df| <= 31 so that 198 x 63**4 values fit 32 bits (see triplet_hashes)
_TRIPLET_DF_MAX = 31


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
    #: triplets: targets per anchor they are made from (reference: consecutive two of them;
    #: query: every two of them, see :func:`triplet_hashes`)
    triplet_fan: int = 6
    #: triplets: every two of the targets (the query side) instead of consecutive ones
    triplet_all_pairs: bool = False
    #: triplets: each is also looked up with its targets moved by up to this many frames
    triplet_jitter: int = 0


REFERENCE = LandmarkParams()
QUERY = LandmarkParams(peaks_per_s=45.0, fan_out=12, triplet_fan=8, triplet_all_pairs=True, triplet_jitter=1)

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


def _zone(t: np.ndarray, f: np.ndarray, fan: int, df_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(j, ok)``, both (n, look): the peaks following each peak, and which are its first ``fan`` targets.

    A target lies 1..63 frames later and within ``df_max`` bins; ``look`` (``fan`` x 4 following
    peaks) leaves room to fill the fan-out after discarding those outside the zone (same frame,
    |df| too large).  ``ok`` is True at most ``fan`` times a row, in time order.  Shared by the
    pairs (:func:`pair_peaks`) and the triplets (:func:`zone_targets`).
    """
    n = t.size
    look = min(n - 1, fan * 4)
    j = np.arange(n)[:, None] + np.arange(1, look + 1)[None, :]
    valid = j < n
    j = np.minimum(j, n - 1)
    dt = t[j] - t[:, None]
    ok = valid & (dt >= 1) & (dt <= _DT_MAX) & (np.abs(f[j] - f[:, None]) <= df_max)
    ok &= np.cumsum(ok, axis=1) <= fan
    return j, ok


def pair_peaks(t: np.ndarray, f: np.ndarray, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes and anchor times of each peak paired with its next ``fan_out`` targets."""
    if t.size < 2:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    j, ok = _zone(t, f, fan_out, _DF_MAX)
    ai, kj = np.nonzero(ok)
    tj = j[ai, kj]
    dt, df = t[tj] - t[ai], f[tj] - f[ai]
    # mixed-radix packing: f1 * (2*DF_MAX+1) * DT_MAX + (df+DF_MAX) * DT_MAX + (dt-1)
    hashes = (f[ai].astype(np.int64) * (2 * _DF_MAX + 1) + (df + _DF_MAX)) * _DT_MAX + (dt - 1)
    return hashes.astype(np.uint32), t[ai].astype(np.int32)


def zone_targets(t: np.ndarray, f: np.ndarray, fan: int, df_max: int = _TRIPLET_DF_MAX) -> np.ndarray:
    """(n, fan) indices of each peak's first ``fan`` targets (1..63 frames later, within ``df_max`` bins), -1 past them."""
    j, ok = _zone(t, f, fan, df_max)
    order = np.argsort(~ok, axis=1, kind="stable")  # targets first, in time order
    tgt = np.where(np.take_along_axis(ok, order, 1), np.take_along_axis(j, order, 1), -1)[:, :fan]
    return np.pad(tgt, ((0, 0), (0, fan - tgt.shape[1])), constant_values=-1)


def triplet_hashes(t: np.ndarray, f: np.ndarray, fan: int, *, all_pairs: bool, jitter: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Triplet hashes (uint32) and anchor frames of peaks ``(t, f)`` sorted by frame (Panako-style, Six & Leman 2014).

    Each anchor with two of its first ``fan`` targets (1..63 frames later, within 31 bins):
    ``all_pairs=False`` (the reference) takes consecutive targets ``(k, k+1)``; ``all_pairs=True``
    (the query) takes every two of them, so a spurious query peak between two reference targets
    does not break the triplet.  ``jitter`` adds the variants with either target moved by up to
    that many frames: a phone shifts single peaks by a hop often enough to break most exact
    triplets (measured: top-1 0.55-0.68 without, 0.85-0.92 with +-1 frame).  The hash is the
    mixed radix ``(((f1*63 + df2+31)*63 + dt2-1)*63 + df3+31)*63 + dt3-1`` < 198 * 63**4 < 2**32.
    """
    if fan < 2:
        raise ValueError(f"a triplet needs two targets per anchor: fan must be >= 2, not {fan}")
    t, f = np.asarray(t, np.int64), np.asarray(f, np.int64)
    if t.size < 3:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    tgt = zone_targets(t, f, fan)
    combos = (np.array([(a, b) for a in range(fan) for b in range(a + 1, fan)]) if all_pairs
              else np.array([(k, k + 1) for k in range(fan - 1)]))
    p2, p3 = tgt[:, combos[:, 0]], tgt[:, combos[:, 1]]
    ok = (p2 >= 0) & (p3 >= 0)
    an = np.broadcast_to(np.arange(t.size)[:, None], p2.shape)[ok]
    p2, p3 = p2[ok], p3[ok]
    shifts = np.arange(-jitter, jitter + 1)
    e2, e3 = (x.ravel() for x in np.meshgrid(shifts, shifts, indexing="ij"))  # every (dt2, dt3) variant
    dt2 = (t[p2] - t[an])[:, None] + e2[None, :]
    dt3 = (t[p3] - t[an])[:, None] + e3[None, :]
    rdf = 2 * _TRIPLET_DF_MAX + 1
    h = ((((f[an] * rdf + f[p2] - f[an] + _TRIPLET_DF_MAX) * _DT_MAX)[:, None] + dt2 - 1) * rdf
         + (f[p3] - f[an] + _TRIPLET_DF_MAX)[:, None]) * _DT_MAX + dt3 - 1
    keep = (dt2 >= 1) & (dt2 <= _DT_MAX) & (dt3 >= 1) & (dt3 <= _DT_MAX)
    return h[keep].astype(np.uint32), np.broadcast_to(t[an][:, None], keep.shape)[keep].astype(np.int32)


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
    """What one extraction gives: the inverted index's keys and the single peaks they were made from.

    ``hashes`` (n,) uint32 triplet hashes (:func:`triplet_hashes`) and ``times`` (n,) int32
    anchor frames: the keys the index looks up; ``peak_t`` (p,) int32 frames at
    :data:`FRAMES_PER_S` and ``peak_f`` (p,) int32 band-relative bins (0..:data:`N_BAND_BINS` - 1):
    every peak kept, sorted by frame then bin, from which :meth:`pairs` derives the pair landmarks
    that score the shortlisted tracks.
    """

    hashes: np.ndarray
    times: np.ndarray
    peak_t: np.ndarray
    peak_f: np.ndarray
    fan_out: int = REFERENCE.fan_out

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The pair landmarks ``(hashes uint32 < 2**21, anchor frames)`` of these peaks (:func:`pair_peaks`)."""
        return pair_peaks(self.peak_t, self.peak_f, self.fan_out)


def extract_fingerprint(
    audio: np.ndarray,
    sr: int,
    *,
    density: Literal["reference", "query"] | str = "reference",
    params: LandmarkParams | None = None,
) -> Fingerprint:
    """Triplet keys *and* their peaks of mono float audio at ``sr`` Hz, from one spectrogram.

    The build stores both; a query's triplets shortlist tracks, its peaks' pairs score them, and
    its peaks verify the candidates (:mod:`engine.fingerprint.peaks`).  The reference side makes
    consecutive-target triplets, the query side every-two-target triplets with +-1-frame variants
    (:func:`triplet_hashes`).  Raises ValueError for an unknown ``density``.
    """
    p = _density(density, params)
    t, f = extract_peaks(audio, sr, params=p)
    h, ht = triplet_hashes(t, f, p.triplet_fan, all_pairs=p.triplet_all_pairs, jitter=p.triplet_jitter)
    return Fingerprint(h, ht, t, f, p.fan_out)


def extract_landmarks(
    audio: np.ndarray,
    sr: int,
    *,
    density: Literal["reference", "query"] | str = "reference",
    params: LandmarkParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pair landmark hashes (uint32, < 2**21) and their anchor times (int32 frames at 62.5/s).

    ``density="reference"`` for indexing, ``"query"`` for recordings to identify
    (denser peaks and fan-out, see the module docstring).  ``params`` overrides
    the density's parameters (for experiments).  These are what scores a candidate (and the
    Milvus backend's windows); the SQLite index's keys are the triplets of
    :func:`extract_fingerprint`.  Raises ValueError for an unknown ``density``.
    """
    p = _density(density, params)
    return pair_peaks(*extract_peaks(audio, sr, params=p), p.fan_out)
