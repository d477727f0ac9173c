"""Fakes at the edges only: an engine stub that keeps the front-end contract (engine.api), an HTTP file
server for attachment downloads, dpytest messages with full attachment payloads, and
thin Interaction / response / followup objects for slash commands and components."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.ext.test as dpytest
from aiohttp import web
from discord.ext.test import backend as back
from discord.ext.test import factories as facts

from engine.catalogue import SearchHit, Track, fold
from engine.errors import BusyError, QueryTimeoutError, TrackNotFoundError
from engine.service import Identification, Recommendation, ScoredTrack

_ids = itertools.count(1)


def spotify_id(i: int) -> str:
    return f"{i:022d}".replace("0", "A")[:22]


def make_tracks(n: int = 30) -> list[Track]:
    genres = ["Rock", "Jazz", "Electronic", "Folk", "Hip-Hop"]
    out = [Track(spotify_id(i), f"Song number {i}", f"Artist {i % 7}", [genres[i % 5]], 50 + i) for i in range(n)]
    out.append(Track(spotify_id(n), "An extraordinarily long title " * 6, "Somebody [with] *markdown*", ["Pop"], 1))
    return out


class StubService:
    """A plain test double of :class:`engine.api.SynestheteAPI`: canned answers from blocking
    sync methods, behind ``a*`` coroutines that keep the contract's load rules (off the event
    loop in a thread pool; ``BusyError`` at once when every slot is taken; ``QueryTimeoutError``
    after ``settings.query_timeout_s``).  It does not subclass the real service: the bot may only
    rely on the contract, and the real service's conformance is tested on its own."""

    def __init__(self, settings: Any, tracks: list[Track] | None = None) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="stub")
        self._light_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stub-light")
        self._slots: asyncio.Semaphore | None = None
        self.tracks = tracks or make_tracks()
        self.by_id = {t.track_id: t for t in self.tracks}
        self.calls: list[tuple] = []
        self.delay = 0.0
        self.search_delay = 0.0
        self.fail: BaseException | None = None
        self.identify = True

    # ---- the contract's async surface ------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any, light: bool = False) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.settings.workers) * 4)
        if self._slots.locked():
            raise BusyError("all query slots are taken")
        async with self._slots:
            fut = asyncio.get_running_loop().run_in_executor(self._light_executor if light else self._executor,
                                                             fn, *args)
            try:
                return await asyncio.wait_for(fut, timeout=self.settings.query_timeout_s)
            except TimeoutError as exc:
                raise QueryTimeoutError(f"query exceeded {self.settings.query_timeout_s}s") from exc

    async def arecommend(self, source: Any, k: int | None = None, diverse: bool = True,
                         filters: Any = None) -> Recommendation:
        return await self._run(self.recommend, source, k, diverse, filters)

    async def asimilar_to(self, track_id: str, k: int | None = None, offset: int = 0, diverse: bool = True,
                          filters: Any = None) -> Recommendation:
        return await self._run(self.similar_to, track_id, k, offset, diverse, filters, light=True)

    async def amore_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        return await self._run(self.more_by_artist, track_id, k, offset, light=True)

    async def asearch_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        return await asyncio.get_running_loop().run_in_executor(None, self.search_tracks, text, limit)

    # ---- canned blocking work ----------------------------------------------------------

    @property
    def model_id(self) -> str:
        return "stub-backbone:v1+head:abc123"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._light_executor.shutdown(wait=False, cancel_futures=True)

    def recommend(self, source: Any, k: int | None = None, diverse: bool = True,
                  filters: Any = None) -> Recommendation:
        self.calls.append(("recommend", bytes(source) if isinstance(source, (bytes, bytearray)) else source, k))
        if self.delay:
            time.sleep(self.delay)  # blocking, like decode + embed: must run off the event loop
        if self.fail is not None:
            raise self.fail
        k = k or self.settings.top_k
        ident = Identification(self.tracks[0], 0.93, 12.0, "both") if self.identify else None
        pool = self.tracks[1:] if self.identify else self.tracks
        return Recommendation(ident, [ScoredTrack(t, 0.95 - 0.01 * i) for i, t in enumerate(pool[:k])], None, 20.0,
                              {}, self.model_id)

    def similar_to(self, track_id: str, k: int | None = None, offset: int = 0,
                   diverse: bool = True, filters: Any = None) -> Recommendation:
        self.calls.append(("similar_to", track_id, k, offset) + ((filters,) if filters is not None else ()))
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        seed = self.by_id.get(track_id)
        if seed is None:
            raise TrackNotFoundError(f"no track with id {track_id!r}")
        k = k or self.settings.top_k
        others = [t for t in self.tracks if t.track_id != track_id]
        res = [ScoredTrack(t, 0.9 - 0.01 * (offset + i)) for i, t in enumerate(others[offset:offset + k])]
        return Recommendation(None, res, seed, None, {}, self.model_id)

    def more_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        self.calls.append(("more_by_artist", track_id, k, offset))
        seed = self.by_id.get(track_id)
        if seed is None:
            raise TrackNotFoundError(f"no track with id {track_id!r}")
        k = k or self.settings.top_k
        same = [t for t in self.tracks if t.artist == seed.artist and t.track_id != track_id]
        res = [ScoredTrack(t, 0.8 - 0.01 * i) for i, t in enumerate(same[offset:offset + k])]
        return Recommendation(None, res, seed, None, {}, self.model_id)

    def search_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        self.calls.append(("search_tracks", text, limit))
        if self.search_delay:
            time.sleep(self.search_delay)
        q = fold(text)
        hits = [SearchHit(t, 1.0) for t in self.tracks if q in fold(f"{t.name} {t.artist}")]
        return hits[: min(25, limit)]

    def about(self) -> dict:
        return {"tracks": len(self.tracks), "indexed_tracks": len(self.tracks), "model_id": self.model_id,
                "backbone": "stub", "head_trained": False, "index_built": "2024-01-01T00:00:00Z",
                "milvus": "milvus-lite"}


