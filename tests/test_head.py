"""The embedding head: a sane untrained default, checkpoints with metadata, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.head import EmbeddingHead, default_head, load_head, save_head


def test_default_head_is_deterministic_and_normalised() -> None:
    a, b = default_head(64, 32, "bb:1"), default_head(64, 32, "bb:1")
    assert a.sha == b.sha and not a.trained
    x = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    y = a.head.embed(x)
    assert y.shape == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y, b.head.embed(x), atol=1e-6)


def test_default_head_keeps_neighbourhoods() -> None:
    """Untrained = orthogonal projection: the nearest neighbour of each point survives."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 128)).astype(np.float32)
    x = np.concatenate([centres, centres + 0.1 * rng.standard_normal(centres.shape).astype(np.float32)])
    y = default_head(128, 64, "bb").head.embed(x)
    sims = y[20:] @ y[:20].T
    assert (sims.argmax(1) == np.arange(20)).all()


def test_save_load_roundtrip_with_metadata(tmp_path: Path) -> None:
    head = EmbeddingHead(32, 16)
    with torch.no_grad():
        head.mlp[-1].weight.normal_()
    head.fit_normalisation(np.random.default_rng(0).standard_normal((50, 32)) * 3 + 1)
    path = tmp_path / "head.pt"
    save_head(path, head, {"backbone": "bb:1", "trained": True, "train_data_hash": "abc", "epochs": 3})
    loaded = load_head(path, 32, 16, "bb:1")
    assert loaded.trained and loaded.meta["train_data_hash"] == "abc" and loaded.meta["created"]
    assert loaded.sha == head.weights_sha256()[:12] != default_head(32, 16, "bb:1").sha
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_file_gives_default_and_bad_ones_are_refused(tmp_path: Path) -> None:
    assert not load_head(tmp_path / "none.pt", 8, 4, "bb").trained
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_head(bad, 8, 4, "bb")
    good = tmp_path / "good.pt"
    save_head(good, EmbeddingHead(8, 4), {"backbone": "other:1", "trained": True})
    with pytest.raises(ModelError, match="retrain"):
        load_head(good, 8, 4, "bb")
