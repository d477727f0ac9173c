"""The offset verification's measure (issue 23): single query peaks landing on a candidate's.

Generated peak sets whose right count is known by construction; the extraction the landmarks
and the verification share.  What the verification is worth on real recordings is measured by
bench/peak_verification.py (docs/identification.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.fingerprint.landmarks import (FRAMES_PER_S, N_BAND_BINS, extract_landmarks, extract_peaks, pair_peaks,
                                          QUERY)
from engine.fingerprint.peaks import (CHANCE_SHARE, aligned_peak_matches, pack_peaks, peak_codes, peak_surprise,
                                      unpack_peaks)
from tests.audiogen import SR, synthetic_track


def _reference(rng: np.random.Generator, n_frames: int, per_s: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly random reference peaks at ``per_s`` a second, sorted by frame then bin."""
    n = int(n_frames / FRAMES_PER_S * per_s)
    codes = np.unique(rng.integers(0, n_frames, n) * 256 + rng.integers(0, N_BAND_BINS, n))
    return codes // 256, codes % 256


def _far_from(codes: np.ndarray, t: np.ndarray, f: np.ndarray, reach: int) -> np.ndarray:
    """Which peaks ``(t, f)`` have no peak of ``codes`` within ``reach`` frames and bins."""
    near = np.zeros(t.size, bool)
    for dt in range(-reach, reach + 1):
        for df in range(-reach, reach + 1):
            near |= np.isin((t + dt) * 256 + f + df, codes)
    return ~near


def test_the_share_counts_query_peaks_within_one_bin_and_one_frame_of_the_candidates() -> None:
    rng = np.random.default_rng(0)
    ref_t, ref_f = _reference(rng, 3000)
    codes = peak_codes(ref_t, ref_f)
    offset = 1234  # the query starts 1234 frames into the track
    pick = rng.choice(np.flatnonzero((ref_t > offset + 5) & (ref_t < offset + 600)
                                     & (ref_f > 0) & (ref_f < N_BAND_BINS - 1)), 100, replace=False)
    q_t, q_f = ref_t[pick] - offset, ref_f[pick].copy()
    q_t[:20] += rng.choice([-1, 1], 20)  # moved one frame ...
    q_f[20:40] += rng.choice([-1, 1], 20)  # ... or one bin: still the same peak
    # 50 peaks of the recording that are no peak of the track (noise): nothing within 3 cells
    ct, cf = rng.integers(offset, offset + 600, 400), rng.integers(0, N_BAND_BINS, 400)
    far = _far_from(codes, ct, cf, 3)
    extra_t, extra_f = ct[far][:50] - offset, cf[far][:50]
    assert extra_t.size == 50
    # 10 peaks before the track starts cannot match and are not counted
    before_t, before_f = -offset - rng.integers(10, 100, 10), rng.integers(0, N_BAND_BINS, 10)
    pm = aligned_peak_matches(np.r_[q_t, extra_t, before_t], np.r_[q_f, extra_f, before_f], codes, offset)
    assert (pm.matched, pm.total) == (100, 150) and pm.share == pytest.approx(100 / 150)
    # two bins away is another peak, not this one
    assert aligned_peak_matches(q_t[40:], q_f[40:] + 2, codes, offset).matched < 10
    # at a wrong offset the same peaks land at chance
    assert aligned_peak_matches(q_t, q_f, codes, offset + 400).share < 0.15


def test_random_peaks_hit_at_the_chance_share() -> None:
    """CHANCE_SHARE is what unrelated peak sets score: the floor of the verification's chance level."""
    rng = np.random.default_rng(1)
    ref_t, ref_f = _reference(rng, 60_000)
    codes = peak_codes(ref_t, ref_f)
    q_t, q_f = _reference(rng, 5_000, per_s=45.0)
    share = aligned_peak_matches(q_t, q_f, codes, 20_000).share
    assert 0.6 * CHANCE_SHARE < share < 2.5 * CHANCE_SHARE  # 3 offsets tried: a little above one's chance


def test_peaks_pack_compactly_and_round_trip() -> None:
    rng = np.random.default_rng(2)
    t, f = _reference(rng, 62_500)  # 1000 s of peaks at 30/s
    blob = pack_peaks(t, f)
    assert np.array_equal(unpack_peaks(blob), peak_codes(t, f))
    assert len(blob) < 3.0 * t.size  # ~2 bytes a peak
    with pytest.raises(ValueError, match="band bins"):
        pack_peaks(np.array([1]), np.array([N_BAND_BINS]))
    assert aligned_peak_matches(np.zeros(0), np.zeros(0), peak_codes(t, f), 0).total == 0


def test_landmarks_are_paired_from_the_peaks_the_verification_reads() -> None:
    x = synthetic_track(4, 12.0)
    t, f = extract_peaks(x, SR, density="query")
    assert t.size > 12 * 20 and f.min() >= 0 and f.max() < N_BAND_BINS
    assert np.all(np.diff(t) >= 0)
    h, ht = extract_landmarks(x, SR, density="query")
    h2, ht2 = pair_peaks(t, f, QUERY.fan_out)
    assert np.array_equal(h, h2) and np.array_equal(ht, ht2)
    with pytest.raises(ValueError, match="density"):
        extract_peaks(x, SR, density="dense")


def test_peak_surprise_grows_with_hits_and_falls_with_the_chance_level() -> None:
    assert peak_surprise(0, 400, 0.03) == 0.0
    assert peak_surprise(120, 400, 0.03) > peak_surprise(40, 400, 0.03) > peak_surprise(15, 400, 0.03)
    assert peak_surprise(40, 400, 0.08) < peak_surprise(40, 400, 0.03)
    assert peak_surprise(40, 400, 0.0) == peak_surprise(40, 400, CHANCE_SHARE)  # floored at random peaks
    assert peak_surprise(20, 20) == pytest.approx(20 * -np.log10(CHANCE_SHARE), rel=1e-6)  # every peak hits
    assert peak_surprise(400, 400) == 320.0  # below a float's range: capped
