"""Message flows through dpytest: voice messages, attachments, watch modes, limits, cooldown."""

from __future__ import annotations

import logging

import discord
import discord.ext.test as dpytest

from .fakes import attachment_dict, errors, post, queries, sent_messages

AUDIO = b"OggS" + bytes(range(256)) * 400  # the stub engine does not decode; bytes must arrive intact


def cfg():
    c = dpytest.get_config()
    return c.guilds[0], c.channels[0], c.members[0]


async def test_voice_message_in_dm_gets_sounds_like_and_five_tracks(bot, files):
    _, _, member = cfg()
    dm = await member.create_dm()
    url = files.add("voice.ogg", AUDIO)
    msg = await post(dm, member, attachments=[attachment_dict(url, "voice-message.ogg", len(AUDIO), voice=True)])
    assert msg.attachments[0].is_voice_message() and msg.attachments[0].waveform
    out = sent_messages()
    assert len(out) == 1
    embed = out[0].embeds[0]
    assert embed.title.startswith("🎧 Sounds like Artist 0 – Song number 0")
    assert "93%" in embed.description
    lines = [ln for ln in embed.description.splitlines() if ln.startswith("`")]
    assert len(lines) == 5 and "open.spotify.com/track/" in lines[0] and "%" in lines[0]
    assert "voice message (12 s)" in embed.footer.text
    # the real streaming download delivered the exact bytes to the engine
    kind, data, k = bot.service.calls[0]
    assert kind == "recommend" and data == AUDIO and k == 15
    assert queries(bot, "voice", "ok") == 1


async def test_audio_attachment_in_watched_channel_gets_reply_with_buttons(bot, files):
    _, channel, member = cfg()
    url = files.add("song.mp3", AUDIO)
    await post(channel, member, "what is this?", [attachment_dict(url, "song.mp3", len(AUDIO), "audio/mpeg")])
    out = sent_messages()
    assert len(out) == 1 and out[0].embeds and "file song.mp3" in out[0].embeds[0].footer.text
    assert out[0].reference is None or out[0].reference.message_id  # a reply when the backend keeps it
    assert queries(bot, "attachment", "ok") == 1


async def test_mention_mode_answers_only_mentions(make_bot, files):
    bot = await make_bot(bot_watch_mode="mention")
    _, channel, member = cfg()
    url = files.add("a.ogg", AUDIO)
    await post(channel, member, "no mention", [attachment_dict(url, "a.ogg", len(AUDIO))])
    assert sent_messages() == [] and files.hits == []
    await post(channel, member, f"<@{bot.user.id}> listen", [attachment_dict(url, "a.ogg", len(AUDIO))])
    out = sent_messages()
    assert len(out) == 1 and out[0].embeds
    assert not bot.intents.message_content  # mention-only needs no privileged intent


async def test_mentions_are_not_parsed_as_prefix_commands(make_bot, files, caplog):
    """Issue 16: "@Synesthete what's this song?" (the documented way to ask in mention mode)
    logged ERROR CommandNotFound: Command "what's" is not found, for every such message."""
    bot = await make_bot(bot_watch_mode="mention")
    _, channel, member = cfg()
    url = files.add("song.mp3", AUDIO)
    for text in (f"<@{bot.user.id}> what's this song?", f"<@{bot.user.id}> help", f"<@{bot.user.id}>"):
        await post(channel, member, text, [attachment_dict(url, "song.mp3", len(AUDIO), "audio/mpeg")])
        await post(channel, member, text)  # and without audio: nothing to say, nothing to log
    await dpytest.run_all_events()
    assert [bool(m.embeds) for m in sent_messages()] == [True, True, True]  # each mp3 answered
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "CommandNotFound" not in caplog.text


async def test_allowlist_mode_watches_listed_channels_only(make_bot, files, tmp_path):
    c = dpytest.get_config()
    channel = c.channels[0]
    bot = await make_bot(bot_watch_mode="allowlist", bot_allowed_channel_ids=f"{channel.id + 1}, 42")
    url = files.add("a.ogg", AUDIO)
    member = dpytest.get_config().members[0]
    channel = dpytest.get_config().channels[0]
    await post(channel, member, "", [attachment_dict(url, "a.ogg", len(AUDIO))])
    assert sent_messages() == []
    bot.settings = bot.settings.replace(bot_allowed_channel_ids=str(channel.id))
    await post(channel, member, "", [attachment_dict(url, "a.ogg", len(AUDIO))])
    assert len(sent_messages()) == 1
    assert bot.intents.message_content


async def test_non_audio_attachment_is_ignored_silently(bot, files):
    _, channel, member = cfg()
    url = files.add("cat.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    await post(channel, member, "look", [attachment_dict(url, "cat.png", 108, "image/png"),
                                         attachment_dict(url, "notes.txt", 108, "text/plain; charset=utf-8")])
    assert sent_messages() == [] and files.hits == [] and bot.service.calls == []


async def test_oversized_file_is_refused_from_metadata_without_download(make_bot, files):
    bot = await make_bot(bot_max_attachment_bytes=1024 * 1024)
    _, channel, member = cfg()
    url = files.add("big.wav", AUDIO)
    await post(channel, member, "", [attachment_dict(url, "big.wav", 12 * 1024 * 1024, "audio/wav")])
    out = sent_messages()
    assert len(out) == 1 and not out[0].embeds
    assert out[0].content.startswith("That file is 12 MB; I can listen to files up to 1 MB")
    assert files.hits == [] and bot.service.calls == []  # nothing was downloaded or decoded
    assert errors(bot, "too_large") == 1


