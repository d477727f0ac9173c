"""Offset verification: do the query's single peaks land on the candidate's at the landmarks' offset?

The landmark stage (:mod:`engine.fingerprint.index`) names candidate tracks and, for each,
the time offset at which most of the query's peak *pairs* agree.  A pair only matches when
both of its peaks stand in exactly the same bins and frames, so the hashes throw away every
peak whose partner was lost or moved by the recording (phone band, noise, codec).  The
verification looks at the single peaks instead: the share of the query's spectral peaks
(the analyser's peaks before pairing, :func:`engine.fingerprint.landmarks.extract_fingerprint`)
that land within ``±1`` bin and ``±1`` frame of one of the candidate's reference peaks in
the aligned window.  This is the verification step of Wang (2003, "An industrial-strength
audio search algorithm", §2.3: candidates are re-scored by the alignment of their whole
constellation), as in Panako (Six & Leman 2014, which checks the aligned single peaks of a
candidate with a small time-frequency tolerance) and Sonnleitner & Widmer (2016, "Robust
quad-based audio fingerprinting", whose verification counts the query peaks that have a
reference peak near them in the aligned region).

Why it adds evidence: a wrong track's peaks at any offset are hit only by chance, about
:data:`CHANCE_SHARE` of the query's peaks (9 cells around each of 30 reference peaks per
second in 198 bins x 62.5 frames/s); a recording of the track hits a large share even
when few pairs survived intact.

Storage: each track's reference peaks as sorted codes ``frame * 256 + bin`` (bins of the
phone band are < 198, so a bin of ``-1`` or ``198`` never aliases a real peak of the next or
previous frame), delta-coded and zlib'd: 1.8 bytes a peak, 0.17 MB per hour of audio on the
demo catalogue (the landmark snapshot is 9.3 MB per hour; docs/identification.md).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from engine.fingerprint.landmarks import FRAMES_PER_S, N_BAND_BINS, REFERENCE

#: Codes are ``frame * BIN_SPAN + bin``; 256 > N_BAND_BINS + 1 so a neighbour bin never aliases.
BIN_SPAN = 256
#: A query peak counts when a reference peak lies within this many bins and frames of it.
TOLERANCE_BINS = 1
TOLERANCE_FRAMES = 1
#: The landmark offset is the best of a ±1-frame smoothed histogram: the verification tries
#: the offset and its two neighbours and keeps the best.
OFFSET_SLACK_FRAMES = 1
#: The share a query peak set hits at random: (2*1+1)^2 cells around each reference peak, at the
#: reference density, over the band's cells per second: the null of :func:`peak_surprise`.
CHANCE_SHARE = ((2 * TOLERANCE_BINS + 1) * (2 * TOLERANCE_FRAMES + 1) * REFERENCE.peaks_per_s
                / (N_BAND_BINS * FRAMES_PER_S))


class PeakMatch(NamedTuple):
    """The verification of one candidate: ``matched`` of the ``total`` query peaks that fall inside the track."""

    matched: int
    total: int

    @property
    def share(self) -> float:
        """matched / total, 0..1 (0 when no query peak falls inside the track)."""
        return self.matched / self.total if self.total else 0.0


def peak_surprise(matched: int, total: int, chance: float = CHANCE_SHARE) -> float:
    """-log10 of the chance that ``total`` query peaks landing at random hit ``matched`` or more.

    Binomial tail with per-peak probability ``max(chance, CHANCE_SHARE)`` (floored at what
    random peaks score).  0.0 for no hits; 320.0 where the tail underflows a float.  The service
    decides on it only with ``Settings.identify_verification`` (``engine.identify.verified_rule``);
    what it is worth on real recordings is measured by bench/peak_verification.py
    (docs/identification.md, "Offset verification").
    """
    if matched <= 0 or total <= 0:
        return 0.0
    from scipy.stats import binom

    p = max(float(chance), CHANCE_SHARE)
    sf = float(binom.sf(matched - 1, total, p))
    return float(-np.log10(sf)) if sf > 0 else 320.0


def peak_codes(t: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Sorted distinct codes ``t * BIN_SPAN + f`` (int64) of peaks at frames ``t`` and band bins ``f``."""
    return np.unique(np.asarray(t, np.int64) * BIN_SPAN + np.asarray(f, np.int64))


