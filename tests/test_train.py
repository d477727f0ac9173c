"""index_builder.train and index_builder.training on a tiny synthetic catalogue, with a small fast backbone.

The real backbones (musicnn) cost seconds per minute of audio; the training logic
(views, cache, loss, checkpoint) does not depend on which backbone it is, so a
log-mel-statistics backbone keeps this file well under a minute.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from engine.features.base import Backbone
from engine.features.melspec import MelSpectrogram
from engine.head import EmbeddingHead, load_head
from index_builder import train as T
from index_builder.training.cache import FeatureCache, ViewConfig, collect_features
from index_builder.training.data import CatalogueItem, labels_of
from index_builder.training.loop import TrainConfig, retrieval_accuracy, train_head
from tests import audiogen

SR = 16000


class StatsBackbone(Backbone):
    """Per 3-s patch: mean and std of a 48-band log-mel spectrogram (96-d)."""

    name = "stats"
    sample_rate = SR
    patch_seconds = 3.0
    dim = 96

    def __init__(self) -> None:
        self._mel = MelSpectrogram(SR, 512, 256, 48)

    @property
    def model_id(self) -> str:
        return "stats:test"

    def features(self, audio: np.ndarray, hop_seconds: float) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        patch = int(self.patch_seconds * SR)
        if len(audio) < patch:
            audio = np.pad(audio, (0, patch - len(audio)))
        lm = np.log10(1e4 * self._mel(audio).numpy() + 1.0)  # (frames, 48)
        n = self.n_patches(len(audio), hop_seconds)
        out = []
        for i in range(n):
            a = int(i * hop_seconds * SR / 256)
            p = lm[a:a + patch // 256]
            out.append(np.concatenate([p.mean(0), p.std(0)]))
        return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> list[CatalogueItem]:
    d = tmp_path_factory.mktemp("cat")
    items = []
    for i in range(8):
        p = audiogen.encode(audiogen.synthetic_track(100 + i, 21.0, sr=SR), d / f"t{i}.wav", sr=SR)
        items.append(CatalogueItem(f"t{i}", p, f"artist{i % 2}", (f"g{i % 2}",)))
    return items


@pytest.fixture(scope="module")
def features(catalogue, tmp_path_factory):
    from engine.settings import Settings

    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data)
    cache = FeatureCache(data, StatsBackbone(), settings)
    vcfg = ViewConfig(excerpts=2, excerpt_patches=3, opus=False, seed=0)
    sigs, clean, views, failed = collect_features(catalogue, cache, vcfg, progress=False)
    return cache, vcfg, sigs, clean, views, failed


def test_features_cached_and_reused(features, catalogue, monkeypatch):
    cache, vcfg, sigs, clean, views, failed = features
    assert not failed and all(len(c) == 6 for c in clean)  # 2 excerpts x 3 patches
    assert all(v is not None and len(v["feats"]) >= 4 for v in views)
    assert all(0 <= g < 6 for v in views for g in v["grid"])
    assert len(list(cache.dir.glob("*.views-*.npz"))) == 8

    def boom(*a, **k):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(cache, "decode", boom)
    sigs2, _, views2, _ = collect_features(catalogue, cache, vcfg, progress=False)
    assert sigs2 == sigs
    np.testing.assert_array_equal(views2[3]["feats"], views[3]["feats"])


def test_training_learns_and_is_deterministic(features):
    _, _, _, clean, views, _ = features
    cfg = TrainConfig(epochs=8, batch_tracks=8, seed=1)
    r1 = train_head(clean, views, cfg, out_dim=32, progress=False)
    r2 = train_head(clean, views, cfg, out_dim=32, progress=False)
    assert r1.history[-1] < r1.history[0]
    assert r1.head.weights_sha256() == r2.head.weights_sha256()

    # the trained head brings degraded views closer to their own clean patch
    untrained = EmbeddingHead(r1.head.in_dim, 32, seed=1)
    untrained.fit_normalisation(np.concatenate(clean))

    def margin(head):
        own, other = [], []
        cat = [head.embed(c) for c in clean]
        for t, v in enumerate(views):
            q = head.embed(v["feats"])
            own.extend(np.sum(q * cat[t][v["grid"]], axis=1))
            rest = np.concatenate([c for j, c in enumerate(cat) if j != t])
            other.extend((q @ rest.T).max(axis=1))
        return float(np.mean(own) - np.mean(other))

    assert margin(r1.head) > margin(untrained)
    after = retrieval_accuracy(r1.head, clean, views)
    before = retrieval_accuracy(untrained, clean, views)
    assert after["track_top1"] >= before["track_top1"]


def test_supervised_term_runs(features):
    _, _, _, clean, views, _ = features
    labels = np.array([0, 1] * 4)
    r = train_head(clean, views, TrainConfig(epochs=2, supervised="artist", seed=0), labels=labels,
                     out_dim=32, progress=False)
    assert "supcon" in r.meta["objective"]


def test_labels_of_items():
    items = [CatalogueItem("a", None, "x", ("rock",)), CatalogueItem("b", None, "", ()),
             CatalogueItem("c", None, "w", ("pop", "rock"))]
    assert labels_of(items, "none") is None
    assert list(labels_of(items, "artist")) == [1, -1, 0]
    assert list(labels_of(items, "genre")) == [1, -1, 0]


def test_main_writes_checkpoint_with_metadata(catalogue, tmp_path, monkeypatch):
    import engine.features

    monkeypatch.setattr(engine.features, "make_backbone", lambda settings, name=None: StatsBackbone())
    audio = catalogue[0].path.parent
    out = tmp_path / "head.pt"
    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path / "d"), "--audio", str(audio), "--epochs", "3",
                              "--out", str(out), "--no-opus", "--excerpts", "2", "--no-progress"])
    assert T.main(args) == 0
    loaded = load_head(out, 96, 256, "stats:test")
    m = loaded.meta
    assert loaded.trained and m["backbone"] == "stats:test" and m["epochs"] == 3
    assert m["in_dim"] == 96 and m["out_dim"] == 256 and m["train_data_hash"] and m["created"]
    assert m["loss"] is not None and m["n_tracks"] == 8
    assert (tmp_path / "d" / "feature_cache" / "stats-test").is_dir()
