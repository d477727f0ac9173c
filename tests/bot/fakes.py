"""Fakes at the edges only: an engine stub that keeps the front-end contract (engine.api), an HTTP file
server for attachment downloads, dpytest messages with full attachment payloads, and
thin Interaction / response / followup objects for slash commands and components."""

from __future__ import annotations

import json

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

    async def aradio(self, track_id: str, n: int | None = None, filters: Any = None) -> Recommendation:
        return await self._run(self.radio, track_id, n, filters, light=True)

    async def asearch_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        return await asyncio.get_running_loop().run_in_executor(None, self.search_tracks, text, limit)

    # ---- canned blocking work ----------------------------------------------------------

    #: a retrained model has another id (answers made by the old one expire)
    model_version = "abc123"

    @property
    def model_id(self) -> str:
        return f"stub-backbone:v1+head:{self.model_version}"

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

    def radio(self, track_id: str, n: int | None = None, filters: Any = None) -> Recommendation:
        self.calls.append(("radio", track_id, n))
        seed = self.by_id.get(track_id)
        if seed is None:
            raise TrackNotFoundError(f"no track with id {track_id!r}")
        others = [t for t in self.tracks if t.track_id != track_id][: n or 25]
        return Recommendation(None, [ScoredTrack(t, 0.7) for t in others], seed, None, {}, self.model_id)

    def search_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        self.calls.append(("search_tracks", text, limit))
        if self.search_delay:
            time.sleep(self.search_delay)
        q = fold(text)
        hits = [SearchHit(t, 1.0) for t in self.tracks if q in fold(f"{t.name} {t.artist}")]
        return hits[: min(25, limit)]

    def health(self) -> dict:
        return {"ok": bool(self.tracks), "tracks": len(self.tracks), "indexed_tracks": len(self.tracks),
                "model_id": self.model_id, "store": "ok"}

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
    files: list[Any] = field(default_factory=list)


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

    async def edit_message(self, *, view: discord.ui.View | None = None) -> None:
        """The message the component is on, edited in place (Discord's UPDATE_MESSAGE response)."""
        assert not self._done, "interaction answered twice"
        self._done = True
        self._log.append(Sent(None, None, view, False, time.perf_counter(), "edit"))


class FakeFollowup:
    def __init__(self, log: list[Sent], response: FakeResponse) -> None:
        self._log = log
        self._response = response

    async def send(self, content: str | None = None, *, embed: discord.Embed | None = None,
                   view: discord.ui.View | None = None, ephemeral: bool = False, wait: bool = False,
                   files: list[discord.File] | None = None) -> FakeMessage:
        assert self._response.is_done(), "followup before the interaction was acknowledged"
        s = Sent(content, embed, view, ephemeral, time.perf_counter(), "followup", list(files or []))
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


# ---- component presses through discord.py's real interaction path ------------------------


@dataclass
class Call:
    method: str
    path: str  # the route's template, e.g. /interactions/{webhook_id}/{webhook_token}/callback
    payload: dict


class DiscordEdge:
    """Discord's HTTP API where interactions are answered: ``AsyncWebhookAdapter.request``, the one
    place every interaction response and follow-up goes through.  Records each call and answers
    as Discord does, so everything above it (Interaction, InteractionResponse, Webhook, the view
    store, the bot) is the real discord.py."""

    CALLBACK = "/interactions/{webhook_id}/{webhook_token}/callback"
    FOLLOWUP = "/webhooks/{webhook_id}/{webhook_token}"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.author: dict = {}
        #: the messages follow-ups made, as Discord returns them (what a later press refers to)
        self.posted: list[dict] = []
        #: the file names of each follow-up sent with files
        self.files: list[list[str]] = []

    async def request(self, route: Any, payload: dict | None = None) -> Any:
        self.calls.append(Call(route.method, route.path, payload or {}))
        if route.path == self.CALLBACK:
            return {"interaction": {"id": str(route.webhook_id), "type": 3}}
        if route.method in ("POST", "PATCH"):  # a follow-up (wait=True) or an edit: the message
            data = dict(payload or {})
            message = {"id": str(facts.make_id()), "channel_id": "0", "type": 0, "content": data.get("content") or "",
                    "author": self.author, "embeds": data.get("embeds") or [],
                    "components": data.get("components") or [], "attachments": [], "mentions": [],
                    "mention_roles": [], "pinned": False, "mention_everyone": False, "tts": False,
                    "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None,
                    "flags": data.get("flags") or 0}
            if route.method == "POST":
                self.posted.append(message)
            return message
        return None

    @property
    def responses(self) -> list[dict]:
        """The initial responses: type 4 a message, 5 deferred ("thinking…"), 7 the message updated."""
        return [c.payload for c in self.calls if c.path == self.CALLBACK]

    @property
    def followups(self) -> list[dict]:
        return [c.payload for c in self.calls if c.method == "POST" and c.path == self.FOLLOWUP]

    def said(self) -> list[tuple[str, bool]]:
        """Every sentence sent, with whether only the presser saw it (ephemeral)."""
        out = [(r["data"].get("content") or "", bool(r["data"].get("flags", 0) & 64))
               for r in self.responses if r["type"] == 4]
        out += [(f.get("content") or "", bool(f.get("flags", 0) & 64)) for f in self.followups if f.get("content")]
        return out

    def embeds(self) -> list[dict]:
        return [e for f in self.followups for e in f.get("embeds") or []]

    def clear(self) -> None:
        self.calls.clear()
        self.posted.clear()


