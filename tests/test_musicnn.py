"""The PyTorch musicnn port: weights conversion and cache, features, and the float16 regression.

Equality with the original TensorFlow graph is checked once, outside the test
suite (TF is not a dependency): bench/check_musicnn_port.py, docs/musicnn_port.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import WeightsUnavailableError
from engine.features import musicnn as mn
from engine.features.musicnn import MSD_LABELS, MusicnnBackbone, find_checkpoint

SR = 16000

pytestmark = pytest.mark.skipif(
    find_checkpoint("MSD") is None,
    reason="musicnn package not installed (pip install --no-deps musicnn==0.1.0)",
)


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(SR * seconds)) / SR


def tone(seconds: float = 6.0, f: float = 440.0, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * _t(seconds))).astype(np.float32)


def noise(seconds: float = 6.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def chord(seconds: float = 6.0, amp: float = 0.15) -> np.ndarray:
    t = _t(seconds)
    y = sum(
        np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.5)) for f in (261.6, 329.6, 392.0, 523.3)
    )
    return (amp * y).astype(np.float32)


def loud_music(seconds: float = 12.0) -> np.ndarray:
    """Full-scale, clipped, changing content: kick + bass + chords + hats every 3 s."""
    t = _t(seconds)
    rng = np.random.default_rng(3)
    beat = t % 0.5
    kick = np.sin(2 * np.pi * 55 * t) * np.exp(-12 * beat)
    section = (t // 3).astype(int)
    roots = np.array([110.0, 146.8, 98.0, 130.8])[section % 4]
    bass = np.sign(np.sin(2 * np.pi * roots * t)) * 0.6
    pads = sum(np.sin(2 * np.pi * roots * r * 2 * t) for r in (1, 1.26, 1.5)) * (section % 2)
    hats = rng.standard_normal(t.size) * np.exp(-40 * (t % 0.25)) * (section >= 2)
    return np.clip(2.5 * (kick + bass + 0.5 * pads + hats), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("musicnn-cache")


@pytest.fixture(scope="module")
def backbone(cache_dir: Path) -> MusicnnBackbone:
    return MusicnnBackbone(cache_dir)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_contract(backbone: MusicnnBackbone) -> None:
    assert backbone.name == "musicnn" and backbone.sample_rate == 16000
    assert backbone.patch_seconds == 3.0 and backbone.dim == 753
    assert (
        backbone.model_id.startswith("musicnn-msd:") and len(backbone.model_id.split(":")[1]) == 12
    )


def test_features_shape_dtype_finite(backbone: MusicnnBackbone) -> None:
    audio = chord(7.0)
    for hop, n in ((3.0, 2), (1.0, 5)):
        f = backbone.features(audio, hop)
        assert f.shape == (backbone.n_patches(audio.size, hop), 753) == (n, 753)
        assert f.dtype == np.float32 and np.isfinite(f).all()


def test_deterministic(backbone: MusicnnBackbone) -> None:
    audio = noise(4.0)
    a = backbone.features(audio, 0.5)
    b = backbone.features(audio, 0.5)
    assert a.shape == (3, 753) and np.array_equal(a, b)
    # batching must not change a patch's features
    backbone_b1 = MusicnnBackbone(backbone.cache_dir, batch_size=1)
    np.testing.assert_allclose(backbone_b1.features(audio, 0.5), a, rtol=1e-4, atol=1e-4)


def test_short_audio_is_padded_to_one_patch(backbone: MusicnnBackbone) -> None:
    for n in (0, 100, 3 * SR - 1):
        f = backbone.features(tone(4.0)[:n], 1.0)
        assert f.shape == (1, 753) and np.isfinite(f).all()
    one = backbone.features(tone(1.0), 1.0)[0]
    padded = backbone.features(np.pad(tone(1.0), (0, 2 * SR)), 1.0)[0]
    np.testing.assert_allclose(one, padded, rtol=1e-5, atol=1e-5)


def test_different_sounds_differ(backbone: MusicnnBackbone) -> None:
    feats = {name: backbone.features(fn(3.0), 3.0)[0] for name, fn in
             [("tone", tone), ("noise", noise), ("chord", chord)]}  # fmt: skip
    names = list(feats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.allclose(feats[a], feats[b], rtol=1e-3, atol=1e-3), (a, b)
    # the same kind of sound is closer to itself than to another kind
    other_noise = backbone.features(noise(3.0, seed=9), 3.0)[0]
    assert cos(feats["noise"], other_noise) > cos(feats["noise"], feats["tone"])
    assert cos(feats["noise"], other_noise) > cos(feats["noise"], feats["chord"])


def test_loud_audio_does_not_collapse(backbone: MusicnnBackbone) -> None:
    """Regression for the package's float16 cast: loud audio gave one vector for every patch."""
    audio = loud_music(12.0)
    logmel = backbone.log_mel(audio)
    assert torch.isfinite(logmel).all()
    assert float(logmel.max()) > np.log10(65504 + 1)  # 10000*mel overflowed float16 here
    out = backbone.outputs(audio, 3.0)
    for layer in ("mean_pool", "penultimate"):
        f = getattr(out, layer).numpy()
        assert f.shape[0] == 4 and np.isfinite(f).all()
        # every patch keeps its own vector (the bug made them all identical)
        assert np.linalg.norm(f - f.mean(0), axis=1).min() > 1e-2, layer
    loud_tone = backbone.features(np.clip(4 * tone(3.0, amp=1.0), -1, 1), 3.0)[0]
    loud_noise = backbone.features(np.clip(noise(3.0, amp=1.0), -1, 1), 3.0)[0]
    assert not np.allclose(loud_tone, loud_noise, rtol=1e-2, atol=1e-2)


