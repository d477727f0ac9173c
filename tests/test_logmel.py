"""The model-free log-mel statistics backbone."""

from __future__ import annotations

import numpy as np

from engine.features.logmel import LogMelBackbone

SR = 16000


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def test_contract_and_shapes() -> None:
    bb = LogMelBackbone()
    assert bb.name == "logmel" and bb.model_id == "logmel:v1" and bb.dim == 288
    audio = _audio(10.0)
    for hop in (3.0, 1.0, 0.5):
        f = bb.features(audio, hop)
        assert f.shape == (bb.n_patches(audio.size, hop), 288)
        assert f.dtype == np.float32 and np.isfinite(f).all()
    assert bb.features(audio[:100], 1.0).shape == (1, 288)
    assert bb.features(np.zeros(0, np.float32), 1.0).shape == (1, 288)


def test_matches_direct_statistics() -> None:
    bb = LogMelBackbone()
    audio = _audio(8.0, seed=2)
    f = bb.features(audio, 1.0)
    lm = bb.log_mel(audio)
    for i in (0, 3, len(f) - 1):
        s = round(i * SR / 256)
        p = lm[s : s + 187]
        want = np.concatenate([p.mean(0), p.std(0), np.diff(p, axis=0).std(0)])
        np.testing.assert_allclose(f[i], want, rtol=1e-5, atol=1e-5)


def test_tone_and_noise_differ() -> None:
    bb = LogMelBackbone()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    noise = (0.3 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)
    assert not np.allclose(bb.features(tone, 3.0), bb.features(noise, 3.0), atol=1e-2)
