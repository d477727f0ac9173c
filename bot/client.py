"""The bot: a discord.py bot that owns its command tree, the engine and the guard rails.

Shape learned from discord.py's ``examples/app_commands/basic.py`` (a client
subclass that syncs its tree in ``setup_hook``), ``examples/views/dynamic_counter.py``
(buttons that outlive the process, registered with ``add_dynamic_items``) and
RoboDanny (one cog per feature, loaded as extensions; spam control in one place).
The behaviour is :class:`SynestheteBotBase`, on one of two discord.py bases
(:func:`create_bot` picks by setting): ``AutoShardedBot`` (production: Discord's
recommended shard count, or the shards the settings name, so a big deployment
runs several processes; docs/bot.md) or a single-connection ``Bot`` (one shard,
and what dpytest can drive).  What lives here and not in a cog is what every
flow shares: :meth:`SynestheteBotBase.serve` (request id,
cooldown, per-guild cap, metrics, one friendly sentence on failure) and the
engine calls that build an :class:`~bot.answers.Answer`.

The engine is blocking; this module only ever calls its ``a*`` coroutines (and
``about`` in a thread), so the event loop is never held by CPU work.  What the
bot may call is the front-end contract :class:`engine.api.SynestheteAPI`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from engine.api import SynestheteAPI
from engine.catalogue import Track
from engine.errors import SynestheteError, TrackNotFoundError
from engine.fileio import atomic_write_text
from engine.filters import TrackFilter
from engine.settings import Settings

from .answers import AUDIO_PAGES, Answer
from .download import check_size, download, effective_limit
from .embeds import error_text
from .errors import AnswerExpiredError, AnswerGoneError, NothingMoreError
from .feedback import FeedbackStore
from .metrics import Metrics, MetricsServer
from .utils.ratelimit import GuildSlots, UserCooldowns

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.listen", "bot.cogs.search", "bot.cogs.info")

#: How long an answer's buttons work (s) unless ``bot_answer_ttl_s`` says otherwise (0: no age limit).
#: Answers kept in memory for their buttons (older ones are read back from the feedback store).
RECENT_ANSWERS = 1024
#: A button must be acknowledged within Discord's 3 s; reading its answer back may take this long.
ANSWER_LOOKUP_TIMEOUT_S = 2.0


def check_bot_settings(settings: Settings) -> None:
    """Warn of a bot configuration that works but will surprise (values are validated by Settings)."""
    if settings.bot_watch_mode == "allowlist" and not settings.bot_allowed_channels:
        log.warning("watch mode is allowlist but SYNESTHETE_BOT_ALLOWED_CHANNEL_IDS is empty: "
                    "only DMs and mentions will be answered")


def shard_config(settings: Settings) -> tuple[int | None, list[int] | None]:
    """``(shard_count, shard_ids)`` for ``AutoShardedBot`` from ``bot_shard_count`` / ``bot_shard_ids``.

    ``(None, None)``: Discord's recommended count, every shard in this process.  Raises
    ``ValueError`` with a sentence naming the setting when the two do not fit together
    (discord.py would refuse later, at login, with a less helpful message).
    """
    count = settings.bot_shard_count
    text = settings.bot_shard_ids
    try:
        ids = sorted({int(x) for x in text.replace(";", ",").split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"setting SYNESTHETE_BOT_SHARD_IDS={text!r}: comma-separated shard numbers expected "
                         "(e.g. 0,1)") from None
    if count < 0:
        raise ValueError(f"setting SYNESTHETE_BOT_SHARD_COUNT={count}: must be at least 0 (0 = Discord's "
                         "recommendation)")
    if ids and not count:
        raise ValueError(f"setting SYNESTHETE_BOT_SHARD_IDS={text!r} needs SYNESTHETE_BOT_SHARD_COUNT: every "
                         "process must agree on the total number of shards")
    if ids and (ids[0] < 0 or ids[-1] >= count):
        raise ValueError(f"setting SYNESTHETE_BOT_SHARD_IDS={text!r}: shard numbers go from 0 to "
                         f"SYNESTHETE_BOT_SHARD_COUNT-1 ({count - 1})")
    return (count or None), (ids or None)


def nothing_more(prev: Answer) -> NothingMoreError:
    """The end of the pages, in words that fit what was paged (a clip, a seed, an artist)."""
    tail = "; pick one of the songs above to explore from it."
    if prev.seed is None or prev.kind == "audio":
        return NothingMoreError("no further results")
    if prev.kind == "artist":
        return NothingMoreError("no further songs by the artist", user_message=f"That's all I have by "
                                f"{discord.utils.escape_markdown(prev.seed.artist)}{tail}")
    within = " within those filters" if prev.filters is not None else ""
    return NothingMoreError("no further similar songs", user_message=f"That's all I have like "
                            f"{discord.utils.escape_markdown(prev.seed.title)}{within}{tail}")


def make_intents(settings: Settings) -> discord.Intents:
    """The minimum: guilds + messages; the privileged message content only when watching channels."""
    intents = discord.Intents.none()
    intents.guilds = True  # channel/guild cache, needed for slash commands in guilds
    intents.guild_messages = True  # message events in servers (attachments need content, below)
    intents.dm_messages = True  # DMs always carry content and attachments
    # Mentions and DMs come with content without the privileged intent; any other message needs it.
    intents.message_content = settings.bot_watch_mode in ("all", "allowlist")
    return intents


def new_request_id() -> str:
    """12 hex digits: the reference in log lines and sentences, and an answer's id.  Answers are
    looked up by id for days (their buttons), so 48 bits: a clash is unlikely among millions."""
    return secrets.token_hex(6)


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error: SynestheteError | None = None
    request_id: str = ""


class Tree(app_commands.CommandTree):
    """Last line of defence for slash commands: whatever escaped a cog is one sentence + a log line."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        rid = new_request_id()
        cmd = interaction.command.name if interaction.command else "?"
        log.error("request %s: command %s failed outside the request path", rid, cmd, exc_info=error)
        text = error_text(SynestheteError.user_message, rid)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("request %s: could not send the error sentence", rid)


