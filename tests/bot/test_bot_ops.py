"""Operations: metrics + health endpoint, the token never leaking, main(), settings, command sync."""

from __future__ import annotations

import os
import logging

import aiohttp
import pytest

from bot import main as bot_main
from bot.client import SynestheteBot
from bot.download import check_size, effective_limit, is_audio_attachment
from bot.errors import AttachmentTooLargeError
from bot.utils import redact
from engine.settings import Settings

from .conftest import TOKEN
from .fakes import FakeInteraction, attachment_dict, make_attachment


@pytest.fixture(autouse=True)
def restore_root_logging():
    """main() installs discord's log handler on the root logger, bound to the captured stderr;
    leaving it there would make later log calls write to a closed stream."""
    root = logging.getLogger()
    handlers, filters, level = list(root.handlers), list(root.filters), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.filters[:] = filters
    root.setLevel(level)


async def test_metrics_and_health_endpoint(make_bot, files):
    bot = await make_bot(bot_metrics_port=0)
    assert bot.metrics_server is not None and bot.metrics_server.port > 0
    listen = bot.get_cog("Listen")
    url = files.add("a.ogg", b"OggS" + b"1" * 5000)
    await listen.recommend.callback(listen, FakeInteraction(bot), make_attachment(attachment_dict(url, "a.ogg", 5004)))
    big = make_attachment(attachment_dict(url, "b.ogg", 10**9))
    await listen.recommend.callback(listen, FakeInteraction(bot), big)
    base = f"http://127.0.0.1:{bot.metrics_server.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        async with s.get(base + "/healthz") as r:
            health = await r.json()
            assert r.status == 503 and health["discord_ready"] is False  # not connected to a gateway in tests
    values = parse_metrics(text)
    assert values[("synesthete_bot_queries_total", (("flow", "recommend"), ("outcome", "ok")))] == 1
    assert values[("synesthete_bot_queries_total", (("flow", "recommend"), ("outcome", "error")))] == 1
    assert values[("synesthete_bot_errors_total", (("kind", "too_large"),))] == 1
    assert values[("synesthete_bot_query_seconds_bucket", (("flow", "recommend"), ("le", "+Inf")))] == 2
    assert values[("synesthete_bot_query_seconds_count", (("flow", "recommend"),))] == 2
    assert values[("synesthete_bot_up", ())] == 1 and values[("synesthete_bot_in_flight", ())] == 0
    assert values[("synesthete_bot_uptime_seconds", ())] >= 0
    assert "# TYPE synesthete_bot_query_seconds histogram" in text
    assert health["in_flight"] == 0


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """A scrape as ``{(sample name, sorted labels): value}``, read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


async def test_two_bots_in_one_process_keep_separate_metrics(make_bot):
    """Each bot has its own registry (never the global one): no duplicate-timeseries error, no shared counts."""
    a, b = await make_bot(), await make_bot()
    a.metrics.observe("voice", "ok", 0.5)
    assert a.metrics.sample("synesthete_bot_queries_total", flow="voice", outcome="ok") == 1
    assert b.metrics.sample("synesthete_bot_queries_total", flow="voice", outcome="ok") == 0
    assert a.metrics.registry is not b.metrics.registry


async def test_token_never_in_logs_or_messages(bot, files, caplog):
    caplog.set_level(logging.DEBUG)
    flt = redact.install(TOKEN)
    caplog.handler.addFilter(flt)
    try:
        assert TOKEN not in repr(bot.settings) and TOKEN not in str(bot.settings)
        # an error whose text quotes the token (say, a library echoing a header) ...
        bot.service.fail = RuntimeError(f"401 for Authorization: Bot {TOKEN}")
        inter = FakeInteraction(bot)
        listen = bot.get_cog("Listen")
        url = files.add("a.ogg", b"OggS" + b"1" * 5000)
        await listen.recommend.callback(listen, inter, make_attachment(attachment_dict(url, "a.ogg", 5004)))
        logging.getLogger("somewhere").warning("settings are %s, token %s", bot.settings, TOKEN)
        assert inter.texts and all(TOKEN not in t for t in inter.texts)
        assert "401 for Authorization" in caplog.text  # the detail is logged ...
        assert TOKEN not in caplog.text  # ... without the token
        assert redact.REDACTED in caplog.text
    finally:
        caplog.handler.removeFilter(flt)
        logging.getLogger().removeFilter(flt)
        for h in logging.getLogger().handlers:
            h.removeFilter(flt)


def test_main_without_token_explains_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    rc = bot_main.main(["--env-file", os.devnull])
    err = capsys.readouterr().err
    assert rc == 2
    assert "DISCORD_TOKEN is not set" in err and "discord.com/developers/applications" in err and ".env" in err


def test_main_with_bad_setting_never_prints_the_token(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SYNESTHETE_BOT_MAX_ATTACHMENT_BYTES", str(200 * 1024 * 1024))
    rc = bot_main.main(["--env-file", os.devnull])
    out = capsys.readouterr()
    assert rc == 2 and "SYNESTHETE_BOT_MAX_ATTACHMENT_BYTES" in out.err
    assert TOKEN not in out.err + out.out
    # no catalogue built yet: a clear sentence, exit 2 (issue 30: one rule, the person can fix it), no token
    monkeypatch.delenv("SYNESTHETE_BOT_MAX_ATTACHMENT_BYTES")
    rc = bot_main.main(["--env-file", os.devnull])
    out = capsys.readouterr()
    assert rc == 2 and "build it first" in out.err and TOKEN not in out.err + out.out


def test_export_feedback_command(tmp_path, monkeypatch, capsys):
    from bot.feedback import FeedbackStore

    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    store.record_answer(answer_id="r1", flow="similar", query="/similar x", model_id="m", identified=None,
                        seed={"track_id": "s", "name": "n", "artist": "a"}, results=[{"track_id": "t1"}],
                        user_id=1, guild_id=2, channel_id=3)
    store.vote("r1", 9, -1)
    store.close()
    assert bot_main.main(["--env-file", os.devnull, "export-feedback", str(tmp_path / "o.csv")]) == 0
    assert "wrote 1 rows" in capsys.readouterr().out
    assert "r1" in (tmp_path / "o.csv").read_text()


@pytest.mark.parametrize("kw,setting", [
    ({"bot_watch_mode": "everything"}, "SYNESTHETE_BOT_WATCH_MODE"),
    ({"bot_max_attachment_bytes": 101 * 1024 * 1024}, "SYNESTHETE_BOT_MAX_ATTACHMENT_BYTES"),
    ({"bot_allowed_channel_ids": "12,abc"}, "SYNESTHETE_BOT_ALLOWED_CHANNEL_IDS"),
    ({"bot_sync_commands": "sometimes"}, "SYNESTHETE_BOT_SYNC_COMMANDS"),
])
def test_bad_bot_settings_name_the_setting(kw, setting):
    with pytest.raises(ValueError, match=setting):
        Settings(**kw)


def test_bot_settings_from_env():
    s = Settings.from_env({"SYNESTHETE_BOT_ALLOWED_CHANNEL_IDS": "1, 2;3", "SYNESTHETE_BOT_MAX_ATTACHMENTS": "5",
                           "SYNESTHETE_BOT_WATCH_MODE": "allowlist", "SYNESTHETE_BOT_FEEDBACK_DB": "/tmp/fb.db",
                           "SYNESTHETE_BOT_DEV_GUILD_ID": "123"}, env_file=None)
    assert s.bot_allowed_channels == {1, 2, 3} and s.bot_max_attachments == 5 and s.bot_dev_guild_id == 123
    assert str(s.resolved_feedback_db_path) == "/tmp/fb.db"
    assert Settings().bot_max_attachment_bytes == 10 * 1024 * 1024
    assert effective_limit(100 * 1024 * 1024, 25 * 1024 * 1024) == 25 * 1024 * 1024


@pytest.mark.parametrize("name,ctype,voice,expected", [
    ("voice-message.ogg", "audio/ogg", True, True),
    ("x.bin", None, True, True),
    ("song.mp3", "audio/mpeg", False, True),
    ("song.opus", None, False, True),
    ("song.flac", "application/octet-stream", False, True),
    ("clip.mp4", "video/mp4", False, True),
    ("clip.webm", "video/webm", False, True),
    ("rec.m4a", "audio/x-m4a", False, True),
    ("cat.png", "image/png", False, False),
    ("fake.mp3", "image/jpeg", False, False),
    ("doc.pdf", "application/pdf", False, False),
    ("notes.txt", None, False, False),
])
def test_which_attachments_are_audio(name, ctype, voice, expected):
    att = make_attachment(attachment_dict("http://x/" + name, name, 10, ctype, voice=voice))
    assert is_audio_attachment(att) is expected


def test_size_check_from_metadata():
    att = make_attachment(attachment_dict("http://x/a", "a.ogg", 11 * 1024 * 1024))
    with pytest.raises(AttachmentTooLargeError) as ei:
        check_size(att, 10 * 1024 * 1024)
    assert ei.value.kind == "too_large" and "11 MB" in ei.value.user_message
    check_size(make_attachment(attachment_dict("http://x/a", "a.ogg", 100)), 10 * 1024 * 1024)


async def test_command_sync_guild_for_dev_global_only_when_changed(make_bot, monkeypatch):
    bot = await make_bot()
    calls = []

    async def fake_sync(*, guild=None):
        calls.append(guild.id if guild else None)
        return []

    monkeypatch.setattr(bot.tree, "sync", fake_sync)
    bot.settings = bot.settings.replace(bot_sync_commands="auto", bot_dev_guild_id=4242)
    assert await bot.sync_commands() == "guild" and calls == [4242]
    bot.settings = bot.settings.replace(bot_dev_guild_id=0)
    assert await bot.sync_commands() == "global"
    assert await bot.sync_commands() == "unchanged"  # Discord rate-limits global syncs: only on change
    bot.settings = bot.settings.replace(bot_sync_commands="always")
    assert await bot.sync_commands() == "global" and calls == [4242, None, None]
    bot.settings = bot.settings.replace(bot_sync_commands="never")
    assert await bot.sync_commands() == "skipped"
    assert isinstance(bot, SynestheteBot)


def test_metrics_add_up_over_processes_in_multiprocess_mode(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR (docs/bot.md): two processes count, a third one's scrape sees the sum."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = ("from bot.metrics import Metrics; m = Metrics(); m.observe('voice', 'ok', 0.5); "
            "m.observe('voice', 'error', 0.2, 'too_short'); print(m.text())")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", "from bot.metrics import Metrics; print(Metrics().text())"],
                         cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    values = parse_metrics(out)
    assert values[("synesthete_bot_queries_total", (("flow", "voice"), ("outcome", "ok")))] == 2
    assert values[("synesthete_bot_errors_total", (("kind", "too_short"),))] == 2
    assert values[("synesthete_bot_query_seconds_count", (("flow", "voice"),))] == 4


def with_shards(settings: Settings, count: int, ids: str) -> Settings:
    """``settings`` with ``bot_shard_count`` / ``bot_shard_ids``; set on the frozen object until
    engine.settings has the two fields (the bot reads them with getattr and their defaults)."""
    if hasattr(Settings, "bot_shard_count"):
        return settings.replace(bot_shard_count=count, bot_shard_ids=ids)
    object.__setattr__(settings, "bot_shard_count", count)
    object.__setattr__(settings, "bot_shard_ids", ids)
    return settings


def test_the_bot_runs_the_shards_the_settings_name(tmp_path):
    from bot.client import ShardedSynestheteBot, create_bot

    from .fakes import StubService

    def settings(count: int | None = None, ids: str = "") -> Settings:
        s = Settings(data_dir=tmp_path, discord_token=TOKEN)
        return s if count is None else with_shards(s, count, ids)

    stub = StubService(settings())
    try:
        default = create_bot(settings(), stub)
        # Discord's recommended count (asked at login), every shard in this process
        assert isinstance(default, ShardedSynestheteBot)
        assert default.shard_count is None and default.shard_ids is None
        two_of_four = create_bot(settings(4, "3, 1"), stub)
        assert isinstance(two_of_four, ShardedSynestheteBot)
        assert two_of_four.shard_count == 4 and two_of_four.shard_ids == [1, 3]
        assert two_of_four.running_shards() == [1, 3] and two_of_four.health()["shard_count"] == 4
        all_of_eight = create_bot(settings(8), stub)
        assert all_of_eight.shard_count == 8 and all_of_eight.shard_ids is None
        one = create_bot(settings(1), stub)
        assert type(one) is SynestheteBot and one.running_shards() == [0]  # one connection, no sharding layer
    finally:
        stub.close()


@pytest.mark.parametrize("count,ids,says", [
    (0, "0,1", "SYNESTHETE_BOT_SHARD_IDS='0,1' needs SYNESTHETE_BOT_SHARD_COUNT"),
    (2, "1,2", "shard numbers go from 0 to SYNESTHETE_BOT_SHARD_COUNT-1 (1)"),
    (2, "one", "SYNESTHETE_BOT_SHARD_IDS='one': comma-separated shard numbers expected"),
    (-1, "", "SYNESTHETE_BOT_SHARD_COUNT=-1: must be at least 0"),
])
def test_shard_settings_that_do_not_fit_are_refused_with_a_sentence(tmp_path, count, ids, says):
    from bot.client import shard_config

    with pytest.raises(ValueError) as ei:
        shard_config(with_shards(Settings(data_dir=tmp_path), count, ids))
    assert says in str(ei.value)


def test_main_refuses_shard_ids_without_a_count(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SYNESTHETE_BOT_SHARD_IDS", "0,1")
    rc = bot_main.main(["--env-file", os.devnull])
    err = capsys.readouterr().err
    assert rc == 2 and "SYNESTHETE_BOT_SHARD_IDS" in err and "Build the catalogue" not in err


async def test_health_checks_the_store_only_when_the_bot_owns_the_engine(make_bot, monkeypatch):
    """Issue 30: with --with-web a dead store makes the bot unhealthy; as another engine's client it does not."""
    from engine.client import EngineClient

    bot = await make_bot()
    monkeypatch.setattr(bot, "is_ready", lambda: True)
    owned = bot.service
    bot.service = EngineClient(bot.settings, "http://127.0.0.1:9")  # a client: the engine's store is not ours
    bot.service._about = {"model_id": owned.model_id}  # what it would have asked the engine
    client_state = await bot.health_check()
    assert client_state["ok"] is True and "store" not in client_state
    bot.service = owned

    def down():
        return {"ok": False, "store": "The music index isn't available right now; please try again later."}

    monkeypatch.setattr(bot.service, "health", down, raising=False)
    owner_state = await bot.health_check()
    assert owner_state["ok"] is False and owner_state["store"].startswith("The music index isn't available")
    monkeypatch.setattr(bot.service, "health", lambda: {"ok": True, "store": "ok"}, raising=False)
    assert (await bot.health_check())["ok"] is True
