"""VectorStore.tune_index: the auto index follows the collection's size (milvus-lite)."""

from __future__ import annotations

import numpy as np

from engine.store import VectorStore


def _items(n: int, dim: int, rng: np.random.Generator) -> list:
    return [(k, rng.normal(size=dim).astype(np.float32), rng.normal(size=(2, dim)).astype(np.float32),
             np.array([0.0, 3.0], np.float32)) for k in range(1, n + 1)]


def test_lite_moves_from_flat_to_ivf_when_the_catalogue_grows(tmp_path) -> None:
    rng = np.random.default_rng(0)
    store = VectorStore(str(tmp_path / "m.db"), "model-a", 8)
    store.LITE_IVF_FROM_ROWS = 300  # the product uses 50,000; the rule is the same
    store.ensure_collections()
    store.upsert_tracks(_items(100, 8, rng))
    store.flush()
    assert store.tune_index() == []  # small: FLAT stays
    assert store._client.describe_index(store.tracks_name, "vector")["index_type"] == "FLAT"

    store.upsert_tracks(_items(400, 8, rng))
    store.flush()
    changes = store.tune_index()
    assert len(changes) == 2 and all("FLAT -> IVF_FLAT" in c for c in changes)
    for name in (store.tracks_name, store.segments_name):
        assert store._client.describe_index(name, "vector")["index_type"] == "IVF_FLAT"
    assert store.tune_index() == []  # idempotent
    # still searchable, and a stored vector finds itself
    vecs = store.track_vectors([7])
    hits = store.search_tracks(vecs[7][None, :], 3)[0]
    assert hits[0].track_key == 7
    store.close()


def test_an_explicit_index_type_is_never_changed(tmp_path) -> None:
    rng = np.random.default_rng(1)
    store = VectorStore(str(tmp_path / "m.db"), "model-a", 8, index_type="FLAT")
    store.LITE_IVF_FROM_ROWS = 10
    store.ensure_collections()
    store.upsert_tracks(_items(50, 8, rng))
    store.flush()
    assert store.tune_index() == []
    store.close()