class SynestheteBotBase(commands.bot.BotBase):
    """Everything the bot does, whichever gateway base it runs on (see :func:`create_bot`)."""

    def __init__(self, settings: Settings, service: SynestheteAPI, *, intents: discord.Intents | None = None,
                 **kw: Any) -> None:
        check_bot_settings(settings)
        super().__init__(
            # no prefix commands exist (on_message below never runs them); when_mentioned keeps
            # discord.py from warning that a prefix needs the message content intent
            command_prefix=commands.when_mentioned, intents=intents or make_intents(settings), help_command=None,
            tree_cls=Tree,
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=False),
            **kw,
        )
        self.settings = settings
        self.service = service
        self.metrics = Metrics()
        self.cooldowns = UserCooldowns(settings.bot_user_cooldown_rate, settings.bot_user_cooldown_per_s)
        self.guild_slots = GuildSlots(settings.bot_guild_concurrency, self.metrics.typical_latency)
        self.attachment_limit = effective_limit(settings.bot_max_attachment_bytes, settings.max_upload_bytes)
        self.http_session: aiohttp.ClientSession | None = None
        self.feedback: FeedbackStore | None = None
        self.metrics_server: MetricsServer | None = None
        self.answers_given = 0
        #: the latest answers, for their buttons without a database read (and if a write failed)
        self.recent: OrderedDict[str, Answer] = OrderedDict()

    # ---- lifecycle -------------------------------------------------------------

    async def setup_hook(self) -> None:
        from .views import DYNAMIC_ITEMS

        self.http_session = aiohttp.ClientSession(headers={"User-Agent": "Synesthete-bot (+discord.py)"})
        self.feedback = await asyncio.to_thread(FeedbackStore, self.settings.resolved_feedback_db_path)
        # every button under an answer, whenever it was posted: a press finds its answer by the id
        # in its custom_id (bot.views), so buttons keep working across restarts and processes
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self.settings.bot_metrics_port >= 0:
            self.metrics_server = MetricsServer(self.metrics, self.settings.bot_metrics_host,
                                                self.settings.bot_metrics_port, self.health_check)
            try:
                await self.metrics_server.start()
            except OSError as exc:  # a busy port must not keep the bot offline
                log.error("metrics endpoint not started on %s:%s: %s", self.settings.bot_metrics_host,
                          self.settings.bot_metrics_port, exc)
                self.metrics_server = None
        await self.sync_commands()

    async def close(self) -> None:
        try:
            if self.metrics_server is not None:
                await self.metrics_server.stop()
            if self.http_session is not None:
                await self.http_session.close()
            if self.feedback is not None:
                self.feedback.close()
        finally:
            await super().close()

    async def on_ready(self) -> None:
        log.info("logged in as %s (id %s) in %d server(s); shards %s of %s; watch mode %s", self.user,
                 getattr(self.user, "id", "?"), len(self.guilds), self.running_shards(), self.shard_count or 1,
                 self.settings.bot_watch_mode)

    async def on_message(self, message: discord.Message, /) -> None:
        """Nothing: the bot has no prefix commands.  The default would parse every message that
        mentions the bot ("@Synesthete what's this song?", the documented way to send audio in
        mention mode) as a command and log CommandNotFound as an ERROR; audio in messages is the
        Listen cog's own listener, which runs regardless."""

    def health(self) -> dict:
        ready = self.is_ready()
        return {"ok": bool(ready and not self.is_closed()), "discord_ready": bool(ready),
                "in_flight": self.metrics.in_flight_now, "model_id": self.service.model_id,
                "shard_count": self.shard_count or 1, "shards": self.running_shards()}

    async def health_check(self) -> dict:
        """``/healthz``'s answer: :meth:`health`, plus the store when this process owns the engine.

        Owning (no ``SYNESTHETE_ENGINE_URL``: the bot opened the index itself): a store that does not
        answer makes it not ok, within the engine's short health deadline.  A bot that asks
        another engine (``EngineClient``) does not check that engine's store: an outage there
        would make an orchestrator restart-loop a bot that can do nothing about it (issue 30).
        """
        from engine.client import EngineClient
        from engine.service import HEALTH_TIMEOUT_S

        state = self.health()
        if isinstance(self.service, EngineClient):  # another process owns the engine (and its store)
            return state
        engine_health = self.service.health

        try:
            engine = await asyncio.wait_for(asyncio.to_thread(engine_health), timeout=HEALTH_TIMEOUT_S + 0.5)
        except TimeoutError:
            engine = {"ok": False, "store": f"no answer within {HEALTH_TIMEOUT_S + 0.5:g} s"}
        except Exception as exc:  # noqa: BLE001 - health says "not ok", never crashes
            log.warning("health check failed: %s", exc)
            engine = {"ok": False, "store": str(getattr(exc, "user_message", exc))}
        state["store"] = engine.get("store", "?")
        state["ok"] = bool(state["ok"] and engine.get("ok"))
        return state

    def running_shards(self) -> list[int]:
        """The shards this process runs (a single-connection bot is shard 0, or its ``shard_id``)."""
        return [self.shard_id or 0]

    def command_signature(self) -> str:
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()), key=lambda d: (d.get("type", 1),
                                                                                                   d["name"]))
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    async def sync_commands(self) -> str:
        """Guild sync (instant) for development, global sync (up to an hour to show) for production.

        Global sync is rate-limited by Discord, so in ``auto`` mode it happens only
        when the commands changed since the last sync (a hash in the data dir).
        """
        mode = self.settings.bot_sync_commands
        if mode == "never":
            return "skipped"
        if self.settings.bot_dev_guild_id:
            guild = discord.Object(id=self.settings.bot_dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to development guild %s", len(synced), self.settings.bot_dev_guild_id)
            return "guild"
        marker = self.settings.data_dir / "bot_commands.sha256"
        sig = self.command_signature()
        if mode == "auto" and marker.is_file() and marker.read_text().strip() == sig:
            log.info("slash commands unchanged since the last global sync; not syncing")
            return "unchanged"
        synced = await self.tree.sync()
        atomic_write_text(marker, sig)
        log.info("synced %d commands globally (they can take up to an hour to appear)", len(synced))
        return "global"

    # ---- the one request path ---------------------------------------------------

    async def serve(self, flow: str, *, user_id: int | None, guild_id: int | None,
                    work: Callable[[str], Awaitable[Any]], on_error: Callable[[str], Awaitable[Any]],
                    cooldown: bool = True, quiet_ok: bool = False) -> Outcome:
        """Run one request: guild cap, user cooldown, metrics, and one friendly sentence on failure.

        ``work(request_id)`` does the job and sends the answer; ``on_error(text)`` sends the
        sentence.  ``quiet_ok``: a repeated cooldown refusal is not answered (messages only:
        an interaction must always get its follow-up).  Never raises (except cancellation).
        """
        rid = new_request_id()
        t0 = time.perf_counter()
        acquired = False
        try:
            self.guild_slots.acquire(guild_id)
            acquired = True
            if cooldown and user_id is not None:
                self.cooldowns.hit(user_id)
            with self.metrics.in_flight.track_inprogress():
                value = await work(rid)
            self.metrics.observe(flow, "ok", time.perf_counter() - t0)
            log.info("request %s flow=%s user=%s guild=%s ok in %.2fs", rid, flow, user_id, guild_id,
                     time.perf_counter() - t0)
            return Outcome(True, value, None, rid)
        except SynestheteError as exc:
            err = exc
            # a person's own mistake (a link we can't use, a song we lack) is not our problem to warn of
            level = (logging.INFO if err.kind in ("cooldown", "guild_busy", "no_more", "not_found", "not_a_track_link")
                     else logging.WARNING)
            log.log(level, "request %s flow=%s user=%s guild=%s failed [%s]: %s", rid, flow, user_id, guild_id,
                    err.kind, err, exc_info=err.kind == "internal")
        except Exception as exc:
            err = SynestheteError(f"{type(exc).__name__}: {exc}")
            log.exception("request %s flow=%s user=%s guild=%s failed unexpectedly", rid, flow, user_id, guild_id)
        finally:
            if acquired:
                self.guild_slots.release(guild_id)
        self.metrics.observe(flow, "error", time.perf_counter() - t0, err.kind)
        if quiet_ok and getattr(err, "quiet", False):
            return Outcome(False, None, err, rid)
        try:
            await on_error(error_text(err.user_message, rid))
        except Exception:
            log.warning("request %s: could not tell the user about the failure", rid, exc_info=True)
        return Outcome(False, None, err, rid)

    # ---- engine calls that make answers -------------------------------------------

    async def fetch_attachment(self, att: discord.Attachment) -> bytes:
        check_size(att, self.attachment_limit)
        assert self.http_session is not None, "setup_hook has not run"
        return await download(self.http_session, att.url, max_bytes=self.attachment_limit,
                              timeout_s=self.settings.bot_download_timeout_s)

    async def answer_audio(self, att: discord.Attachment, rid: str, flow: str, **who: int | None) -> Answer:
        t0 = time.perf_counter()
        data = await self.fetch_attachment(att)
        rec = await self.service.arecommend(data, self.settings.top_k * AUDIO_PAGES)
        query = (f"voice message ({att.duration:.0f} s)" if att.is_voice_message() and att.duration
                 else f"file {att.filename}")
        answer = Answer.from_recommendation(rec, answer_id=rid, flow=flow, query=query, kind="audio",
                                            page_size=self.settings.top_k, seconds=time.perf_counter() - t0, **who)
        await self.record(answer)
        return answer

    async def answer_similar(self, track_id: str, rid: str, flow: str, describe: Callable[[Track], str], *,
                             same_artist: bool = False, filters: TrackFilter | None = None,
                             **who: int | None) -> Answer:
        """Tracks like a catalogue track (within ``filters``); ``same_artist``: more by its own artist instead.

        ``describe(seed)`` is the answer's human query (footer, feedback export): made from
        the seed the engine returns, so a track picked by id reads as its title.
        """
        t0 = time.perf_counter()
        active = filters if filters is not None and filters.active else None
        if same_artist:
            rec = await self.service.amore_by_artist(track_id, self.settings.top_k)
        else:
            rec = await self.service.asimilar_to(track_id, self.settings.top_k, filters=active)
        query = describe(rec.seed) if rec.seed is not None else track_id
        answer = Answer.from_recommendation(rec, answer_id=rid, flow=flow, query=query, page_size=self.settings.top_k,
                                            kind="artist" if same_artist else "similar", filters=active,
                                            seconds=time.perf_counter() - t0, **who)
        await self.record(answer)
        return answer

    async def answer_radio(self, track: str, rid: str, flow: str, n: int | None = None) -> Any:
        """A radio from a catalogue track (an id, or a pasted link: the engine reads it); the
        engine's ``Recommendation`` (``note`` set when fewer than ``n`` qualify)."""
        t0 = time.perf_counter()
        rec = await self.service.aradio(track, n)
        log.info("request %s flow=%s radio of %d tracks in %.2fs", rid, flow, len(rec.results),
                 time.perf_counter() - t0)
        return rec

    async def resolve_track(self, value: str) -> str:
        """An autocomplete value (``id:<track_id>``), a pasted Spotify link or free text -> a track id.

        A link is returned as pasted: the engine applies the link rules (``engine.links``: the
        track it names, or one sentence for an album, a short link or a song it lacks).
        """
        from engine.links import find_spotify_link

        value = value.strip()
        if value.startswith("id:"):
            return value[3:]
        if find_spotify_link(value) is not None:
            return value
        hits = await self.service.asearch_tracks(value, 1) if value else []
        if not hits:
            shown = value if len(value) <= 80 else value[:79] + "…"
            raise TrackNotFoundError(f"no catalogue match for {value!r}", user_message=(
                f"I couldn't find “{discord.utils.escape_markdown(shown)}” in the catalogue; "
                "pick one of the suggestions as you type."))
        return hits[0].track.track_id

    async def next_page(self, prev: Answer, rid: str, **who: int | None) -> Answer:
        """The next five after ``prev``: from its pool, else by paging the engine the way ``prev``
        was made (tracks like the seed within its filters, or more by the seed's artist)."""
        k = self.settings.top_k
        t0 = time.perf_counter()
        offset = prev.offset + len(prev.results)
        if prev.pool:
            results, pool = prev.pool[:k], prev.pool[k:]
        elif prev.seed is not None:
            if prev.kind == "artist":
                rec = await self.service.amore_by_artist(prev.seed.track_id, k, offset)
            else:
                rec = await self.service.asimilar_to(prev.seed.track_id, k, offset, filters=prev.filters)
            results, pool = rec.results, []
        elif not prev.pool_kept:
            raise AnswerGoneError(f"answer {prev.answer_id} was stored without its pool and has no seed")
        else:
            results, pool = [], []
        if not results:
            raise nothing_more(prev)
        answer = dataclasses.replace(prev, answer_id=rid, flow="more", results=results, offset=offset, pool=pool,
                                     seconds=time.perf_counter() - t0, created_at=time.time(), pool_kept=True,
                                     **who)
        await self.record(answer)
        return answer

    async def record(self, answer: Answer) -> None:
        """Keep ``answer`` for its buttons (in memory, and in the feedback store for restarts and evaluation)."""
        self.answers_given += 1
        self.recent[answer.answer_id] = answer
        while len(self.recent) > RECENT_ANSWERS:
            self.recent.popitem(last=False)
        if self.feedback is None:
            return
        try:
            await asyncio.to_thread(self.feedback.record_answer, **answer.record())
        except Exception:
            log.warning("could not store answer %s for feedback", answer.answer_id, exc_info=True)

    async def find_answer(self, answer_id: str) -> Answer:
        """The answer a button belongs to, from memory or the feedback store.

        Raises :class:`AnswerGoneError` when it is not stored, :class:`AnswerExpiredError`
        when it is older than ``bot_answer_ttl_s`` or another model made it (its pages would
        not line up with this model's ranking).
        """
        answer = self.recent.get(answer_id)
        if answer is None and self.feedback is not None:
            row = await asyncio.wait_for(asyncio.to_thread(self.feedback.get_answer, answer_id),
                                         ANSWER_LOOKUP_TIMEOUT_S)
            answer = Answer.from_record(row) if row is not None else None
        if answer is None:
            raise AnswerGoneError(f"answer {answer_id} is not stored")
        ttl = self.settings.bot_answer_ttl_s
        age = time.time() - answer.created_at
        if ttl > 0 and age > ttl:
            raise AnswerExpiredError(f"answer {answer_id} is {age / 3600:.1f} h old (expiry {ttl / 3600:.1f} h)")
        if answer.model_id != self.service.model_id:
            raise AnswerExpiredError(f"answer {answer_id} was made by model {answer.model_id}, "
                                     f"now {self.service.model_id}")
        return answer

    async def vote(self, answer_id: str, user_id: int, vote: int) -> None:
        self.metrics.vote(vote > 0)
        if self.feedback is not None:
            await asyncio.to_thread(self.feedback.vote, answer_id, user_id, vote)


class SynestheteBot(SynestheteBotBase, commands.Bot):
    """One gateway connection: ``SYNESTHETE_BOT_SHARD_COUNT=1``, and the tests (dpytest drives no sharded client)."""


class ShardedSynestheteBot(SynestheteBotBase, commands.AutoShardedBot):
    """Discord's recommended number of shards, or ``bot_shard_count`` of which this process runs
    ``bot_shard_ids`` (all when empty): several processes share a big deployment."""

    def __init__(self, settings: Settings, service: SynestheteAPI, **kw: Any) -> None:
        shard_count, shard_ids = shard_config(settings)
        super().__init__(settings, service, shard_count=shard_count, shard_ids=shard_ids, **kw)

    def running_shards(self) -> list[int]:
        return list(self.shard_ids) if self.shard_ids is not None else sorted(self.shards)


def create_bot(settings: Settings, service: SynestheteAPI, **kw: Any) -> SynestheteBotBase:
    """The bot the settings ask for: sharded unless ``bot_shard_count`` is 1 (one connection, no ids)."""
    shard_count, shard_ids = shard_config(settings)  # a bad combination stops here, with its sentence
    if shard_count == 1 and shard_ids is None:
        return SynestheteBot(settings, service, **kw)
    return ShardedSynestheteBot(settings, service, **kw)