async def test_size_that_lies_is_capped_while_streaming(make_bot, files):
    bot = await make_bot(bot_max_attachment_bytes=64 * 1024)
    _, channel, member = cfg()
    url = files.add("liar.ogg", b"OggS" + b"x" * 300_000)
    await post(channel, member, "", [attachment_dict(url, "liar.ogg", 1000)])
    out = sent_messages()
    assert len(out) == 1 and "I can listen to files up to" in out[0].content
    assert files.hits == ["liar.ogg"] and bot.service.calls == []


async def test_download_failure_and_timeout_get_one_sentence(make_bot, files):
    bot = await make_bot(bot_download_timeout_s=0.3)
    _, channel, member = cfg()
    gone = files.add("gone.ogg", b"", status=404)
    slow = files.add("slow.ogg", AUDIO, delay=2.0)
    await post(channel, member, "", [attachment_dict(gone, "gone.ogg", 10)])
    await post(channel, member, "", [attachment_dict(slow, "slow.ogg", 10)])
    out = [m.content for m in sent_messages()]
    assert out[0].startswith("I couldn't download that file from Discord") and "(ref `" in out[0]
    assert out[1].startswith("Downloading that file took too long")
    assert errors(bot, "download") == 1 and errors(bot, "download_timeout") == 1


async def test_more_attachments_than_allowed(make_bot, files):
    await make_bot(bot_max_attachments=2)
    _, channel, member = cfg()
    atts = [attachment_dict(files.add(f"{i}.ogg", AUDIO), f"{i}.ogg", len(AUDIO)) for i in range(3)]
    atts.insert(1, attachment_dict(files.url("x.png"), "x.png", 10, "image/png"))
    await post(channel, member, "", atts)
    out = sent_messages()
    assert [bool(m.embeds) for m in out] == [True, True, False]
    assert "first 2 audio files" in out[2].content
    assert sorted(files.hits) == ["0.ogg", "1.ogg"]


async def test_user_cooldown_says_try_again_once_then_stays_quiet(make_bot, files):
    bot = await make_bot(bot_user_cooldown_rate=1, bot_user_cooldown_per_s=60)
    _, channel, member = cfg()
    url = files.add("a.ogg", AUDIO)
    for _ in range(3):
        await post(channel, member, "", [attachment_dict(url, "a.ogg", len(AUDIO))])
    out = sent_messages()
    assert len(out) == 2 and out[0].embeds
    assert out[1].content.startswith("You're going a bit fast for me; please try again in 60 s.")
    assert errors(bot, "cooldown") == 2 and len(bot.service.calls) == 1
    # another user is not affected
    other = dpytest.get_config().members[1]
    await post(channel, other, "", [attachment_dict(url, "a.ogg", len(AUDIO))])
    assert len(sent_messages()) == 1


async def test_engine_error_in_message_flow_is_one_sentence(bot, files):
    from engine.errors import TooShortAudioError

    _, channel, member = cfg()
    bot.service.fail = TooShortAudioError("0.4s of signal")
    url = files.add("short.ogg", AUDIO)
    await post(channel, member, "", [attachment_dict(url, "short.ogg", len(AUDIO), voice=True, duration=1.0)])
    (msg,) = sent_messages()
    assert msg.content.startswith(TooShortAudioError.user_message) and msg.content.count("(ref `") == 1
    assert queries(bot, "voice", "error") == 1 and errors(bot, "too_short") == 1


async def test_messages_from_bots_are_ignored(bot, files):
    _, channel, _ = cfg()
    url = files.add("a.ogg", AUDIO)
    await post(channel, bot.user, "", [attachment_dict(url, "a.ogg", len(AUDIO))])
    assert sent_messages() == []


def test_minimal_intents():
    from bot.client import make_intents
    from engine.settings import Settings

    i = make_intents(Settings(bot_watch_mode="mention"))
    assert i.guilds and i.guild_messages and i.dm_messages
    assert not (i.message_content or i.members or i.presences or i.voice_states or i.guild_reactions)
    assert make_intents(Settings(bot_watch_mode="all")).message_content
    assert isinstance(i, discord.Intents)


def test_a_radio_of_50_long_titles_stays_within_discords_embed_limits() -> None:
    """issue 31: description <= 4,096 and the whole embed <= 6,000; the rest is in the attached playlist."""
    from engine.catalogue import Track
    from engine.service import Recommendation, ScoredTrack

    from bot.embeds import radio_embed, radio_files

    def track(i: int) -> Track:
        return Track(f"{i:02d}" + "L" * 20, "A very long title [remix] *live* " * 4, "An artist with a long name " * 3)

    rec = Recommendation(None, [ScoredTrack(track(i), 0.5) for i in range(1, 51)], track(0), note="")
    embed = radio_embed(rec, "ref 0123456789ab")
    assert len(embed.description) <= 4096 and len(embed) <= 6000
    assert embed.description.endswith("more in the attached playlist.")
    files = radio_files(rec)
    assert [f.filename for f in files] == ["links.txt", "radio.m3u"]
    assert len(files[0].fp.read().decode().splitlines()) == 50
