"""The per-track descriptors kept for refitting the similarity model (engine.descriptors)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.descriptors import SAMPLE_SEGMENTS, DescriptorStore, backbone_key, summarise
from index_builder.worker import middle


def test_summarise_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(100, 12)).astype(np.float32)
    d = summarise(7, f, np.arange(3, dtype=np.float32), 120.5, "A minor", np.ones(4, np.float32))
    assert d.sample.shape == (SAMPLE_SEGMENTS, 12) and d.n_segments == 100
    np.testing.assert_allclose(d.mean, f.mean(0), rtol=1e-5)
    np.testing.assert_allclose(d.std, f.std(0), rtol=1e-5)
    lean = summarise(8, f, sample_segments=0)
    assert lean.sample.shape == (0, 12) and lean.tags is None and lean.head_vector is None
    store = DescriptorStore(tmp_path / "d.sqlite")
    store.put_many("bb:1", [d, lean])
    got = {x.track_key: x for x in store.iter("bb:1")}
    np.testing.assert_allclose(got[7].sample, f[np.unique(np.linspace(0, 99, SAMPLE_SEGMENTS).round().astype(int))],
                               atol=1e-2)  # float16 on disk
    assert got[7].bpm == 120.5 and got[7].key == "A minor" and got[8].sample.shape == (0, 12)
    assert store.traits("bb:1", [7, 9]).keys() == {7}
    assert store.keys("other:1") == set()
    store.delete([7])
    assert store.keys("bb:1") == {8}
    store.close()
    with pytest.raises(ValueError):
        summarise(1, np.zeros((0, 12), np.float32))


def test_backbone_key_and_middle():
    assert backbone_key("musicnn-msd:abc+head:x+fp1+t3") == "musicnn-msd:abc"
    x = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(middle(x, 10, 2.0), np.arange(40, 60))
    assert len(middle(x, 10, 20.0)) == 100
