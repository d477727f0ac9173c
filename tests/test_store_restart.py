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


def _server_or_skip(tmp_path: Path) -> milvus_server.MilvusServerProcess:
    """A Milvus standalone for this test, or a skip saying why there is none."""
    try:
        return milvus_server.start(tmp_path / "srv")
    except milvus_server.MilvusServerUnavailable as exc:
        pytest.skip(str(exc))


def _store_with_tracks(srv: milvus_server.MilvusServerProcess, model_id: str, timeout_s: float
                       ) -> tuple[VectorStore, np.ndarray]:
    """A store on ``srv`` holding 3 tracks, and a probe whose nearest track is 1001 (checked)."""
    store = VectorStore(srv.uri, model_id, DIM, timeout_s=timeout_s)
    store.ensure_collections()
    probe = np.stack([fill(store, 3)[1001]])
    assert store.search_tracks(probe, 1)[0][0].track_key == 1001
    return store, probe


def test_server_stopped_mid_run_gives_the_typed_error_and_recovers(tmp_path: Path) -> None:
    srv = _server_or_skip(tmp_path)
    try:
        store, probe = _store_with_tracks(srv, "model-r", 5.0)
        srv.stop()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError) as err:
            store.search_tracks(probe, 1)
        assert time.monotonic() - t0 < 30  # bounded by the store's timeout, not pymilvus' retries
        assert err.value.user_message.startswith("The music index isn't available right now")
        srv = milvus_server.start(tmp_path / "srv")
        if srv.uri != store.uri:  # its old port was still taken (a server of an earlier test): not a comeback
            pytest.skip(f"the restarted server listens on {srv.uri}, not {store.uri}")
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


def test_a_hung_store_fails_fast_logs_once_per_state_change_and_recovers(tmp_path: Path, caplog) -> None:
    """Issue 30: while Milvus hangs (SIGSTOP) only the first call waits out the client timeout."""
    import logging
    import os
    import signal

    srv = _server_or_skip(tmp_path)
    try:
        store, probe = _store_with_tracks(srv, "model-h", 3.0)
        caplog.set_level(logging.INFO, logger="engine.store")
        caplog.clear()
        os.kill(srv.milvus_pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailableError):
                store.search_tracks(probe, 1)  # the one call that waits (3 s here, 30 s by default)
            for _ in range(5):
                t0 = time.monotonic()
                with pytest.raises(StoreUnavailableError):
                    store.search_tracks(probe, 1)
                assert time.monotonic() - t0 < 1.0  # open: at once
        finally:
            os.kill(srv.milvus_pid, signal.SIGCONT)
        t_back = time.monotonic()
        while True:
            try:
                assert store.search_tracks(probe, 1)[0][0].track_key == 1001
                break
            except StoreUnavailableError:
                assert time.monotonic() - t_back < 10.0, "not answering 10 s after the store resumed"
                time.sleep(0.5)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "engine.store"]
        assert [r.getMessage().split(" ", 4)[3] for r in warnings] == ["is", "answers"], \
            [r.getMessage() for r in warnings]  # "... is not answering ...", "... answers again"
        store.close()
    finally:
        srv.stop()


def test_the_breaker_opens_on_an_outage_probes_once_and_closes() -> None:
    from engine.store import StoreBreaker

    now = [100.0]
    b = StoreBreaker("http://m:19530", reset_s=5.0, clock=lambda: now[0])
    assert b.admit() is False and not b.is_open
    b.failure(StoreUnavailableError("down"))
    with pytest.raises(StoreUnavailableError, match="circuit open"):
        b.admit()
    now[0] += 5.0
    assert b.admit() is True  # the one probe
    with pytest.raises(StoreUnavailableError):
        b.admit()  # while it probes, the others still fail at once
    b.failure(StoreUnavailableError("still down"))
    now[0] += 4.9
    with pytest.raises(StoreUnavailableError):
        b.admit()
    now[0] += 0.1
    assert b.admit() is True
    b.success()
    assert b.state == "closed" and b.admit() is False


def test_a_probe_answered_with_a_missing_collection_closes_the_breaker() -> None:
    """Review fix: a server back without the collection answered; the breaker must not stay open for good."""
    import threading

    from engine.errors import BusyError, EmptyIndexError
    from engine.store import StoreBreaker, milvus_call

    class Fake:
        uri, timeout_s = "http://m:19530", 0.2

        def __init__(self) -> None:
            self._lock = threading.RLock()
            self.breaker = StoreBreaker(self.uri, reset_s=0.0)
            self.mode = "down"

        def _probe(self) -> None:
            if self.mode == "empty":
                raise EmptyIndexError("gone")

        @milvus_call
        def call(self) -> str:
            if self.mode == "down":
                raise StoreUnavailableError("down")
            return "ok"

    f = Fake()
    with pytest.raises(StoreUnavailableError):
        f.call()
    assert f.breaker.state == "open"
    f.mode = "empty"
    with pytest.raises(EmptyIndexError):
        f.call()  # the probe's answer goes to the caller ...
    assert f.breaker.state == "closed"  # ... and the server answered: closed
    f.mode = "ok"
    assert f.call() == "ok"
    # a client lock held elsewhere is busy, not an outage: the breaker stays closed
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with f._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(BusyError):
            f.call()
        assert f.breaker.state == "closed"
    finally:
        release.set()
        t.join()
