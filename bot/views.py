"""The buttons under an answer: More like this, More by this artist, Radio, explore from one result, 👍 / 👎.

Anyone in the channel may use them (an answer is a shared thing); each click is
its own request through :meth:`SynestheteBotBase.serve`, so cooldowns and the guild
cap apply, and feedback is stored per user (a second click replaces the first).

Why every item is a ``discord.ui.DynamicItem``: a view kept in memory dies with
the process, and Discord then shows "This interaction failed" for every button
posted before, with nothing in our log.  Here the ``custom_id`` carries the
answer's id (``syn:more:<id>``, ``syn:vote:up:<id>``, …); the bot registers the
classes once (``add_dynamic_items`` in ``setup_hook``) and discord.py builds the
item from the message whenever a press arrives, in whichever process (or shard)
runs then.  The press reads its answer back (:meth:`SynestheteBotBase.find_answer`)
before acknowledging, so an expired or unknown answer still gets its sentence,
and its buttons are disabled on the message.  The view itself keeps no state and
no timer (``timeout=None``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

import discord

from engine.errors import SynestheteError

from .answers import Answer
from .client import new_request_id
from .embeds import answer_embed, clip, error_text
from .errors import AnswerExpiredError, AnswerGoneError

if TYPE_CHECKING:
    from .client import SynestheteBotBase

log = logging.getLogger(__name__)

#: the answer id part of every custom_id (new_request_id: 12 hex digits; 8 before)
ANSWER_ID = r"(?P<answer_id>[0-9a-f]{8,32})"
#: a discord.py default custom_id (os.urandom(16).hex()): a button posted before buttons carried ids
LEGACY_ID = r"[0-9a-f]{32}"

ANSWER_GONE_OLD_BUTTONS = "These buttons are from an older version of me; send the clip again (or use /similar)."


def who(interaction: discord.Interaction) -> dict:
    return {"user_id": interaction.user.id, "guild_id": interaction.guild_id, "channel_id": interaction.channel_id}


def bot_of(interaction: discord.Interaction) -> SynestheteBotBase:
    return cast("SynestheteBotBase", interaction.client)


def disable_all(view: discord.ui.View) -> None:
    """Grey out every item (a DynamicItem renders its wrapped item, so that is the one to change)."""
    for child in view.walk_children():
        target = getattr(child, "item", child)
        if hasattr(target, "disabled"):
            target.disabled = True


async def send_answer(interaction: discord.Interaction, make: Awaitable[Answer]) -> Answer:
    """Await ``make`` and post the answer, with its buttons, as the interaction's follow-up."""
    answer = await make
    await interaction.followup.send(embed=answer_embed(answer), view=ResultView(answer), wait=True)
    return answer


async def refuse(interaction: discord.Interaction, item: discord.ui.Item[Any], flow: str, err: SynestheteError,
                 t0: float, *, disable: bool) -> None:
    """Tell the presser why the button does nothing (never silence), count and log it, and when
    the answer will never work again, disable the buttons on the message (so nobody tries again)."""
    bot = bot_of(interaction)
    rid = new_request_id()
    bot.metrics.observe(flow, "error", time.perf_counter() - t0, err.kind)
    log.info("request %s flow=%s user=%s guild=%s refused [%s]: %s", rid, flow, interaction.user.id,
             interaction.guild_id, err.kind, err)
    text = error_text(err.user_message, rid)
    try:
        view = item.view
        if disable and view is not None:
            disable_all(view)
            await interaction.response.edit_message(view=view)
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("request %s: could not tell the user about the refusal", rid, exc_info=True)


async def open_answer(interaction: discord.Interaction, item: AnswerButton, flow: str) -> Answer | None:
    """The answer behind a pressed button, or None once the presser has been told why not.

    Runs before the interaction is acknowledged: a memory or SQLite read of a few ms
    (bounded well inside Discord's 3 s), so the refusal can still edit the message.
    """
    t0 = time.perf_counter()
    try:
        return await bot_of(interaction).find_answer(item.answer_id)
    except (AnswerGoneError, AnswerExpiredError) as exc:
        await refuse(interaction, item, flow, exc, t0, disable=True)
    except Exception as exc:
        log.warning("reading answer %s back failed", item.answer_id, exc_info=True)
        await refuse(interaction, item, flow, SynestheteError(f"{type(exc).__name__}: {exc}"), t0, disable=False)
    return None


