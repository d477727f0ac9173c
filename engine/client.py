"""The engine as a service: :class:`EngineClient` asks a running engine process over HTTP.

Why: milvus-lite lets one process open an index, and a real deployment runs the bot, the
web page and an admin's terminal side by side.  One process owns the index (``synesthete
serve`` = ``synesthete-web``); the bot and the CLI become its clients by one setting,
``SYNESTHETE_ENGINE_URL``, and the CLI finds a running engine by itself when the index is
held by one (:func:`find_running_engine`).  The client keeps the same contract as the
in-process service (:class:`engine.api.SynestheteAPI`, plus the blocking calls the CLI
uses): the same :class:`~engine.service.Recommendation` objects, built from the engine's
JSON answers (docs/api.md), and the same typed errors, rebuilt from the error ``kind``.

Trusted front ends send ``SYNESTHETE_ENGINE_TOKEN`` as a bearer token so the engine's
per-address rate limits (meant for web visitors) do not throttle a whole bot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .audio import AudioSource
from .catalogue import SearchHit, Track
from .errors import CorruptAudioError, EngineUnavailableError, NotAudioError, SynestheteError, TooLargeAudioError
from .fileio import atomic_write_text
from .filters import TrackFilter
from .service import Recommendation
from .settings import Settings

log = logging.getLogger(__name__)

#: written by a serving engine into its data directory: how local clients find it
ENGINE_FILE = "engine.json"


def _error_classes() -> dict[str, type[SynestheteError]]:
    """Every engine error class by its ``kind`` (the web API's error bodies carry the kind)."""
    out: dict[str, type[SynestheteError]] = {}
    pending: list[type[SynestheteError]] = [SynestheteError]
    while pending:
        cls = pending.pop()
        out.setdefault(cls.kind, cls)
        pending.extend(cls.__subclasses__())
    return out


def error_from_body(status: int, body: Any) -> SynestheteError:
    """The typed error an engine's error body ``{"error": {"kind", "message"}}`` stands for."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    kind = err.get("kind") if isinstance(err.get("kind"), str) else "internal"
    message = err.get("message") if isinstance(err.get("message"), str) else SynestheteError.user_message
    cls = _error_classes().get(kind, SynestheteError)
    detail = f"engine answered HTTP {status} {kind}: {message}"
    try:
        exc = cls(detail, user_message=message)
    except TypeError:  # a subclass with a constructor of its own
        exc = SynestheteError(detail, user_message=message)
    exc.kind = kind  # kinds the engine has and this process lacks (bad_request, rate_limited) keep theirs
    return exc


class EngineClient:
    """:class:`engine.api.SynestheteAPI` over a running engine's JSON API (docs/api.md).

    ``settings.engine_url`` (or ``url``) is the engine's base URL.  Every call has a timeout
    (``settings.query_timeout_s`` + 10 s); a refused connection or a timeout raises
    :class:`EngineUnavailableError`; an error answer raises the engine's own typed error.
    The blocking methods (``recommend``, ``similar_to``, ``more_by_artist``,
    ``search_tracks``) are for the CLI; the ``a*`` coroutines for the bot.
    """

    def __init__(self, settings: Settings, url: str | None = None, *, token: str | None = None,
                 timeout_s: float | None = None) -> None:
        self.settings = settings
        self.url = (url or settings.engine_url).rstrip("/")
        if not self.url:
            raise ValueError("EngineClient needs SYNESTHETE_ENGINE_URL or a url")
        self.token = settings.engine_token if token is None else token
        self.timeout_s = timeout_s or settings.query_timeout_s + 10.0
        self._about: dict[str, Any] | None = None

    # ---- plumbing ---------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _request(self, method: str, path: str, params: dict[str, Any] | None = None,
                       data: bytes | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as session:
                async with session.request(method, self.url + path, params=query, data=data) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status >= 400:
                        raise error_from_body(resp.status, body)
                    if not isinstance(body, dict):
                        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
                    return body
        except SynestheteError:
            raise
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
            raise EngineUnavailableError(f"engine at {self.url} did not answer {method} {path}: {exc!r}") from exc

    def _read_source(self, source: AudioSource) -> bytes:
        """The upload: size checked before anything is read (a 1 GiB file is refused at once)."""
        limit = self.settings.max_upload_bytes
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            path = Path(source)
            try:
                if path.is_dir():
                    raise NotAudioError(f"{path} is a directory")
                size = path.stat().st_size
                if size > limit:
                    raise TooLargeAudioError(f"{path}: {size} bytes > limit {limit}")
                data = path.read_bytes()
            except OSError as exc:
                raise CorruptAudioError(f"cannot read {path}: {exc}") from exc
        if len(data) > limit:
            raise TooLargeAudioError(f"{len(data)} bytes > limit {limit}")
        return data

    @staticmethod
    def _answer(body: dict[str, Any]) -> Recommendation:
        try:
            return Recommendation.from_dict(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EngineUnavailableError(f"the engine's answer is not an answer: {exc!r}") from exc

    # ---- the contract (engine.api.SynestheteAPI) -------------------------------------

    @property
    def model_id(self) -> str:
        return str(self.about().get("model_id", ""))

    def about(self) -> dict[str, Any]:
        """The engine's ``about``, with ``engine_url`` added (blocking; cached after the first call)."""
        if self._about is None:
            self._about = {**asyncio.run(self._request("GET", "/api/about")), "engine_url": self.url}
        return self._about

    def health(self) -> dict[str, Any]:
        """The engine's ``/healthz`` body, 200 or 503 alike; ``{"ok": False, "engine": why}`` when it does not answer."""
        async def ask() -> dict[str, Any]:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3.0)) as session:
                    async with session.get(self.url + "/healthz") as resp:
                        body = await resp.json(content_type=None)
                        return body if isinstance(body, dict) else {"ok": False, "engine": "unreadable answer"}
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                return {"ok": False, "engine": f"not reachable at {self.url} ({type(exc).__name__})"}

        return asyncio.run(ask())

    async def arecommend(self, source: AudioSource, k: int | None = None, diverse: bool = True,
                         filters: TrackFilter | None = None) -> Recommendation:
        data = self._read_source(source)
        params = {"k": k, "raw": "" if diverse else "1", **(filters.to_params() if filters else {})}
        return self._answer(await self._request("POST", "/api/recommend", params, data))

    async def asimilar_to(self, track_id: str, k: int | None = None, offset: int = 0, diverse: bool = True,
                          filters: TrackFilter | None = None) -> Recommendation:
        params = {"track_id": track_id, "k": k, "offset": offset, "raw": "" if diverse else "1",
                  **(filters.to_params() if filters else {})}
        return self._answer(await self._request("GET", "/api/similar", params))

    async def amore_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        params = {"track_id": track_id, "k": k, "offset": offset, "same_artist": "1"}
        return self._answer(await self._request("GET", "/api/similar", params))

    async def aradio(self, track_id: str, n: int | None = None, filters: TrackFilter | None = None) -> Recommendation:
        params = {"track_id": track_id, "n": n, **(filters.to_params() if filters else {})}
        return self._answer(await self._request("GET", "/api/radio", params))

    async def asearch_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        body = await self._request("GET", "/api/search", {"q": text, "limit": min(max(1, limit), 25)})
        try:
            return [SearchHit(Track.from_dict(h), float(h.get("score", 0.0))) for h in body["results"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EngineUnavailableError(f"the engine's search answer is not one: {exc!r}") from exc

    # ---- blocking calls (the CLI) ------------------------------------------------------

    def recommend(self, source: AudioSource, k: int | None = None, diverse: bool = True,
                  filters: TrackFilter | None = None) -> Recommendation:
        return asyncio.run(self.arecommend(source, k, diverse, filters))

    def similar_to(self, track_id: str, k: int | None = None, offset: int = 0, diverse: bool = True,
                   filters: TrackFilter | None = None) -> Recommendation:
        return asyncio.run(self.asimilar_to(track_id, k, offset, diverse, filters))

    def more_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        return asyncio.run(self.amore_by_artist(track_id, k, offset))

    def search_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        return asyncio.run(self.asearch_tracks(text, limit))

    def radio(self, track_id: str, n: int | None = None, filters: TrackFilter | None = None) -> Recommendation:
        return asyncio.run(self.aradio(track_id, n, filters))

    def close(self) -> None:
        """Nothing to release (a session lives for one call); here so callers treat both alike."""

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- finding a running engine -----------------------------------------------------------


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for an engine bound to ``host:port``."""
    if host in ("::", "::1"):
        return f"http://[::1]:{port}"
    if host in ("", "0.0.0.0", "127.0.0.1", "localhost"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class RunningEngine:
    """What a serving engine wrote into its data directory (see :func:`advertise`)."""

    url: str
    pid: int
    #: a per-run secret: the owner of the data directory's CLI is a trusted front end
    token: str


@contextmanager
def advertise(settings: Settings, host: str, port: int) -> Iterator[str]:
    """While serving, tell local clients where this engine is; yields the local token.

    ``<data_dir>/engine.json`` (owner-only, 0600) holds the URL, the pid and a random
    per-run token that the engine trusts like ``SYNESTHETE_ENGINE_TOKEN``: the same user's
    CLI finds the engine that holds *this* data directory's index, on whatever port, and is
    not rate-limited like a web visitor.  Removed when the block ends.  A data directory that
    cannot take the file only costs the discovery (logged), never the serving.
    """
    path = Path(settings.data_dir) / ENGINE_FILE
    token = secrets.token_urlsafe(24)
    try:
        atomic_write_text(path, json.dumps({"url": local_url(host, port), "pid": os.getpid(), "token": token}),
                          private=True)
    except OSError as exc:
        log.warning("cannot write %s (%s): a CLI will not find this engine by itself", path, exc)
    try:
        yield token
    finally:
        found = find_running_engine(settings)
        if found is not None and found.pid == os.getpid():  # never another engine's file
            with suppress(OSError):
                path.unlink()


def find_running_engine(settings: Settings) -> RunningEngine | None:
    """The engine serving ``settings.data_dir`` by its engine.json, if its pid is alive; else None.

    A live pid is not proof (pids are reused, a container's engine is pid 1): callers check
    that it answers (:func:`open_engine` in engine.cli).
    """
    path = Path(settings.data_dir) / ENGINE_FILE
    try:
        info = json.loads(path.read_text())
        found = RunningEngine(str(info["url"]), int(info["pid"]), str(info.get("token", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        log.info("%s names pid %d, which is gone: ignoring it", path, found.pid)
        return None
    except PermissionError:
        pass  # alive, another user's
    return found


__all__ = ["ENGINE_FILE", "EngineClient", "RunningEngine", "advertise", "error_from_body", "find_running_engine",
           "local_url"]
