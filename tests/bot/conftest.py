"""Bot fixtures: a real SynestheteBot over a stub engine, wired into dpytest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord.ext.test as dpytest
import pytest
from discord.ext.test import backend as back

from bot.client import SynestheteBot, make_intents
from engine.settings import Settings

from .fakes import FileServer, StubService

TOKEN = "MTAxNzI5.FAKE-token.dont-leak-me-0123456789abcdef"


def bot_settings(tmp_path: Path, **kw) -> Settings:
    base = {"data_dir": tmp_path / "data", "workers": 2, "discord_token": TOKEN, "bot_watch_mode": "all",
                "bot_metrics_port": -1, "bot_sync_commands": "never", "bot_user_cooldown_rate": 100,
                "bot_user_cooldown_per_s": 60.0, "bot_guild_concurrency": 4, "bot_download_timeout_s": 5.0}
    base.update(kw)
    return Settings(**base)


async def start_bot(settings: Settings, service) -> SynestheteBot:
    # dpytest builds its guilds from a member cache, which needs the members intent; the bot
    # itself never asks for it (see test_minimal_intents), so it is added here, at the test edge.
    intents = make_intents(settings)
    intents.members = True
    bot = SynestheteBot(settings, service, intents=intents)
    await bot._async_setup_hook()
    dpytest.configure(bot, members=2)
    # dpytest swaps in its own ConnectionState after _async_setup_hook gave the old one a loop;
    # typing() and views need it on the new one
    back.get_state().loop = asyncio.get_running_loop()
    await bot.setup_hook()
    return bot


async def stop_bot(bot: SynestheteBot) -> None:
    await dpytest.empty_queue()
    if bot.http_session is not None:
        await bot.http_session.close()
    if bot.metrics_server is not None:
        await bot.metrics_server.stop()
    if bot.feedback is not None:
        bot.feedback.close()
    bot.service.close()


@pytest.fixture()
async def files():
    server = await FileServer().start()
    yield server
    await server.stop()


@pytest.fixture()
async def make_bot(tmp_path: Path):
    """``await make_bot(**settings)`` -> a configured bot over a StubService; cleaned up after."""
    bots: list[SynestheteBot] = []

    async def factory(**kw) -> SynestheteBot:
        settings = bot_settings(tmp_path, **kw)
        bot = await start_bot(settings, StubService(settings))
        bots.append(bot)
        return bot

    yield factory
    for b in bots:
        await stop_bot(b)


@pytest.fixture()
async def bot(make_bot):
    return await make_bot()
