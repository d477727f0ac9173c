"""The build's similarity step (index_builder.similarity_fit) on a real milvus-lite store."""

from __future__ import annotations

import numpy as np
import pytest

from engine.catalogue import CatalogueDB, Track
from engine.descriptors import DescriptorStore, summarise
from engine.settings import Settings
from engine.similarity import TrackEncoder
from index_builder.similarity_fit import MODEL_META, refit_similarity

BLOCKS = (("a", 12), ("b", 4))
DIM = 8


@pytest.fixture
def world(tmp_path):
    from engine.store import VectorStore

    settings = Settings(data_dir=tmp_path)
    cat = CatalogueDB(settings.catalogue_db_path)
    store = VectorStore(str(tmp_path / "milvus.db"), "test-backbone:1+head:x", DIM)
    store.ensure_collections()
    desc = DescriptorStore(settings.descriptors_db_path)
    yield settings, cat, store, desc
    store.close()
    cat.close()
    desc.close()


def _add(cat, store, desc, n, rng, uniform=False, sig="sig"):
    tracks = [Track(f"t{i:03d}", f"Song {i}", f"Artist {i % 4}", ["Rock" if i % 2 else "Jazz"], 10 + i)
              for i in range(n)]
    cat.upsert_tracks(tracks)
    items = []
    for t in tracks:
        feats = np.ones((6, 16), np.float32) if uniform else rng.normal(size=(6, 16)).astype(np.float32)
        head = rng.normal(size=DIM).astype(np.float32)
        head /= np.linalg.norm(head)
        d = summarise(t.track_key, feats, rng.uniform(size=3), 120.0, "A minor", head)
        items.append(d)
        store.upsert_tracks([(t.track_key, head, head[None, :], np.zeros(1, np.float32))])
        cat.mark_indexed(t.track_key, sig, "m", 1)
    desc.put_many("test-backbone:1", items)
    store.flush()
    return tracks, items


def test_fits_writes_vectors_and_filter_fields_then_is_unchanged(world):
    settings, cat, store, desc = world
    tracks, items = _add(cat, store, desc, 24, np.random.default_rng(0))
    res = refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS, ("instrumental", "x", "y"))
    assert res.status == "fitted" and res.n_tracks == 24
    enc = TrackEncoder.load(settings.similarity_model_path)
    assert cat.get_meta(MODEL_META) == enc.sha and len(enc.meta["match_scale"]) == 1001
    key = tracks[3].track_key
    want = enc.vectors_from_stats(items[3].mean[None], items[3].std[None])[0]
    np.testing.assert_allclose(store.track_vectors([key])[key], want, atol=1e-5)
    from engine.filters import make_filter

    hits = store.search_tracks(want[None], 5, expr=make_filter("rock", "100-").to_expr())[0]
    assert len(hits) == 5 and all(int(h.track_key) in {t.track_key for t in tracks if "Rock" in t.genres}
                                  for h in hits)
    again = refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS, ())
    assert again.status == "unchanged"


def test_too_uniform_falls_back_to_the_head_vectors_and_says_so(world):
    settings, cat, store, desc = world
    tracks, items = _add(cat, store, desc, 24, np.random.default_rng(1))
    assert refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS).status == "fitted"
    # every track replaced by identical audio: nothing to tell them apart by
    _add(cat, store, desc, 24, np.random.default_rng(2), uniform=True, sig="new audio")
    res = refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS)
    assert res.status == "too_uniform" and "sound the same" in res.detail["reason"]
    assert not settings.similarity_model_path.exists() and not cat.get_meta(MODEL_META)
    d = next(desc.iter("test-backbone:1", [tracks[0].track_key]))
    np.testing.assert_allclose(store.track_vectors([tracks[0].track_key])[tracks[0].track_key], d.head_vector,
                               atol=1e-6)


def test_a_corrupt_model_file_is_refitted_by_the_next_build(world):
    settings, cat, store, desc = world
    _add(cat, store, desc, 24, np.random.default_rng(3))
    refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS)
    settings.similarity_model_path.write_bytes(b"garbage")
    assert refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS).status == "fitted"
    TrackEncoder.load(settings.similarity_model_path)


def test_the_service_refuses_a_model_that_is_not_the_indexs(world):
    from engine.errors import ModelError
    from engine.service import load_similarity

    settings, cat, store, desc = world
    _add(cat, store, desc, 24, np.random.default_rng(4))
    refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS)
    assert load_similarity(settings, cat) is not None
    settings.similarity_model_path.write_bytes(b"garbage")
    with pytest.raises(ModelError, match="synesthete-index build"):
        load_similarity(settings, cat)
    cat.set_meta(MODEL_META, "")
    assert load_similarity(settings, cat) is None  # no model named: the head's vectors answer


def test_the_fit_writes_mutual_proximity_statistics_and_an_unchanged_model_gets_them_back(world):
    """Mutual proximity (engine.hubness) needs the stored vectors' mean and second moment: written with
    every fit, and fitted from the store for an index built before they existed (no rebuild)."""
    from engine.hubness import MutualProximity

    settings, cat, store, desc = world
    tracks, _ = _add(cat, store, desc, 24, np.random.default_rng(5))
    assert refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS).status == "fitted"
    enc = TrackEncoder.load(settings.similarity_model_path)
    vecs = store.track_vectors([t.track_key for t in tracks])
    x = np.stack(list(vecs.values())).astype(np.float64)
    mp = MutualProximity.load(settings.hubness_path)
    assert mp.model_sha == enc.sha and mp.n == 24
    np.testing.assert_allclose(mp.second, x.T @ x / len(x), atol=1e-5)
    settings.hubness_path.unlink()
    assert refit_similarity(settings, store, cat, desc, "test-backbone:1", BLOCKS).status == "unchanged"
    again = MutualProximity.load(settings.hubness_path)
    assert again.model_sha == enc.sha and np.allclose(again.mean, x.mean(0), atol=1e-5)
