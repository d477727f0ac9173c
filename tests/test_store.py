"""Milvus round trips: create, upsert, search, reopen, lock, model check.

One suite, two backends (the ``backend`` fixture's params): the real milvus-lite
file, and a real Milvus standalone server (tests/milvus_server.py, the ``milvus``
wheel in its own venv; skipped with the reason when that is not installed).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.embed import l2n
from engine.errors import EmptyIndexError, IndexModelMismatchError, StoreError, StoreLockedError
from engine.store import VectorStore
from tests import milvus_server

DIM = 16


def vectors(n: int, seed: int) -> np.ndarray:
    return l2n(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


_prefixes = itertools.count()


@pytest.fixture(scope="module")
def server():
    """One Milvus standalone for the session (each test uses its own collection prefix)."""
    try:
        srv = milvus_server.start()
    except milvus_server.MilvusServerUnavailable as exc:
        pytest.skip(str(exc))
    yield srv
    srv.stop()


@pytest.fixture(params=["lite", "server"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict]:
    """(uri, VectorStore kwargs) for milvus-lite or the server."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db"), {}
    srv = request.getfixturevalue("server")
    return srv.uri, {"prefix": f"t{os.getpid()}_{next(_prefixes)}"}


@pytest.fixture()
def open_store(backend: tuple[str, dict]):
    """open_store(model_id) -> VectorStore on this test's backend; closed at the end."""
    uri, kw = backend
    opened: list[VectorStore] = []

    def make(model_id: str = "model-a", **extra) -> VectorStore:
        s = VectorStore(uri, model_id, DIM, **kw, **extra)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def fill(store: VectorStore, n_tracks: int = 20) -> dict[int, np.ndarray]:
    tv = vectors(n_tracks, 1)
    items = []
    for i in range(n_tracks):
        segs = l2n(tv[i] + 0.05 * vectors(4, 100 + i))
        items.append((1000 + i, tv[i], segs, np.arange(4, dtype=np.float32) * 3))
    store.upsert_tracks(items)
    store.flush()
    return {1000 + i: tv[i] for i in range(n_tracks)}


def test_roundtrip_search_and_exclude(open_store) -> None:
    store = open_store()
    store.ensure_collections()
    tv = fill(store)
    assert store.count_tracks() == 20 and store.count_segments() == 80
    res = store.search_tracks(np.stack([tv[1003], tv[1007]]), k=3)
    assert [r[0].track_key for r in res] == [1003, 1007]
    assert res[0][0].similarity == pytest.approx(1.0, abs=1e-4)
    res = store.search_tracks(tv[1003], k=3, exclude=[1003])
    assert 1003 not in [h.track_key for h in res[0]]
    seg = store.search_segments(tv[1005], k=4)[0]
    assert {h.track_key for h in seg} == {1005}
    np.testing.assert_allclose(store.track_vectors([1004])[1004], tv[1004], atol=1e-6)
    store.close()


def test_upsert_replaces_segments_and_delete(open_store) -> None:
    store = open_store()
    store.ensure_collections()
    tv = fill(store)
    fill(store)  # the same tracks again: nothing duplicated
    assert store.count_tracks() == 20 and store.count_segments() == 80
    store.delete_tracks([1000, 1001])
    store.flush()
    assert store.count_tracks() == 18 and store.count_segments() == 72
    assert 1000 not in [h.track_key for h in store.search_tracks(tv[1000], k=5)[0]]
    store.close()


def test_reopen_keeps_data_and_checks_model(open_store) -> None:
    store = open_store()
    store.ensure_collections()
    fill(store)
    store.close()
    again = open_store()
    again.check_ready()
    assert again.count_tracks() == 20
    again.close()
    other = open_store("model-b")
    with pytest.raises(IndexModelMismatchError) as info:
        other.check_ready()
    assert "rebuilt" in info.value.user_message
    other.ensure_collections(recreate_on_mismatch=True)
    assert other.count_tracks() == 0
    other.close()


def test_empty_database_is_reported(open_store) -> None:
    store = open_store()
    with pytest.raises(EmptyIndexError):
        store.check_ready()
    store.close()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    """milvus-lite only: a server has no file lock."""
    uri = str(tmp_path / "milvus.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pymilvus import MilvusClient
            c = MilvusClient({uri!r})
            print("ready", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            VectorStore(uri, "model-a", DIM)
        assert "another process" in info.value.user_message
    finally:
        holder.kill()
        holder.wait()


def test_unreachable_server() -> None:
    with pytest.raises(StoreError):
        VectorStore("http://127.0.0.1:9", "model-a", DIM, timeout_s=2)


def test_all_track_keys(open_store) -> None:
    store = open_store()
    store.ensure_collections()
    keys = fill(store, 30)
    assert sorted(store.all_track_keys()) == sorted(keys)



def test_the_landmark_collection_where_the_backend_has_sparse_vectors(open_store, backend) -> None:
    """milvus-lite holds the landmark index; the Milvus 2.3.5 server helper has no sparse vectors and says so."""
    from engine.errors import StoreError
    from engine.fingerprint.milvus_index import MilvusFingerprintIndex
    from tests.audiogen import synthetic_track

    store = open_store()
    prefix = store.tracks_name.removesuffix("_tracks")
    if backend[0].startswith("http"):
        with pytest.raises(StoreError, match="no sparse vectors"):
            MilvusFingerprintIndex(store, prefix=prefix)
        return
    idx = MilvusFingerprintIndex(store, prefix=prefix)
    song = synthetic_track(seed=3, seconds=20.0, sr=16000)
    idx.add_track(7, song, 16000)
    idx.write_snapshot()
    assert idx.match(song[5 * 16000: 13 * 16000], 16000)[0].track_key == 7
