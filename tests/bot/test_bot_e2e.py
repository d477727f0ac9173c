"""End to end through the REAL engine (logmel backbone, milvus-lite, fingerprints) on a small
generated catalogue: a phone recording of a catalogue song sent as a voice message must come
back as "Sounds like <that song>" with five other songs; /similar works from autocomplete."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import discord.ext.test as dpytest
import pytest

from engine import audio as audio_mod
from engine.catalogue import CatalogueDB, Track
from engine.embed import Embedder
from engine.features import make_backbone
from engine.fingerprint.index import FingerprintIndex
from engine.service import SynestheteService
from engine.settings import Settings
from engine.store import VectorStore
from tests import audiogen

from .conftest import TOKEN, start_bot, stop_bot
from .fakes import FakeInteraction, attachment_dict, post, sent_messages

pytestmark = pytest.mark.slow

N_TRACKS = 8
NAMES = ["Morning Light", "Neon Rain", "Paper Boats", "Copper Sky", "Quiet Engine", "Blue Static",
         "Glass Harbour", "Slow Orbit"]


def _build(data_dir: Path, audio_dir: Path) -> Settings:
    settings = Settings(data_dir=data_dir, backbone="logmel", workers=2, discord_token=TOKEN, bot_watch_mode="all",
                        bot_metrics_port=-1, bot_sync_commands="never", query_timeout_s=120.0)
    embedder = Embedder.create(make_backbone(settings), settings.resolved_head_path, settings.embedding_dim)
    tracks = []
    for i in range(N_TRACKS):
        path = audiogen.encode(audiogen.synthetic_track(100 + i, 20.0), audio_dir / f"t{i}.mp3")
        tracks.append(Track(f"{i:02d}" + "Q" * 20, NAMES[i], f"Band {i // 2}", ["Synth" if i % 2 else "Pop"],
                            40 + i, 20000, "spotify", str(path)))
    cat = CatalogueDB(settings.catalogue_db_path)
    store = VectorStore(settings.resolved_milvus_uri, embedder.model_id, embedder.dim,
                        prefix=settings.collection_prefix, index_type=settings.index_type)
    store.ensure_collections()
    fp = FingerprintIndex(settings.fingerprint_db_path)
    try:
        cat.upsert_tracks(tracks)
        limits = audio_mod.limits_from_settings(settings, for_catalogue=True)
        for t in tracks:
            dec = audio_mod.decode(t.audio_path, embedder.sample_rate, limits)
            emb = embedder.embed(dec.samples, settings.segment_hop_s)
            store.upsert_tracks([(t.track_key, emb.track, emb.segments, emb.times)])
            fp.add_track(t.track_key, dec.samples, dec.sample_rate)
            cat.mark_indexed(t.track_key, "test", embedder.model_id, emb.n)
        cat.set_meta("built_at", datetime.now(UTC).isoformat(timespec="seconds"))
        store.flush()
    finally:
        store.close()
        fp.close()
        cat.close()
    return settings


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("bot-e2e")
    (root / "audio").mkdir()
    return _build(root / "data", root / "audio")


@pytest.fixture(scope="module")
def voice_clip(catalogue: Settings, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Track 3, seconds 4-16, played by a speaker into a phone, sent as an Ogg/Opus voice message."""
    sig = audiogen.synthetic_track(103, 20.0)[4 * audiogen.SR:16 * audiogen.SR]
    path = tmp_path_factory.mktemp("clip") / "voice-message.ogg"
    audiogen.encode(audiogen.phone_degrade(sig, seed=3), path, codec_args=["-c:a", "libopus", "-b:a", "32k"])
    return path.read_bytes()


@pytest.fixture()
async def real_bot(catalogue: Settings):
    service = SynestheteService.open(catalogue)
    bot = await start_bot(catalogue, service)
    yield bot
    await stop_bot(bot)


async def test_voice_message_of_a_catalogue_song_end_to_end(real_bot, files, voice_clip):
    c = dpytest.get_config()
    url = files.add("voice.ogg", voice_clip)
    await post(c.channels[0], c.members[0], "",
               [attachment_dict(url, "voice-message.ogg", len(voice_clip), "audio/ogg", voice=True, duration=12.0)])
    (msg,) = sent_messages()
    assert msg.embeds, msg.content
    embed = msg.embeds[0]
    assert embed.title == "🎧 Sounds like Band 1 – Copper Sky", embed.to_dict()
    lines = [ln for ln in embed.description.splitlines() if ln.startswith("`")]
    assert len(lines) == 5 and not any("Copper Sky" in ln for ln in lines)
    assert all("open.spotify.com/track/" in ln for ln in lines)
    assert "logmel" in embed.footer.text
    assert real_bot.feedback.counts()["answers"] == 1


