"""``/similar track:<name>`` with autocomplete over the whole catalogue.

Autocomplete must answer within Discord's 3 s; the engine's name search is an
FTS5 trigram query of a few ms (on a thread, never on the loop), and we give it
at most ``AUTOCOMPLETE_BUDGET_S`` before answering with nothing rather than late.
A choice's value is ``id:<track_id>``, so the command gets the exact track;
free text (no choice picked) is searched and the best hit is used.  The value is
internal: the answer shows (and stores) the track's title instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from engine.catalogue import Track
from engine.errors import SynestheteError
from engine.filters import TrackFilter, make_filter
from engine.links import find_spotify_link

from ..embeds import answer_embed, clip, radio_embed, radio_files
from ..views import ResultView, who

if TYPE_CHECKING:
    from ..client import SynestheteBotBase

log = logging.getLogger(__name__)

AUTOCOMPLETE_BUDGET_S = 2.0


def human_query(typed: str, filters: TrackFilter) -> Callable[[Track], str]:
    """What the person asked, for the footer and the feedback export: the track's title when it
    was picked from the autocomplete (the value is an internal ``id:…``), else the words typed;
    then the filters."""
    typed = typed.strip()
    suffix = f" ({filters.describe()})" if filters.active else ""

    def describe(seed: Track) -> str:
        # a pasted link reads as the track it named, so the person sees what was understood
        asked = seed.title if typed.startswith("id:") or find_spotify_link(typed) else typed
        return f"/similar {clip(asked, 80)}{suffix}"

    return describe


class Search(commands.Cog):
    def __init__(self, bot: SynestheteBotBase) -> None:
        self.bot = bot

    @app_commands.command(name="similar")
    @app_commands.describe(track="Start typing a title or an artist and pick a track, or paste a Spotify track link",
                           genre="Only these genres (comma-separated)", bpm="Tempo range, e.g. 100-130",
                           instrumental="Only tracks without vocals", popularity="Spotify popularity range, e.g. 20-80")
    async def similar(self, interaction: discord.Interaction, track: str, genre: str | None = None,
                      bpm: str | None = None, instrumental: bool = False, popularity: str | None = None) -> None:
        """Five songs that sound like a track from the catalogue."""
        await interaction.response.defer(thinking=True)

        async def work(rid: str) -> None:
            filters = make_filter(genre or "", bpm, instrumental, popularity)  # a bad one: one sentence, no search
            track_id = await self.bot.resolve_track(track)
            answer = await self.bot.answer_similar(track_id, rid, "similar", human_query(track, filters),
                                                   filters=filters, **who(interaction))
            await interaction.followup.send(embed=answer_embed(answer), view=ResultView(answer), wait=True)

        await self.bot.serve("similar", user_id=interaction.user.id, guild_id=interaction.guild_id, work=work,
                             on_error=lambda text: interaction.followup.send(text))

    @app_commands.command(name="radio")
    @app_commands.describe(track="Start typing a title or an artist and pick a track, or paste a Spotify track link",
                           tracks="How many tracks (1-50, default 25)")
    async def radio(self, interaction: discord.Interaction, track: str,
                    tracks: app_commands.Range[int, 1, 50] | None = None) -> None:
        """A playlist that drifts from a song, each next one near the ones before (links to take away)."""
        await interaction.response.defer(thinking=True)

        async def work(rid: str) -> None:
            rec = await self.bot.answer_radio(await self.bot.resolve_track(track), rid, "radio", tracks)
            await interaction.followup.send(embed=radio_embed(rec, f"ref {rid}"), files=radio_files(rec), wait=True)

        await self.bot.serve("radio", user_id=interaction.user.id, guild_id=interaction.guild_id, work=work,
                             on_error=lambda text: interaction.followup.send(text))

    @similar.autocomplete("track")
    @radio.autocomplete("track")
    async def track_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        current = current.strip()
        if len(current) < 2:
            return []
        t0 = time.perf_counter()
        try:
            hits = await asyncio.wait_for(self.bot.service.asearch_tracks(current[:100], 25), AUTOCOMPLETE_BUDGET_S)
        except (TimeoutError, SynestheteError) as exc:
            log.warning("autocomplete for %r gave up: %s", current[:100], exc or type(exc).__name__)
            self.bot.metrics.observe("autocomplete", "error", time.perf_counter() - t0,
                                     getattr(exc, "kind", "autocomplete_timeout"))
            return []
        choices: list[app_commands.Choice[str]] = []
        seen: set[str] = set()
        for h in hits:
            value = "id:" + h.track.track_id
            if value in seen or len(value) > 100:
                continue
            seen.add(value)
            genre = ", ".join(h.track.genres[:1])
            choices.append(app_commands.Choice(name=clip(h.track.title + (f" · {genre}" if genre else ""), 100),
                                               value=value))
        self.bot.metrics.observe("autocomplete", "ok", time.perf_counter() - t0)
        return choices[:25]


async def setup(bot: SynestheteBotBase) -> None:
    await bot.add_cog(Search(bot))
