"""Recognising a recording played a few percent fast or slow (radio, DJ sets, turntables).

Why a remedy is needed: a speed change ``s`` scales every landmark's frequency by ``s``
and its time gap by ``1/s``; exact landmark hashes (15.6 Hz x 16 ms cells, see
:mod:`engine.fingerprint.landmarks`) stop matching past about 1% (measured: 2% leaves
0.05 of clean excerpts recognised, docs/identification.md).  Resampling the query by
``1/s`` undoes the change exactly, so the query side tries speed variants ``STEP_PCT``
apart and keeps the most confident answer: the index is unchanged, and the cost is paid
only when the recording at its own speed gave no confident answer, on its first
``PROBE_S`` seconds.  Speed-invariant landmarks (as Panako's frequency-ratio hashes) would
avoid that cost but need a new index (issue 15's landmark work).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Protocol

import numpy as np
from scipy.signal import resample_poly

from .index import FingerprintMatch

#: Spacing of the speed variants (%): exact landmarks recognise +-0.75% around each.
STEP_PCT = 1.5
#: Speed variants are matched on this much of the recording (s): enough for a confident
#: answer to a catalogue song, and it bounds the cost for the common recording that is none.
PROBE_S = 6.0
#: A speed variant's answer counts only from this confidence on.  Why stricter than the
#: service's threshold: every variant is one more chance for a chance match.  On the dev
#: corpus (60 clean 10-s excerpts, 8 variants each) wrong best candidates reached 0.52 and
#: right ones within reach scored >= 0.94 (docs/identification.md).
VARIANT_MIN_CONFIDENCE = 0.8
#: Only the recording's own speed (the behaviour without the remedy).
NOMINAL_ONLY: tuple[float, ...] = (1.0,)


def speed_variants(tolerance_pct: float) -> tuple[float, ...]:
    """Speeds (played / original) to try, nearest first: 1.0, then +-STEP_PCT, +-2*STEP_PCT...

    Up to ``tolerance_pct`` (0 = only 1.0); e.g. 3 -> (1.0, 0.985, 1.015, 0.97, 1.03).
    """
    out = [1.0]
    n = int(tolerance_pct / STEP_PCT + 1e-9)
    for i in range(1, n + 1):
        out += [round(1 - i * STEP_PCT / 100, 4), round(1 + i * STEP_PCT / 100, 4)]
    return tuple(out)


class Matcher(Protocol):
    def match(self, audio: np.ndarray, sr: int, top_k: int = 5) -> list[FingerprintMatch]: ...


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """``samples`` played ``factor`` times faster (pitch and tempo together), same sample rate.

    ``samples``: float32 mono; returns float32 of ``len / factor`` samples (polyphase
    resampling with the ratio rounded to 1/1000).
    """
    if abs(factor - 1.0) < 1e-6:
        return samples
    ratio = Fraction(1000, int(round(1000 * factor)))
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def match_any_speed(index: Matcher, samples: np.ndarray, sr: int, *, variants: Sequence[float],
                    stop_confidence: float = 0.5, top_k: int = 3, probe_s: float = PROBE_S,
                    variant_min_confidence: float = VARIANT_MIN_CONFIDENCE) -> list[FingerprintMatch]:
    """The landmark candidates of the most confident speed variant, best first (may be empty).

    ``samples``: float32 mono at ``sr`` Hz; ``variants``: :func:`speed_variants` of the reach
    (``Settings.speed_tolerance_pct``), or ``NOMINAL_ONLY``.  Variants are tried in order (the recording's own
    speed first, on all of it; the others on its first ``probe_s`` seconds) until one's best
    candidate reaches ``stop_confidence``; a variant other than 1.0 counts only when its best
    reaches ``variant_min_confidence``.  ``offset_s`` of the answer is in the catalogue
    track's time.  Raises what ``index.match`` raises (StoreError).
    """
    best: list[FingerprintMatch] = []
    probe = samples[: int(probe_s * sr)]
    for speed in variants:
        query = samples if speed == 1.0 else change_speed(probe, 1.0 / speed)
        matches = index.match(query, sr, top_k=top_k)
        if speed != 1.0 and matches and matches[0].confidence < variant_min_confidence:
            continue
        if matches and (not best or matches[0].confidence > best[0].confidence):
            best = matches
        if best and best[0].confidence >= stop_confidence:
            break
    return best
