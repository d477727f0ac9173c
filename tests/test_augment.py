"""index_builder.augment: the phone-recording view used to train the head."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from index_builder.augment import (
    babble_noise,
    draw_params,
    opus_roundtrip,
    phone_degrade,
    pink_noise,
    room_impulse_response,
)
from tests.audiogen import synthetic_track

SR = 16000


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return synthetic_track(3, seconds=6.0, sr=SR)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / (spec.sum() + 1e-20))


def test_shape_dtype_and_determinism(music):
    a = phone_degrade(music, SR, np.random.default_rng(7), opus=False)
    b = phone_degrade(music, SR, np.random.default_rng(7), opus=False)
    c = phone_degrade(music, SR, np.random.default_rng(8), opus=False)
    assert a.shape == music.shape and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_phone_band_removes_lows_and_highs(music):
    rng = np.random.default_rng(0)
    for _ in range(3):
        y = phone_degrade(music, SR, rng, opus=False)
        assert _band_energy(y, 5000, 8000) < 0.02
        assert _band_energy(y, 0, 120) < 0.05
        # still related to the music: the degraded view is not pure noise
        assert _band_energy(y, 300, 3400) > 0.8


def test_noise_sources_are_unit_variance_and_coloured():
    rng = np.random.default_rng(1)
    p = pink_noise(SR * 4, rng)
    b = babble_noise(SR * 4, SR, rng)
    assert abs(np.std(p) - 1) < 1e-6 and abs(np.std(b) - 1) < 1e-6
    # pink: more energy below 500 Hz than white noise would have (500/8000 = 6%)
    assert _band_energy(p, 0, 500) > 0.3
    # babble is amplitude-modulated: its 50 ms envelope varies far more than white noise's
    env = np.sqrt(np.mean(b[: len(b) // 800 * 800].reshape(-1, 800) ** 2, axis=1))
    assert np.std(env) / np.mean(env) > 0.2


def test_room_ir_decays_like_its_rt60():
    rng = np.random.default_rng(2)
    ir = room_impulse_response(SR, rt60_s=0.5, drr_db=0.0, rng=rng)
    assert ir[0] == 1.0
    tail = ir[1:]
    # direct / reverberant ratio as asked
    assert abs(10 * np.log10(1.0 / np.sum(tail**2))) < 0.5
    # energy decay: the last 20% of the IR holds a tiny part of the tail energy
    assert np.sum(tail[int(0.8 * len(tail)):] ** 2) < 1e-3 * np.sum(tail**2)


def test_pool_noise_used_when_given(music):
    rng = np.random.default_rng(3)
    pool = synthetic_track(11, seconds=10.0, sr=SR)
    params = draw_params(np.random.default_rng(0), has_pool=True)
    params = type(params)(**{**params.__dict__, "noise_kind": "pool", "snr_db": 0.0})
    y = phone_degrade(music, SR, rng, opus=False, noise_pool=pool, params=params)
    assert y.shape == music.shape and np.all(np.isfinite(y))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_opus_roundtrip_keeps_length_and_signal(music):
    y = opus_roundtrip(music, SR, kbps=24)
    assert y.shape == music.shape and y.dtype == np.float32
    # Opus keeps the spectrogram (not the waveform's phase): log-magnitude STFTs correlate
    from scipy.signal import stft

    _, _, a = stft(music, SR, nperseg=512)
    _, _, b = stft(y, SR, nperseg=512)
    r = np.corrcoef(np.log(np.abs(a) + 1e-4).ravel(), np.log(np.abs(b) + 1e-4).ravel())[0, 1]
    assert r > 0.9
    z = phone_degrade(music, SR, np.random.default_rng(4), opus=True)
    assert z.shape == music.shape and np.all(np.isfinite(z))