class MoreButton(discord.ui.DynamicItem[discord.ui.Button], template=r"syn:more:" + ANSWER_ID):
    """The next five results, paged the way the answer was made (bot.client.SynestheteBotBase.next_page)."""

    def __init__(self, answer_id: str, *, enabled: bool = True, item: discord.ui.Button | None = None) -> None:
        super().__init__(item or discord.ui.Button(label="More like this", style=discord.ButtonStyle.primary,
                                                   emoji="🔁", disabled=not enabled, row=0,
                                                   custom_id=f"syn:more:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> MoreButton:
        return cls(match["answer_id"], item=cast(discord.ui.Button, item))

    async def callback(self, interaction: discord.Interaction) -> None:
        prev = await open_answer(interaction, self, "more")
        if prev is None:
            return
        bot = bot_of(interaction)
        await interaction.response.defer(thinking=True)
        await bot.serve(
            "more", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: send_answer(interaction, bot.next_page(prev, rid, **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class ArtistButton(discord.ui.DynamicItem[discord.ui.Button], template=r"syn:artist:" + ANSWER_ID):
    """More by the seed's (or recognised song's) own artist: the opt-out of the discovery rule."""

    def __init__(self, answer_id: str, *, artist: str = "", item: discord.ui.Button | None = None) -> None:
        super().__init__(item or discord.ui.Button(label=clip(f"More by {artist}", 80),
                                                   style=discord.ButtonStyle.secondary, emoji="🎤", row=0,
                                                   custom_id=f"syn:artist:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ArtistButton:
        return cls(match["answer_id"], item=cast(discord.ui.Button, item))

    async def callback(self, interaction: discord.Interaction) -> None:
        prev = await open_answer(interaction, self, "artist")
        if prev is None:
            return
        if prev.seed is None:  # never drawn without a seed; a hand-made custom_id can still say so
            await refuse(interaction, self, "artist", AnswerGoneError(f"answer {self.answer_id} has no seed"),
                         time.perf_counter(), disable=False)
            return
        bot, seed = bot_of(interaction), prev.seed
        await interaction.response.defer(thinking=True)
        await bot.serve(
            "artist", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: send_answer(interaction, bot.answer_similar(
                seed.track_id, rid, "artist", lambda s: f"more by {s.artist}", same_artist=True,
                **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class RadioButton(discord.ui.DynamicItem[discord.ui.Button], template=r"syn:radio:" + ANSWER_ID):
    """A radio playlist from the answer: from its seed or the recognised song, else its nearest
    track (a recording of no catalogue song has no track to start from; its best match stands in)."""

    def __init__(self, answer_id: str, *, item: discord.ui.Button | None = None) -> None:
        super().__init__(item or discord.ui.Button(label="Radio", style=discord.ButtonStyle.secondary, emoji="📻",
                                                   row=0, custom_id=f"syn:radio:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RadioButton:
        return cls(match["answer_id"], item=cast(discord.ui.Button, item))

    async def callback(self, interaction: discord.Interaction) -> None:
        prev = await open_answer(interaction, self, "radio")
        if prev is None:
            return
        start = prev.seed or (prev.results[0].track if prev.results else None)
        if start is None:
            await refuse(interaction, self, "radio", AnswerGoneError(f"answer {self.answer_id} has no track",
                                                                     user_message="This answer has no song to start "
                                                                                  "a radio from."),
                         time.perf_counter(), disable=False)
            return
        bot = bot_of(interaction)
        await interaction.response.defer(thinking=True)

        async def work(rid: str) -> None:
            from .embeds import radio_embed, radio_files

            rec = await bot.answer_radio(start.track_id, rid, "radio")
            await interaction.followup.send(embed=radio_embed(rec, f"ref {rid}"), files=radio_files(rec), wait=True)

        await bot.serve("radio", user_id=interaction.user.id, guild_id=interaction.guild_id, work=work,
                        on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class VoteButton(discord.ui.DynamicItem[discord.ui.Button],
                 template=r"syn:vote:(?P<vote>up|down):" + ANSWER_ID):
    """👍 / 👎 on the answer, stored per user for evaluation (bot.feedback)."""

    def __init__(self, answer_id: str, vote: int, *, item: discord.ui.Button | None = None) -> None:
        name = "up" if vote > 0 else "down"
        super().__init__(item or discord.ui.Button(emoji="👍" if vote > 0 else "👎", row=0,
                                                   style=discord.ButtonStyle.secondary,
                                                   custom_id=f"syn:vote:{name}:{answer_id}"))
        self.answer_id = answer_id
        self.vote = 1 if vote > 0 else -1

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> VoteButton:
        return cls(match["answer_id"], 1 if match["vote"] == "up" else -1, item=cast(discord.ui.Button, item))

    async def callback(self, interaction: discord.Interaction) -> None:
        if await open_answer(interaction, self, "vote") is None:
            return
        try:
            await bot_of(interaction).vote(self.answer_id, interaction.user.id, self.vote)
            text = "Thanks, noted! 👍" if self.vote > 0 else "Thanks, noted — that helps us improve. 👎"
        except Exception:
            log.warning("could not store the vote on %s", self.answer_id, exc_info=True)
            text = "Sorry, I couldn't save that vote; please try again later."
        await interaction.response.send_message(text, ephemeral=True)


class ReseedSelect(discord.ui.DynamicItem[discord.ui.Select], template=r"syn:reseed:" + ANSWER_ID):
    """Explore from one of the results: its options' values are the tracks' ids."""

    def __init__(self, answer_id: str, *, answer: Answer | None = None, item: discord.ui.Select | None = None) -> None:
        super().__init__(item or discord.ui.Select(placeholder="Explore from one of these…", row=1, min_values=1,
                                                   max_values=1, options=reseed_options(answer),
                                                   custom_id=f"syn:reseed:{answer_id}"))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ReseedSelect:
        return cls(match["answer_id"], item=cast(discord.ui.Select, item))

    async def callback(self, interaction: discord.Interaction) -> None:
        if await open_answer(interaction, self, "reseed") is None:
            return
        bot, track_id = bot_of(interaction), self.item.values[0]
        await interaction.response.defer(thinking=True)
        await bot.serve(
            "reseed", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: send_answer(interaction, bot.answer_similar(
                track_id, rid, "reseed", lambda s: f"like {s.title}", **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


def reseed_options(answer: Answer | None) -> list[discord.SelectOption]:
    """One option per distinct result (at most 25, Discord's limit); the value is the track id."""
    options: list[discord.SelectOption] = []
    seen: set[str] = set()
    for i, r in enumerate(answer.results if answer is not None else ()):
        if r.track.track_id in seen or len(r.track.track_id) > 100:
            continue
        seen.add(r.track.track_id)
        genre = ", ".join(r.track.genres[:2])
        options.append(discord.SelectOption(
            label=clip(f"{answer.offset + i + 1}. {r.track.title}", 100), value=r.track.track_id,
            description=clip(" · ".join(x for x in (genre, r.reason or f"{r.similarity * 100:.0f}% similar")
                                        if x), 100)))
    return options[:25]


class LegacyItem(discord.ui.DynamicItem[discord.ui.Item], template=LEGACY_ID):
    """A button or menu under an answer posted before buttons carried the answer id.

    Those were in-memory views, gone since; without this a press fails silently for ever.
    Only answers are claimed (our own message with an answer's ``ref`` footer): another view
    with discord.py's default ids would be answered by its own live view.
    """

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> LegacyItem:
        return cls(item)

    async def callback(self, interaction: discord.Interaction) -> None:
        msg, me = interaction.message, interaction.client.user
        if msg is None or me is None or msg.author.id != me.id or not any(
                " · ref " in (e.footer.text or "") for e in msg.embeds):
            return
        await refuse(interaction, self, "legacy", AnswerGoneError("a button from before persistent buttons",
                                                                  user_message=ANSWER_GONE_OLD_BUTTONS),
                     time.perf_counter(), disable=True)


class ResultView(discord.ui.View):
    """The items under one answer; every one finds the answer again from its custom_id."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(timeout=None)
        self.answer = answer
        aid = answer.answer_id
        self.more = MoreButton(aid, enabled=answer.has_more)
        self.up, self.down = VoteButton(aid, 1), VoteButton(aid, -1)
        self.add_item(self.more)
        self.artist: ArtistButton | None = None
        if answer.seed is not None and answer.seed.artist and answer.kind != "artist":
            self.artist = ArtistButton(aid, artist=answer.seed.artist)
            self.add_item(self.artist)
        self.radio = RadioButton(aid) if answer.seed is not None or answer.results else None
        if self.radio is not None:
            self.add_item(self.radio)
        self.add_item(self.up)
        self.add_item(self.down)
        self.reseed: ReseedSelect | None = None
        if answer.results:
            self.reseed = ReseedSelect(aid, answer=answer)
            self.add_item(self.reseed)


#: an item under an answer that knows the answer's id
AnswerButton = MoreButton | ArtistButton | RadioButton | VoteButton | ReseedSelect

#: registered by the bot in setup_hook (``add_dynamic_items``)
DYNAMIC_ITEMS = (MoreButton, ArtistButton, RadioButton, VoteButton, ReseedSelect, LegacyItem)
