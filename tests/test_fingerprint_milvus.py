"""The landmark index in Milvus (sparse vectors per window + offset verification), on milvus-lite.

The matching behaviour is tested on both backends by tests/test_fingerprint.py; this
module tests what is Milvus's own: the window rows, replacing and removing a track, a
collection of another landmark layout, and the factory that picks the backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import StoreError
from engine.fingerprint.backends import open_fingerprints
from engine.fingerprint.index import StaleIndexError
from engine.fingerprint.milvus_index import (TIME_BITS, WINDOW_FRAMES, MilvusFingerprintIndex, rows_to_landmarks,
                                             window_rows)
from engine.settings import Settings
from engine.store import VectorStore
from tests.audiogen import synthetic_track

SR = 16000


def test_window_rows_round_trip_every_landmark() -> None:
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**21, 3000).astype(np.uint32)
    t = rng.integers(0, 5 * WINDOW_FRAMES, 3000).astype(np.int32)
    rows = window_rows(7, h, t)
    assert [r["start"] for r in rows] == [w * WINDOW_FRAMES for w in range(5)]
    assert all(set(r["hashes"]) == {int(x) >> TIME_BITS for x in r["landmarks"]} for r in rows)
    rh, rk, rt = rows_to_landmarks(rows)
    got = sorted(zip(rh.tolist(), rt.tolist()))
    assert got == sorted(set(zip(h.astype(np.int64).tolist(), t.astype(np.int64).tolist())))
    assert set(rk.tolist()) == {7}
    assert [len(a) for a in rows_to_landmarks([])] == [0, 0, 0]


@pytest.fixture()
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(str(tmp_path / "milvus.db"), "fp-test", 8)
    yield s
    s.close()


def test_replace_and_remove_a_track(store: VectorStore) -> None:
    a, b, c = (synthetic_track(seed=s, seconds=20.0, sr=SR) for s in (11, 12, 13))
    idx = MilvusFingerprintIndex(store)
    idx.add_track(1, a, SR)
    idx.add_track(2, b, SR)
    idx.write_snapshot()
    assert idx.track_keys() == {1, 2} and idx.stats()["n_tracks"] == 2
    assert idx.match(a[4 * SR: 12 * SR], SR)[0].track_key == 1
    idx.add_track(1, c, SR)  # other audio under the same key: the old windows are gone
    res = idx.match(a[4 * SR: 12 * SR], SR)
    assert not res or res[0].track_key != 1 or res[0].confidence < 0.5
    assert idx.match(c[4 * SR: 12 * SR], SR)[0].track_key == 1
    assert idx.remove_track(2) is True and idx.remove_track(2) is False
    assert idx.track_keys() == {1}
    ro = MilvusFingerprintIndex(store, read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        ro.add_track(3, a, SR)


def test_a_collection_of_another_layout_is_refused_and_the_builder_resets_it(store: VectorStore) -> None:
    import json

    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=True, description=json.dumps({"synesthete.landmarks": {"x": 1}}))
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    params = store._client.prepare_index_params()
    params.add_index("v", index_type="FLAT", metric_type="L2")
    store._client.create_collection("synesthete_landmarks", schema=schema, index_params=params)
    store._client.alter_collection_properties("synesthete_landmarks",
                                              properties={"synesthete.landmarks": json.dumps({"x": 1})})
    with pytest.raises(StaleIndexError, match="Rebuild it"):
        MilvusFingerprintIndex(store, read_only=True)
    idx = MilvusFingerprintIndex(store, reset_if_stale=True)
    assert idx.track_keys() == set()


def test_the_factory_picks_the_backend(tmp_path: Path, store: VectorStore) -> None:
    sql = Settings(data_dir=tmp_path)
    assert open_fingerprints(sql, store, read_only=True) is None  # nothing built yet
    assert type(open_fingerprints(sql, store, read_only=False)).__name__ == "FingerprintIndex"
    mil = Settings(data_dir=tmp_path, fingerprint_backend="milvus")
    assert open_fingerprints(mil, store, read_only=True) is None
    assert isinstance(open_fingerprints(mil, store, read_only=False), MilvusFingerprintIndex)
    assert isinstance(open_fingerprints(mil, store, read_only=True), MilvusFingerprintIndex)
