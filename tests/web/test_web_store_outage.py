"""/healthz sees the store (issue 30): a real Milvus server, hung (SIGSTOP) and killed, then back.

The engine, the index builder and the web app are the real ones; the catalogue is the web
tests' small log-mel one, built into a Milvus standalone started for this module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.service import HEALTH_TIMEOUT_S, SynestheteService
from engine.settings import Settings
from tests import milvus_server
from tests.web.conftest import TRACKS
from web.app import HEALTHZ_DEADLINE_S, create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_engine(web_corpus, tmp_path_factory):
    from index_builder.build import BuildOptions, run_build

    root = tmp_path_factory.mktemp("outage")
    try:
        srv = milvus_server.start(root / "srv")
    except milvus_server.MilvusServerUnavailable as exc:
        pytest.skip(str(exc))
    settings = Settings(data_dir=root / "data", model_cache_dir=root / "models", backbone="logmel", workers=2,
                        milvus_uri=srv.uri, collection_prefix="outage")
    try:
        report = run_build(settings, BuildOptions(csv=web_corpus["csv"], audio=web_corpus["audio"], workers=1,
                                                  use_tags=False, batch_size=4))
        assert report.indexed == len(TRACKS), report
        service = SynestheteService(settings)
        yield srv, service, root
        service.close()
    finally:
        srv.stop()


async def _healthz(client: TestClient) -> tuple[int, dict, float]:
    t0 = time.monotonic()
    r = await client.get("/healthz")
    return r.status, await r.json(), time.monotonic() - t0


async def test_healthz_answers_503_fast_while_the_store_hangs_or_is_gone_and_200_when_back(server_engine) -> None:
    srv, service, root = server_engine
    client = TestClient(TestServer(create_app(service, service.settings)))
    await client.start_server()
    try:
        status, body, _ = await _healthz(client)
        assert status == 200 and body["ok"] is True and body["store"] == "ok", body

        os.kill(srv.milvus_pid, signal.SIGSTOP)  # hung: the process is there, nothing answers
        try:
            status, body, took = await _healthz(client)
        finally:
            os.kill(srv.milvus_pid, signal.SIGCONT)
        assert status == 503 and body["ok"] is False and body["store"] != "ok", body
        assert took < HEALTHZ_DEADLINE_S + 1.0, took  # its own deadline, never the client's 30 s

        deadline = time.monotonic() + 30
        while (await _healthz(client))[0] != 200:  # resumed: healthy again without a restart of ours
            assert time.monotonic() < deadline, "not healthy again 30 s after the store resumed"
            await asyncio.sleep(0.5)

        srv.stop()  # gone
        status, body, took = await _healthz(client)
        assert status == 503 and body["store"].startswith("The music index isn't available"), body
        assert took < HEALTH_TIMEOUT_S + 1.5, took

        srv2 = milvus_server.start(root / "srv")
        server_engine[0].__dict__.update(srv2.__dict__)  # the fixture stops whichever runs
        if srv2.uri != service.store.uri:  # the old port was still taken: a new address, not a comeback
            return
        deadline = time.monotonic() + 60
        while (await _healthz(client))[0] != 200:
            assert time.monotonic() < deadline, "not healthy again 60 s after the store came back"
            await asyncio.sleep(1.0)
    finally:
        await client.close()