def install_discord_edge(monkeypatch: Any) -> DiscordEdge:
    from discord.webhook.async_ import AsyncWebhookAdapter

    edge = DiscordEdge()

    async def request(adapter: Any, route: Any, session: Any, *, payload: dict | None = None,
                      multipart: list[dict] | None = None, files: Any = None, **_: Any) -> Any:
        if payload is None and multipart:  # a message with files: Discord reads the JSON part
            payload = json.loads(next(p["value"] for p in multipart if p.get("name") == "payload_json"))
            edge.files.append([f.filename for f in files or []])
        return await edge.request(route, payload)

    monkeypatch.setattr(AsyncWebhookAdapter, "request", request)
    return edge


def keep_components(monkeypatch: Any) -> list[dict]:
    """dpytest drops the components of a message the bot sends; Discord keeps them, and a press
    refers to them.  Returns the sent messages' payloads (as Discord stores them), in order."""
    sent: list[dict] = []
    original = back.FakeHttp.send_message

    async def send_message(self: Any, channel_id: int, *, params: Any) -> dict:
        channel = back._get_higher_locs(1).get("channel")  # noqa: F841 - dpytest reads it from this frame
        data = await original(self, channel_id, params=params)
        data["components"] = (params.payload or {}).get("components") or []
        sent.append(data)
        return data

    monkeypatch.setattr(back.FakeHttp, "send_message", send_message)
    return sent


def custom_ids(message: dict) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]


def disabled(components: list[dict]) -> list[bool]:
    return [bool(c.get("disabled")) for row in components for c in row.get("components", [])]


async def press(bot: Any, edge: DiscordEdge, message: dict, custom_id: str, *, values: list[str] | None = None,
                member: Any = None) -> None:
    """Discord's INTERACTION_CREATE for a click on ``custom_id`` under ``message`` in the first
    channel, handed to the bot's connection state as the gateway would; returns when the bot's
    handling (discord.py's ``discord-ui-*`` tasks) is done.  The message is the bot's own: the
    application (its user) is the same across restarts, so its author is the running bot."""
    c = dpytest.get_config()
    channel, member = c.channels[0], member or c.members[0]
    edge.author = facts.dict_from_user(bot.user)
    component = {"custom_id": custom_id, "component_type": 3 if values is not None else 2}
    if values is not None:
        component["values"] = values
    data = {
        "id": str(facts.make_id()), "application_id": str(bot.user.id), "type": 3, "version": 1,
        "token": f"interaction-token-{facts.make_id()}", "guild_id": str(channel.guild.id),
        "channel_id": str(channel.id), "channel": {"id": str(channel.id), "type": 0, "guild_id": str(channel.guild.id),
                                                    "name": channel.name, "position": 0},
        "member": {**facts.dict_from_member(member), "permissions": "0", "deaf": False, "mute": False},
        "message": {**message, "author": facts.dict_from_user(bot.user)}, "data": component,
        "attachment_size_limit": 10 * 1024 * 1024, "app_permissions": "0", "locale": "en-US",
    }
    bot._connection.parse_interaction_create(data)
    while pending := [t for t in asyncio.all_tasks() if t.get_name().startswith("discord-ui-") and not t.done()]:
        await asyncio.gather(*pending)
