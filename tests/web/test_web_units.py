"""Pieces of the web adapter that need no engine: the rate limits, client IPs, the CLI, metrics."""

from __future__ import annotations

import os
import asyncio
from types import SimpleNamespace

import pytest
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError

from web.main import main
from web.ratelimit import RateLimiter, client_ip, make_storage, rate_item


@pytest.mark.parametrize(("per_minute", "burst", "amount", "window_s"), [
    (12.0, 6, 6, 30),  # the audio default: 6 back to back, 12 a minute over time
    (240.0, 40, 40, 10),  # the search default
    (2.0, 1, 1, 30),
    (6.0, 2, 2, 20),
    (6000.0, 1, 100, 1),  # under a second per burst: whole seconds, R/60 a second
])
def test_settings_map_onto_a_moving_window(per_minute, burst, amount, window_s) -> None:
    item = rate_item(per_minute, burst, "t")
    assert (item.amount, item.get_expiry()) == (amount, window_s)
    assert item.amount * 60 / item.get_expiry() == pytest.approx(per_minute, rel=0.05)  # the long-run rate


async def test_limit_allows_a_burst_then_refuses_with_an_exact_wait() -> None:
    lim = RateLimiter("audio", per_minute=6, burst=3)  # 3 per 30 s
    assert [await lim.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await lim.take("a")
    assert 29.0 < wait <= 30.0  # when the first of the three leaves the window
    assert await lim.take("b") == 0.0  # keys are independent
    assert 28.0 < await lim.take("a") <= 30.0  # a refusal is not counted: the wait does not grow


async def test_limit_gives_the_burst_back_after_the_window() -> None:
    lim = RateLimiter("search", per_minute=120, burst=2)  # 2 per second
    assert [await lim.take("a") for _ in range(2)] == [0.0, 0.0]
    wait = await lim.take("a")
    assert 0.0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    assert await lim.take("a") == 0.0


async def test_limit_disabled_and_one_off_clients_leave_nothing_behind() -> None:
    assert not RateLimiter("x", per_minute=0, burst=1).enabled
    assert [await RateLimiter("x", per_minute=0, burst=1).take("k") for _ in range(50)] == [0.0] * 50
    lim = RateLimiter("audio", per_minute=60, burst=1)  # 1 per second
    for i in range(300):
        assert await lim.take(f"ip{i}") == 0.0
    await asyncio.sleep(1.1)
    await lim.take("one more")  # the storage expires old entries as it goes
    for _ in range(50):
        await asyncio.sleep(0.02)
        if len(lim.storage.events) <= 1:
            break
    assert len(lim.storage.events) <= 1


async def test_a_storage_outage_lets_requests_through(caplog) -> None:
    class Down(MemoryStorage):
        """A shared storage that went away (limits wraps its errors as StorageError)."""

        async def acquire_entry(self, *a, **k):
            raise StorageError(ConnectionError("redis went away"))

    lim = RateLimiter("audio", per_minute=1, burst=1, storage=Down())
    assert await lim.take("a") == 0.0 and await lim.take("a") == 0.0
    assert "not enforced" in caplog.text


def test_storage_uri_must_be_async() -> None:
    with pytest.raises(ValueError, match="async"):
        make_storage("memory://")
    assert make_storage("async+memory://") is not None


def test_client_ip_trusts_forwarded_only_when_told() -> None:
    req = SimpleNamespace(remote="10.0.0.1", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    assert client_ip(req) == "10.0.0.1"
    assert client_ip(req, trust_forwarded=True) == "203.0.113.9"


def test_cli_without_an_index_says_what_to_do(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SYNESTHETE_BACKBONE", "logmel")
    assert main(["--env-file", os.devnull]) == 2  # never built: the person can fix it (issue 30)
    assert "synesthete-index" in capsys.readouterr().err


def test_cli_bad_setting_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_WEB_PORT", "eighty")
    assert main(["--env-file", os.devnull]) == 2
    assert "SYNESTHETE_WEB_PORT" in capsys.readouterr().err


def test_cli_defaults_to_localhost(monkeypatch) -> None:
    from engine.settings import Settings

    s = Settings.from_env({}, env_file=None)
    assert s.web_host == "127.0.0.1" and s.web_port == 8080


def test_every_route_is_documented() -> None:
    from pathlib import Path

    from engine.settings import Settings
    from web.app import create_app

    app = create_app(object(), Settings())
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    paths = {r.canonical for r in app.router.resources()}
    assert {"/", "/healthz", "/metrics", "/api/recommend", "/api/similar", "/api/search", "/api/listen"} <= paths
    for p in paths:
        assert f"`{p}" in docs or f" {p}" in docs, f"{p} is not in docs/api.md"


async def test_an_index_that_went_away_is_503_with_retry_after_not_500() -> None:
    """A Milvus error after the index is open (engine.store maps it once) reaches HTTP as 503."""
    from aiohttp.test_utils import TestClient, TestServer

    from engine.errors import StoreUnavailableError
    from engine.settings import Settings
    from web.app import create_app

    class Down:
        settings = Settings()

        async def asimilar_to(self, *a, **kw):
            raise StoreUnavailableError("Milvus at http://milvus:19530 failed in search_tracks: UNAVAILABLE")

    client = TestClient(TestServer(create_app(Down(), Settings())))
    await client.start_server()
    try:
        resp = await client.get("/api/similar", params={"track_id": "x"})
        body = await resp.json()
        assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
        assert body["error"] == {"kind": "store_unavailable",
                                 "message": "The music index isn't available right now; please try again in about 10 seconds."}
    finally:
        await client.close()
