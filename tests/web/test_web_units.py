"""Pieces of the web adapter that need no engine: the token bucket, client IPs, the CLI."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from web.main import main
from web.ratelimit import TokenBucket, client_ip


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    b = TokenBucket(per_minute=6, burst=3, clock=clock)  # one token per 10 s
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a")
    assert wait == pytest.approx(10.0)
    assert b.take("b") == 0.0  # keys are independent
    clock.t += 5
    assert b.take("a") == pytest.approx(5.0)  # a refusal takes nothing
    clock.t += 5
    assert b.take("a") == 0.0
    clock.t += 3600
    assert [b.take("a") for _ in range(4)][-1] > 0  # refills to the burst, not beyond


def test_bucket_disabled_and_bounded_memory(monkeypatch) -> None:
    assert TokenBucket(per_minute=0, burst=1).take("x") == 0.0
    import web.ratelimit as rl

    monkeypatch.setattr(rl, "MAX_KEYS", 100)
    clock = Clock()
    b = TokenBucket(per_minute=60, burst=2, clock=clock)
    for i in range(1000):
        b.take(f"ip{i}")
        clock.t += 0.01
    assert len(b) <= 100


def test_client_ip_trusts_forwarded_only_when_told() -> None:
    req = SimpleNamespace(remote="10.0.0.1", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    assert client_ip(req) == "10.0.0.1"
    assert client_ip(req, trust_forwarded=True) == "203.0.113.9"


def test_cli_without_an_index_says_what_to_do(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SYNESTHETE_BACKBONE", "logmel")
    assert main(["--env-file", str(tmp_path / "none.env"), "--port", "0"]) == 1
    assert "synesthete-index" in capsys.readouterr().err


def test_cli_bad_setting_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_WEB_PORT", "eighty")
    assert main(["--env-file", str(tmp_path / "none.env")]) == 2
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
    assert {"/", "/healthz", "/api/recommend", "/api/similar", "/api/search", "/api/listen"} <= paths
    for p in paths:
        assert f"`{p}" in docs or f" {p}" in docs, f"{p} is not in docs/api.md"
