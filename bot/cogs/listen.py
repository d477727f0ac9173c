"""Audio in: voice messages and audio files in messages, ``/recommend``, and the
"Find similar songs" message context menu.  All three end in the same
:meth:`SynestheteBotBase.answer_audio`, one answer per audio attachment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from engine.links import NotATrackLinkError, SpotifyLink, find_spotify_link, link_sentence

from ..download import is_audio_attachment
from ..embeds import answer_embed, clip
from ..errors import NoAudioInMessageError
from ..views import ResultView, who

if TYPE_CHECKING:
    from ..client import SynestheteBotBase

log = logging.getLogger(__name__)


class Listen(commands.Cog):
    def __init__(self, bot: SynestheteBotBase) -> None:
        self.bot = bot
        self.ctx_menu = app_commands.ContextMenu(name="Find similar songs", callback=self.find_similar_menu)
        self.bot.tree.add_command(self.ctx_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.ctx_menu.name, type=self.ctx_menu.type)

    # ---- which messages we answer ------------------------------------------------

    def is_watched(self, message: discord.Message) -> bool:
        if message.guild is None:
            return True  # a DM to the bot
        me = self.bot.user
        if me is not None and any(u.id == me.id for u in message.mentions):
            return True
        mode = self.bot.settings.bot_watch_mode
        if mode == "all":
            return True
        if mode == "allowlist":
            ch = message.channel
            return bool({ch.id, getattr(ch, "parent_id", None)} & self.bot.settings.bot_allowed_channels)
        return False

    def audio_of(self, message: discord.Message) -> list[discord.Attachment]:
        return [a for a in message.attachments if is_audio_attachment(a)]

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self.is_watched(message):
            return
        audio = self.audio_of(message) if message.attachments else []
        if not audio:
            link = find_spotify_link(message.content or "")
            if link is not None:  # people share music as Spotify links far more than as files (issue 31)
                await self.answer_link(message, link)
            return  # pictures, documents, chat...: not for us, and not worth a word
        flow = "voice" if any(a.is_voice_message() for a in audio) else "attachment"
        limit = self.bot.settings.bot_max_attachments
        ident = {"user_id": message.author.id, "guild_id": message.guild.id if message.guild else None,
                     "channel_id": message.channel.id}
        async with message.channel.typing():
            for i, att in enumerate(audio[:limit]):
                async def work(rid: str, att: discord.Attachment = att) -> None:
                    answer = await self.bot.answer_audio(att, rid, "voice" if att.is_voice_message() else "attachment",
                                                         **ident)
                    await message.reply(embed=answer_embed(answer), view=ResultView(answer), mention_author=False)

                outcome = await self.bot.serve(
                    flow, user_id=message.author.id, guild_id=ident["guild_id"], work=work,
                    on_error=lambda text: message.reply(text, mention_author=False),
                    cooldown=(i == 0), quiet_ok=True)  # one message = one query against the cooldown
                if not outcome.ok and outcome.error is not None and outcome.error.kind in ("cooldown", "guild_busy"):
                    return
        if len(audio) > limit:
            await message.reply(f"I listened to the first {limit} audio files; send the others separately.",
                                mention_author=False)

    async def answer_link(self, message: discord.Message, link: SpotifyLink) -> None:
        """A Spotify link in a message: a track link answers like ``/similar`` of that track (its
        title shown, so the person sees what was understood); any other link gets one sentence.

        Only a person who asked the bot (a DM, a mention) hears why a link does nothing: in a
        watched channel people share albums and songs the catalogue lacks all day, and a public
        refusal under each would be noise.
        """
        me = self.bot.user
        addressed = message.guild is None or (me is not None and any(u.id == me.id for u in message.mentions))
        if not link.is_track and not addressed:
            return
        ident = {"user_id": message.author.id, "guild_id": message.guild.id if message.guild else None,
                 "channel_id": message.channel.id}

        async def say(text: str) -> None:
            if addressed:
                await message.reply(text, mention_author=False)

        async def work(rid: str) -> None:
            if not link.is_track:
                raise NotATrackLinkError(f"{link.kind} link", user_message=link_sentence(link))
            answer = await self.bot.answer_similar(f"spotify:track:{link.id}", rid, "link",
                                                   lambda seed: f"Spotify link: {clip(seed.title, 80)}", **ident)
            note = f"Answering the first of {link.others + 1} Spotify links." if link.others else None
            await message.reply(note, embed=answer_embed(answer), view=ResultView(answer), mention_author=False)

        async with message.channel.typing():
            await self.bot.serve("link", user_id=message.author.id, guild_id=ident["guild_id"], work=work,
                                 on_error=say, quiet_ok=True)

    # ---- slash command and context menu ------------------------------------------------

    @app_commands.command(name="recommend")
    @app_commands.describe(file="A voice recording or a song (mp3, ogg, m4a, wav, flac, webm, mp4)")
    async def recommend(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        """Listen to an audio file: which song it is, and five songs like it."""
        await interaction.response.defer(thinking=True)

        async def work(rid: str) -> None:
            if not is_audio_attachment(file):
                raise NoAudioInMessageError(f"attachment {file.filename!r} ({file.content_type}) is not audio",
                                            user_message=("That file doesn't look like audio; send an mp3, ogg, m4a, "
                                                          "wav, flac or a voice message."))
            answer = await self.bot.answer_audio(file, rid, "recommend", **who(interaction))
            await interaction.followup.send(embed=answer_embed(answer), view=ResultView(answer), wait=True)

        await self.bot.serve("recommend", user_id=interaction.user.id, guild_id=interaction.guild_id, work=work,
                             on_error=lambda text: interaction.followup.send(text))

    async def find_similar_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Find similar songs to the audio in this message."""
        audio = self.audio_of(message)
        if not audio:
            await interaction.response.send_message(NoAudioInMessageError.user_message, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        limit = self.bot.settings.bot_max_attachments
        for i, att in enumerate(audio[:limit]):
            async def work(rid: str, att: discord.Attachment = att) -> None:
                answer = await self.bot.answer_audio(att, rid, "context_menu", **who(interaction))
                await interaction.followup.send(embed=answer_embed(answer), view=ResultView(answer), wait=True)

            outcome = await self.bot.serve("context_menu", user_id=interaction.user.id,
                                           guild_id=interaction.guild_id, work=work,
                                           on_error=lambda text: interaction.followup.send(text), cooldown=(i == 0))
            if not outcome.ok and outcome.error is not None and outcome.error.kind in ("cooldown", "guild_busy"):
                return


async def setup(bot: SynestheteBotBase) -> None:
    await bot.add_cog(Listen(bot))
