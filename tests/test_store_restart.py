"""A Milvus server restart keeps the index usable (own module: one server at a time).

Milvus 2.3 forgets collection *properties* across a restart; the store also writes the
model id into the schema description, which survives.  The store suite's server is
module-scoped, so it is stopped before this module starts its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import VectorStore
from tests import milvus_server
from tests.test_store import DIM, fill


def test_model_id_survives_a_server_restart(tmp_path: Path) -> None:
    try:
        srv = milvus_server.start(tmp_path / "srv")
    except milvus_server.MilvusServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        store = VectorStore(srv.uri, "model-r", DIM)
        store.ensure_collections()
        fill(store, 3)
        store.close()
        srv.stop()
        srv = milvus_server.start(tmp_path / "srv")
        again = VectorStore(srv.uri, "model-r", DIM)
        again.check_ready()
        assert again.count_tracks() == 3
        again.close()
    finally:
        srv.stop()