def test_fast_forward_matches_literal_graph(backbone: MusicnnBackbone) -> None:
    net = backbone.load()
    x = backbone.patches(loud_music(7.0), 2.0)
    with torch.inference_mode():
        fast, ref = net(x), net.forward_reference(x)
    for layer in ("mean_pool", "max_pool", "penultimate", "logits"):
        a, b = getattr(fast, layer), getattr(ref, layer)
        assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()) + 1e-5, layer


def test_layers_and_tags(backbone: MusicnnBackbone) -> None:
    audio = chord(6.0)
    pen = MusicnnBackbone(backbone.cache_dir, layer="penultimate")
    mx = MusicnnBackbone(backbone.cache_dir, layer="max_pool")
    assert pen.dim == 200 and pen.features(audio, 3.0).shape == (2, 200)
    assert mx.features(audio, 3.0).shape == (2, 753)
    ids = {backbone.model_id, pen.model_id, mx.model_id}
    assert len(ids) == 3  # same weights, different features: an index must not mix them
    tags = backbone.tags(audio)
    assert next(iter(tags)) in MSD_LABELS and set(tags) == set(MSD_LABELS)
    assert all(0.0 <= p <= 1.0 for p in tags.values())
    assert list(tags.values()) == sorted(tags.values(), reverse=True)
    with pytest.raises(ValueError):
        MusicnnBackbone(backbone.cache_dir, layer="cnn1")


