"""``/help`` and ``/about`` (catalogue size, model, index build date)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from ..embeds import about_embed, help_embed

if TYPE_CHECKING:
    from ..client import SynestheteBotBase

log = logging.getLogger(__name__)


class Info(commands.Cog):
    def __init__(self, bot: SynestheteBotBase) -> None:
        self.bot = bot
        self.started = time.time()

    @app_commands.command(name="help")
    async def show_help(self, interaction: discord.Interaction) -> None:
        """How to use Synesthete."""
        await interaction.response.send_message(embed=help_embed(self.bot.settings), ephemeral=True)

    @app_commands.command(name="about")
    async def show_about(self, interaction: discord.Interaction) -> None:
        """The catalogue, the model and when the index was built."""
        await interaction.response.defer(thinking=True, ephemeral=True)
        try:
            about = await asyncio.wait_for(asyncio.to_thread(self.bot.service.about), 10)
        except Exception:
            log.warning("/about failed", exc_info=True)
            await interaction.followup.send("I couldn't read the catalogue details right now; please try again later.",
                                            ephemeral=True)
            return
        up = int(time.time() - self.started)
        extra = {"Answers since start": f"{self.bot.answers_given:,}",
                 "Up for": f"{up // 3600} h {up % 3600 // 60} min",
                 "Listening in": {"all": "every channel I can read", "allowlist": "selected channels",
                                  "mention": "messages that mention me"}[self.bot.settings.bot_watch_mode] + " and DMs"}
        await interaction.followup.send(embed=about_embed(about, extra), ephemeral=True)


async def setup(bot: SynestheteBotBase) -> None:
    await bot.add_cog(Info(bot))
