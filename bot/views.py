"""The buttons under an answer: More like this, More by this artist, explore from one result, 👍 / 👎.

Anyone in the channel may use them (an answer is a shared thing); each click is
its own request through :meth:`SynestheteBot.serve`, so cooldowns and the guild
cap apply, and feedback is stored per user (a second click replaces the first).
The view lives in memory for ``TIMEOUT_S``; after that the buttons are disabled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from .answers import Answer
from .embeds import answer_embed, clip

if TYPE_CHECKING:
    from .client import SynestheteBot

log = logging.getLogger(__name__)

TIMEOUT_S = 30 * 60


def who(interaction: discord.Interaction) -> dict:
    return {"user_id": interaction.user.id, "guild_id": interaction.guild_id, "channel_id": interaction.channel_id}


class MoreButton(discord.ui.Button["ResultView"]):
    def __init__(self, enabled: bool) -> None:
        super().__init__(label="More like this", style=discord.ButtonStyle.primary, emoji="🔁", disabled=not enabled,
                         row=0)

    async def callback(self, interaction: discord.Interaction) -> None:
        view = self.view
        assert view is not None
        await interaction.response.defer(thinking=True)
        await view.bot.serve(
            "more", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: view.send_answer(interaction, view.bot.next_page(view.answer, rid, **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class ReseedSelect(discord.ui.Select["ResultView"]):
    def __init__(self, answer: Answer) -> None:
        options = []
        seen: set[str] = set()
        for i, r in enumerate(answer.results):
            if r.track.track_id in seen or len(r.track.track_id) > 100:
                continue
            seen.add(r.track.track_id)
            genre = ", ".join(r.track.genres[:2])
            options.append(discord.SelectOption(
                label=clip(f"{answer.offset + i + 1}. {r.track.title}", 100), value=r.track.track_id,
                description=clip(" · ".join(x for x in (genre, r.reason or f"{r.similarity * 100:.0f}% similar")
                                            if x), 100)))
        super().__init__(placeholder="Explore from one of these…", options=options[:25], min_values=1, max_values=1,
                         row=1)

    async def callback(self, interaction: discord.Interaction) -> None:
        view = self.view
        assert view is not None
        track_id = self.values[0]
        title = next((r.track.title for r in view.answer.results if r.track.track_id == track_id), track_id)
        await interaction.response.defer(thinking=True)
        await view.bot.serve(
            "reseed", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: view.send_answer(interaction, view.bot.answer_similar(
                track_id, rid, "reseed", f"like {title}", **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class ArtistButton(discord.ui.Button["ResultView"]):
    """More by the seed's (or recognised song's) own artist: the opt-out of the discovery rule."""

    def __init__(self, seed) -> None:
        super().__init__(label=clip(f"More by {seed.artist}", 80), style=discord.ButtonStyle.secondary, emoji="🎤",
                         row=0)
        self.seed = seed

    async def callback(self, interaction: discord.Interaction) -> None:
        view = self.view
        assert view is not None
        seed = self.seed
        await interaction.response.defer(thinking=True)
        await view.bot.serve(
            "artist", user_id=interaction.user.id, guild_id=interaction.guild_id,
            work=lambda rid: view.send_answer(interaction, view.bot.answer_similar(
                seed.track_id, rid, "artist", f"more by {seed.artist}", same_artist=True, **who(interaction))),
            on_error=lambda text: interaction.followup.send(text, ephemeral=True))


class VoteButton(discord.ui.Button["ResultView"]):
    def __init__(self, vote: int) -> None:
        super().__init__(emoji="👍" if vote > 0 else "👎", style=discord.ButtonStyle.secondary, row=0)
        self.vote = vote

    async def callback(self, interaction: discord.Interaction) -> None:
        view = self.view
        assert view is not None
        try:
            await view.bot.vote(view.answer.answer_id, interaction.user.id, self.vote)
            text = "Thanks, noted! 👍" if self.vote > 0 else "Thanks, noted — that helps us improve. 👎"
        except Exception:
            log.warning("could not store the vote on %s", view.answer.answer_id, exc_info=True)
            text = "Sorry, I couldn't save that vote; please try again later."
        await interaction.response.send_message(text, ephemeral=True)


class ResultView(discord.ui.View):
    def __init__(self, bot: SynestheteBot, answer: Answer, *, timeout: float | None = TIMEOUT_S) -> None:
        super().__init__(timeout=timeout)
        self.bot = bot
        self.answer = answer
        self.message: discord.Message | discord.WebhookMessage | None = None
        self.more = MoreButton(answer.has_more)
        self.up, self.down = VoteButton(1), VoteButton(-1)
        self.add_item(self.more)
        self.artist: ArtistButton | None = None
        if answer.seed is not None and answer.seed.artist and answer.flow != "artist":
            self.artist = ArtistButton(answer.seed)
            self.add_item(self.artist)
        self.add_item(self.up)
        self.add_item(self.down)
        self.reseed: ReseedSelect | None = None
        if answer.results:
            self.reseed = ReseedSelect(answer)
            self.add_item(self.reseed)

    async def send_answer(self, interaction: discord.Interaction, make) -> Answer:
        answer = await make
        view = ResultView(self.bot, answer)
        view.message = await interaction.followup.send(embed=answer_embed(answer), view=view, wait=True)
        return answer

    async def on_timeout(self) -> None:
        for item in self.children:
            item.disabled = True  # type: ignore[attr-defined]
        if self.message is not None:
            try:
                await self.message.edit(view=self)
            except discord.HTTPException:
                pass

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item) -> None:
        log.exception("button %s failed", getattr(item, "label", item), exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send("Something went wrong on our side; please try again later.",
                                                ephemeral=True)
            else:
                await interaction.response.send_message("Something went wrong on our side; please try again later.",
                                                        ephemeral=True)
        except discord.HTTPException:
            pass