async def test_similar_from_autocomplete_end_to_end(real_bot):
    search = real_bot.get_cog("Search")
    inter = FakeInteraction(real_bot)
    choices = await search.track_autocomplete(inter, "neon rian")  # a typo
    assert choices and choices[0].name.startswith("Band 0 – Neon Rain")
    await search.similar.callback(search, inter, choices[0].value)
    embed = inter.embeds[0]
    assert embed.title == "🎶 Songs like Band 0 – Neon Rain"
    lines = [ln for ln in embed.description.splitlines() if ln.startswith("`")]
    assert len(lines) == 5 and not any("Neon Rain" in ln for ln in lines)
    more = FakeInteraction(real_bot)
    await inter.sent[0].view.more.callback(more)
    assert more.embeds and "(more, 6–" in more.embeds[0].title


async def test_a_spotify_link_in_a_message_answers_like_similar_end_to_end(real_bot, caplog):
    """issue 31: people share Spotify links far more than files; the track it names answers, named."""
    import logging

    c = dpytest.get_config()
    copper = "03" + "Q" * 20
    await post(c.channels[0], c.members[0],
               f"this one! <https://open.spotify.com/intl-de/track/{copper}?si=abc123> or spotify:track:{'01' + 'Q' * 20}")
    (msg,) = sent_messages()
    assert msg.content == "Answering the first of 2 Spotify links."
    assert msg.embeds[0].title == "🎶 Songs like Band 1 – Copper Sky"
    lines = [ln for ln in msg.embeds[0].description.splitlines() if ln.startswith("`")]
    assert len(lines) == 5 and not any("Copper Sky" in ln for ln in lines)
    # asked (a mention): an album, a short link, a song the catalogue lacks get one sentence each
    me = f"<@{real_bot.user.id}>"
    for i, (text, said) in enumerate(((f"https://open.spotify.com/album/{'A' * 22}", "That's a Spotify album link"),
                                      ("https://spotify.link/AbCdEf", "Short spotify.link links"),
                                      (f"https://open.spotify.com/track/{'Z' * 22}", "That song isn't in my catalogue"))):
        await post(c.channels[0], c.members[(i + 1) % 2], f"{me} {text}")  # two people: the cooldown is per person
        (reply,) = sent_messages()[-1:]
        assert reply.content.startswith(said) and not reply.embeds, reply.content
        await post(c.channels[0], c.members[(i + 1) % 2], text)  # not asked: shared in the channel, no refusal
        assert sent_messages() == []
    await post(c.channels[0], c.members[0], "just chatting, no link")
    assert sent_messages() == []  # chat without a link or audio: not a word
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_similar_takes_a_pasted_link_end_to_end(real_bot):
    search = real_bot.get_cog("Search")
    inter = FakeInteraction(real_bot)
    await search.similar.callback(search, inter, f"https://open.spotify.com/track/{'05' + 'Q' * 20}?si=x")
    embed = inter.embeds[0]
    assert embed.title == "🎶 Songs like Band 2 – Blue Static"
    assert embed.footer.text.startswith("/similar Band 2 – Blue Static")  # what was understood, not the raw link


async def test_radio_from_a_pasted_link_end_to_end(real_bot):
    """issue 31 step 2: /radio through the real engine; the playlist comes as links.txt and radio.m3u."""
    search = real_bot.get_cog("Search")
    inter = FakeInteraction(real_bot)
    await search.radio.callback(search, inter, f"spotify:track:{'03' + 'Q' * 20}", 6)
    (sent,) = inter.sent
    assert sent.embed.title == "📻 Radio from Band 1 – Copper Sky"
    lines = [ln for ln in sent.embed.description.splitlines() if ln.startswith("`")]
    assert 1 <= len(lines) <= 6 and not any("Copper Sky" in ln for ln in lines)
    assert [f.filename for f in sent.files] == ["links.txt", "radio.m3u"]
    links = sent.files[0].fp.read().decode().splitlines()
    assert len(links) == len(lines) and all(x.startswith("https://open.spotify.com/track/") for x in links)
    bad = FakeInteraction(real_bot, user=type(inter.user)(99))
    await search.radio.callback(search, bad, f"https://open.spotify.com/playlist/{'P' * 22}", None)
    assert bad.sent[0].content.startswith("That's a Spotify playlist link")
