"""The front-end contract (engine.api.SynestheteAPI): the test double and the real service both keep it,
and the bot and web adapters call nothing outside it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from engine.api import SynestheteAPI
from engine.service import SynestheteService

from .conftest import bot_settings
from .fakes import StubService

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = {"settings", "model_id", "about", "health", "arecommend", "asimilar_to", "amore_by_artist", "aradio",
           "asearch_tracks"}
METHODS = sorted(MEMBERS - {"settings", "model_id"})


def test_the_contract_is_what_it_says() -> None:
    declared = {n for n in vars(SynestheteAPI) if not n.startswith("_")} | set(SynestheteAPI.__annotations__)
    assert declared == MEMBERS


def test_the_stub_is_a_plain_class_that_keeps_the_contract(tmp_path) -> None:
    stub = StubService(bot_settings(tmp_path))
    try:
        assert isinstance(stub, SynestheteAPI)
        assert not isinstance(stub, SynestheteService) and SynestheteService not in StubService.__mro__
    finally:
        stub.close()


@pytest.mark.parametrize("cls", [StubService, SynestheteService], ids=["stub", "real"])
@pytest.mark.parametrize("name", METHODS)
def test_signatures_match_the_contract(cls: type, name: str) -> None:
    """``isinstance`` on a runtime-checkable Protocol only sees names; this checks the shapes."""
    want, got = getattr(SynestheteAPI, name), getattr(cls, name)
    assert inspect.iscoroutinefunction(want) == inspect.iscoroutinefunction(got), name
    params = lambda f: [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    assert params(got) == params(want), f"{cls.__name__}.{name} differs from the contract"


@pytest.mark.parametrize("cls", [StubService, SynestheteService], ids=["stub", "real"])
def test_model_id_is_a_property(cls: type) -> None:
    assert isinstance(inspect.getattr_static(cls, "model_id"), property)


def test_front_ends_call_only_the_contract() -> None:
    """The adapters' service calls, read from their source (the CLIs in main.py own the concrete service)."""
    used: dict[str, set[str]] = {}
    call = re.compile(r"\b(?:service|svc|app\[SERVICE\])\.([a-z_]\w*)")
    for pkg in ("bot", "web"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name == "main.py":
                continue
            for name in call.findall(path.read_text()):
                used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert {"arecommend", "asimilar_to", "asearch_tracks", "about"} <= set(used)  # the scan sees the calls
    outside = {n: sorted(p) for n, p in used.items() if n not in MEMBERS}
    assert not outside, f"calls outside engine.api.SynestheteAPI: {outside}"