def pack_peaks(t: np.ndarray, f: np.ndarray) -> bytes:
    """One track's peaks (frames ``t``, bins ``f``, both (p,)) as a compact blob (zlib'd uint32 deltas).

    Raises ValueError for a bin outside 0..N_BAND_BINS - 1 or a negative frame.
    """
    t, f = np.asarray(t, np.int64), np.asarray(f, np.int64)
    if t.size and (f.min() < 0 or f.max() >= N_BAND_BINS or t.min() < 0):
        raise ValueError("peaks need frames >= 0 and band bins 0..%d" % (N_BAND_BINS - 1))
    codes = peak_codes(t, f)
    if codes.size and codes[-1] >= 2**32:
        raise ValueError("a track of more than 2**24 frames (74 h) cannot be stored")
    return zlib.compress(np.diff(codes, prepend=0).astype(np.uint32).tobytes(), 6)


def unpack_peaks(blob: bytes) -> np.ndarray:
    """The sorted codes (int64) of :func:`pack_peaks`."""
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype=np.uint32), dtype=np.int64)


def aligned_peak_matches(q_t: np.ndarray, q_f: np.ndarray, ref_codes: np.ndarray, offset_frames: int) -> PeakMatch:
    """How many query peaks land on the candidate's peaks at ``offset_frames`` (track frame = query frame + offset).

    ``q_t``, ``q_f`` (p,): the query's peak frames and band bins (query density);
    ``ref_codes``: the candidate's sorted :func:`peak_codes`.  A query peak is matched when a
    reference peak lies within :data:`TOLERANCE_BINS` and :data:`TOLERANCE_FRAMES`; the
    offset is tried with :data:`OFFSET_SLACK_FRAMES` either side and the best kept.
    ``total`` counts the query peaks whose aligned frame falls within the track's peaks
    (a recording that starts before the track, or runs past its end, is not blamed for it).
    """
    q_t, q_f = np.asarray(q_t, np.int64), np.asarray(q_f, np.int64)
    if q_t.size == 0 or ref_codes.size == 0:
        return PeakMatch(0, 0)
    first, last = int(ref_codes[0]) // BIN_SPAN, int(ref_codes[-1]) // BIN_SPAN
    aligned = q_t + int(offset_frames)
    inside = (aligned >= first) & (aligned <= last)
    total = int(inside.sum())
    if total == 0:
        return PeakMatch(0, 0)
    q_t, q_f = aligned[inside], q_f[inside]
    pad = OFFSET_SLACK_FRAMES + TOLERANCE_FRAMES + 1
    lo = np.searchsorted(ref_codes, (int(q_t.min()) - pad) * BIN_SPAN)
    hi = np.searchsorted(ref_codes, (int(q_t.max()) + pad) * BIN_SPAN)
    ref = ref_codes[lo:hi]
    if ref.size == 0:
        return PeakMatch(0, total)
    best = 0
    for slack in range(-OFFSET_SLACK_FRAMES, OFFSET_SLACK_FRAMES + 1):
        hit = np.zeros(q_t.size, bool)
        for dt in range(-TOLERANCE_FRAMES, TOLERANCE_FRAMES + 1):
            base = (q_t + slack + dt) * BIN_SPAN + q_f
            for df in range(-TOLERANCE_BINS, TOLERANCE_BINS + 1):
                code = base + df
                pos = np.minimum(np.searchsorted(ref, code), ref.size - 1)
                hit |= ref[pos] == code
        best = max(best, int(hit.sum()))
    return PeakMatch(best, total)


__all__ = ["BIN_SPAN", "CHANCE_SHARE", "OFFSET_SLACK_FRAMES", "TOLERANCE_BINS", "TOLERANCE_FRAMES", "PeakMatch",
           "aligned_peak_matches", "pack_peaks", "peak_codes", "peak_surprise", "unpack_peaks"]