def test_cache_reused_and_model_id_stable(
    backbone: MusicnnBackbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backbone.model_id
    assert backbone.cache_path.is_file() and backbone.sidecar_path.is_file()
    sidecar = backbone.sidecar_path.read_text().split()
    assert sidecar[1] == "musicnn-msd.pt" and len(sidecar[0]) == 64

    def no_convert(self: MusicnnBackbone) -> None:
        raise AssertionError("should have used the cache")

    monkeypatch.setattr(MusicnnBackbone, "_convert", no_convert)
    again = MusicnnBackbone(backbone.cache_dir)
    assert again.model_id == first


@pytest.mark.parametrize("damage", ["sidecar", "weights", "missing_sidecar"])
def test_bad_cache_is_reconverted(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = MusicnnBackbone(tmp_path)
    model_id = first.model_id
    good_sidecar = first.sidecar_path.read_text()
    if damage == "sidecar":
        first.sidecar_path.write_text("0" * 64 + "  musicnn-msd.pt\n")
    elif damage == "weights":
        with open(first.cache_path, "r+b") as f:
            f.seek(200)
            f.write(b"\xff" * 16)
    else:
        first.sidecar_path.unlink()
    with caplog.at_level(logging.WARNING, logger="engine.features.musicnn"):
        second = MusicnnBackbone(tmp_path)
        assert second.model_id == model_id  # content hash: stable across conversions
    assert "reconverting" in caplog.text
    assert second.sidecar_path.read_text() == good_sidecar
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_mtt_weights(tmp_path: Path) -> None:
    if find_checkpoint("MTT") is None:
        pytest.skip("no MTT checkpoint")
    mtt = MusicnnBackbone(tmp_path, dataset="MTT")
    assert mtt.model_id.startswith("musicnn-mtt:")
    assert mtt.cache_path.name == "musicnn-mtt.pt"
    assert "guitar" in mtt.tags(chord(3.0))


def test_no_package_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mn, "find_checkpoint", lambda dataset="MSD": None)
    bb = MusicnnBackbone(tmp_path / "empty")
    with pytest.raises(WeightsUnavailableError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        bb.features(tone(3.0), 3.0)


def test_cache_alone_is_enough(
    cache_dir: Path, backbone: MusicnnBackbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once converted, the musicnn package may be uninstalled."""
    model_id = backbone.model_id
    monkeypatch.setattr(mn, "find_checkpoint", lambda dataset="MSD": None)
    assert MusicnnBackbone(cache_dir).model_id == model_id


def test_mtt_beside_msd_reads_the_same_patches(backbone: MusicnnBackbone, cache_dir: Path) -> None:
    """Issue 29: one log-mel, both models; MSD's outputs unchanged, MTT's appended; the id names both."""
    if find_checkpoint("MTT") is None:
        pytest.skip("no MTT checkpoint")
    both = MusicnnBackbone(cache_dir, companions=("mtt", "MSD"))  # its own dataset is not a companion
    assert [c.dataset for c in both.companions] == ["MTT"]
    assert both.descriptor_blocks == (("mean_pool", 753), ("penultimate", 200), ("mtt_mean_pool", 753),
                                      ("mtt_penultimate", 200))
    audio = loud_music(9.0)
    alone, pair = backbone.analyse(audio, 3.0), both.analyse(audio, 3.0)
    assert pair.descriptors.shape == (alone.descriptors.shape[0], 1906)
    np.testing.assert_allclose(pair.descriptors[:, :953], alone.descriptors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pair.features, alone.features, rtol=1e-5, atol=1e-6)  # the head's input: MSD's
    mtt = MusicnnBackbone(cache_dir, dataset="MTT").outputs(audio, 3.0)
    np.testing.assert_allclose(pair.descriptors[:, 953:1706], mtt.mean_pool.numpy(), rtol=1e-5, atol=1e-6)
    assert both.model_id.startswith(backbone.model_id + "+mtt:") and both.model_id != backbone.model_id


def test_at_a_dense_hop_the_companion_reads_non_overlapping_patches(backbone: MusicnnBackbone, cache_dir: Path) -> None:
    """The query's 1.5-s hop: MTT runs on every 2nd patch (its statistics' grid), rows repeated to align."""
    if find_checkpoint("MTT") is None:
        pytest.skip("no MTT checkpoint")
    both = MusicnnBackbone(cache_dir, companions=("MTT",))
    audio = loud_music(10.5)
    pair = both.analyse(audio, 1.5)
    n = backbone.n_patches(len(audio), 1.5)
    assert pair.descriptors.shape == (n, 1906)
    mtt = MusicnnBackbone(cache_dir, dataset="MTT").outputs(audio, 3.0).mean_pool.numpy()
    want = np.repeat(mtt, 2, axis=0)[:n]
    np.testing.assert_allclose(pair.descriptors[:, 953:1706], want, rtol=1e-4, atol=1e-5)