# ---- an HTTP server for attachment bytes (the CDN edge) ---------------------------------


class FileServer:
    """Serves ``/f/<name>`` from memory on 127.0.0.1; counts requests; optional delay / status."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.delay: dict[str, float] = {}
        self.status: dict[str, int] = {}
        self.hits: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> FileServer:
        app = web.Application()
        app.router.add_get("/f/{name}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def add(self, name: str, data: bytes, *, delay: float = 0.0, status: int = 200) -> str:
        self.files[name] = data
        self.delay[name] = delay
        self.status[name] = status
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/f/{name}"

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits.append(name)
        if self.delay.get(name):
            await asyncio.sleep(self.delay[name])
        if name not in self.files or self.status.get(name, 200) != 200:
            return web.Response(status=self.status.get(name, 404))
        # stream in chunks, without Content-Length, like a chunked CDN response
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        data = self.files[name]
        for i in range(0, len(data), 32 * 1024):
            await resp.write(data[i:i + 32 * 1024])
        await resp.write_eof()
        return resp


def attachment_dict(url: str, filename: str, size: int, content_type: str | None = "audio/ogg", *,
                    voice: bool = False, duration: float = 12.5) -> dict:
    d: dict[str, Any] = {"id": 10_000 + next(_ids), "filename": filename, "size": size, "url": url, "proxy_url": url,
                         "content_type": content_type}
    if voice:
        d.update(flags=8192, duration_secs=duration,
                 waveform=base64.b64encode(bytes(range(0, 256, 4))).decode())
    return d


def make_attachment(data: dict) -> discord.Attachment:
    return discord.Attachment(data=data, state=back.get_state())


async def post(channel: Any, author: Any, content: str = "", attachments: list[dict] | None = None) -> discord.Message:
    """dpytest's ``message`` drops attachment flags (voice), so build the payload ourselves."""
    guild = getattr(channel, "guild", None)
    data = facts.make_message_dict(channel, author, content=content,
                                   mentions=back.find_user_mentions(content, guild),
                                   guild_id=guild.id if guild else None)
    data["attachments"] = attachments or []
    state = back.get_state()
    state.parse_message_create(data)
    back._cur_config.messages.setdefault(channel.id, []).append(data)
    msg = state._get_message(data["id"])
    await dpytest.run_all_events()
    return msg


def sent_messages() -> list[discord.Message]:
    out = []
    q = dpytest.sent_queue
    while not q.empty():
        out.append(q.get_nowait())
    return out


# ---- interactions ----------------------------------------------------------------------


@dataclass
class Sent:
    content: str | None
    embed: discord.Embed | None
    view: discord.ui.View | None
    ephemeral: bool
    at: float
    via: str


@dataclass
class FakeMessage:
    sent: Sent

    async def edit(self, **kw: Any) -> None:
        pass


class FakeResponse:
    def __init__(self, log: list[Sent]) -> None:
        self._log = log
        self._done = False
        self.deferred: dict | None = None
        self.deferred_at: float | None = None

    def is_done(self) -> bool:
        return self._done

    async def defer(self, *, thinking: bool = False, ephemeral: bool = False) -> None:
        assert not self._done, "interaction answered twice"
        self._done = True
        self.deferred = {"thinking": thinking, "ephemeral": ephemeral}
        self.deferred_at = time.perf_counter()

    async def send_message(self, content: str | None = None, *, embed: discord.Embed | None = None,
                           view: discord.ui.View | None = None, ephemeral: bool = False) -> None:
        assert not self._done, "interaction answered twice"
        self._done = True
        self._log.append(Sent(content, embed, view, ephemeral, time.perf_counter(), "response"))


class FakeFollowup:
    def __init__(self, log: list[Sent], response: FakeResponse) -> None:
        self._log = log
        self._response = response

    async def send(self, content: str | None = None, *, embed: discord.Embed | None = None,
                   view: discord.ui.View | None = None, ephemeral: bool = False, wait: bool = False) -> FakeMessage:
        assert self._response.is_done(), "followup before the interaction was acknowledged"
        s = Sent(content, embed, view, ephemeral, time.perf_counter(), "followup")
        self._log.append(s)
        return FakeMessage(s)


@dataclass
class FakeUser:
    id: int
    name: str = "tester"
    bot: bool = False


@dataclass
class FakeInteraction:
    client: Any
    user: FakeUser = field(default_factory=lambda: FakeUser(4242))
    guild_id: int | None = 777
    channel_id: int | None = 555
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.response = FakeResponse(self.sent)
        self.followup = FakeFollowup(self.sent, self.response)

    @property
    def texts(self) -> list[str]:
        return [s.content for s in self.sent if s.content]

    @property
    def embeds(self) -> list[discord.Embed]:
        return [s.embed for s in self.sent if s.embed is not None]


# ---- reading the bot's metrics back ----------------------------------------------------


def queries(bot: Any, flow: str, outcome: str = "ok") -> float:
    return bot.metrics.sample("synesthete_bot_queries_total", flow=flow, outcome=outcome)


def errors(bot: Any, kind: str) -> float:
    return bot.metrics.sample("synesthete_bot_errors_total", kind=kind)


def votes(bot: Any, vote: str) -> float:
    return bot.metrics.sample("synesthete_bot_feedback_total", vote=vote)
