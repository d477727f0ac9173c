"""A Milvus server restart keeps the index usable (own module: one server at a time).

Milvus 2.3 forgets collection *properties* across a restart; the store also writes the
model id into the schema description, which survives.  While the server is down, every
store call fails with the one typed error (StoreUnavailableError: HTTP 503, the bot's
sentence, CLI exit 1), and the same open store answers again once the server is back.
The store suite's server is module-scoped, so it is stopped before this module starts its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import StoreUnavailableError
from engine.store import VectorStore
from tests import milvus_server
from tests.test_store import DIM, fill


def test_server_stopped_mid_run_gives_the_typed_error_and_recovers(tmp_path: Path) -> None:
    try:
        srv = milvus_server.start(tmp_path / "srv")
    except milvus_server.MilvusServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        store = VectorStore(srv.uri, "model-r", DIM, timeout_s=5.0)
        store.ensure_collections()
        vectors = fill(store, 3)
        probe = np.stack([vectors[1001]])
        assert store.search_tracks(probe, 1)[0][0].track_key == 1001
        srv.stop()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError) as err:
            store.search_tracks(probe, 1)
        assert time.monotonic() - t0 < 30  # bounded by the store's timeout, not pymilvus' retries
        assert err.value.user_message.startswith("The music index isn't available right now")
        srv = milvus_server.start(tmp_path / "srv")
        # the same open store (a running engine) answers again: no restart of ours needed
        deadline = time.monotonic() + 60
        while True:
            try:
                assert store.search_tracks(probe, 1)[0][0].track_key == 1001
                break
            except StoreUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        store.close()
        again = VectorStore(srv.uri, "model-r", DIM)  # the model id survived the restart
        again.check_ready()
        assert again.count_tracks() == 3
        again.close()
    finally:
        srv.stop()
