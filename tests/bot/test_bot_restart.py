"""Buttons that outlive the process (issue 16): an answer is posted by one bot, the bot is closed,
a new bot opens the same data directory, and the old message's buttons are pressed through
discord.py's real interaction path (INTERACTION_CREATE -> view store -> DynamicItem), with a
fake only where Discord's HTTP API answers (fakes.DiscordEdge)."""

from __future__ import annotations

import logging
import sqlite3
import time

import discord.ext.test as dpytest
import pytest

from bot.errors import AnswerExpiredError, AnswerGoneError
from bot.views import ANSWER_GONE_OLD_BUTTONS

from .conftest import stop_bot
from .fakes import (attachment_dict, custom_ids, disabled, install_discord_edge, keep_components, press, queries,
                    sent_messages)

AUDIO = b"ID3" + bytes(range(256)) * 100
DAY = 24 * 3600


@pytest.fixture()
def edge(monkeypatch):
    return install_discord_edge(monkeypatch)


@pytest.fixture()
def sent(monkeypatch):
    return keep_components(monkeypatch)


async def answer_before_restart(make_bot, files, sent, **kw) -> tuple[dict, object]:
    """Bot #1 answers "@Synesthete what's this song?" with an mp3; returns its reply and the closed bot."""
    bot = await make_bot(bot_watch_mode="mention", **kw)
    c = dpytest.get_config()
    url = files.add("song.mp3", AUDIO)
    await post_mention(bot, c, url)
    (reply,) = sent
    assert reply["embeds"] and len(custom_ids(reply)) == 6
    await stop_bot(bot)  # what close() releases (dpytest's gateway cannot be closed)
    return reply, bot


async def post_mention(bot, c, url):
    from .fakes import post

    await post(c.channels[0], c.members[0], f"<@{bot.user.id}> what's this song?",
               [attachment_dict(url, "song.mp3", len(AUDIO), "audio/mpeg")])
    assert len(sent_messages()) == 1


def ids_by_action(message: dict) -> dict[str, str]:
    out = {}
    for cid in custom_ids(message):
        parts = cid.split(":")
        out[":".join(parts[1:-1])] = cid
    return out


async def test_old_buttons_work_after_a_restart(make_bot, files, sent, edge):
    reply, old = await answer_before_restart(make_bot, files, sent)
    answer_id = reply["embeds"][0]["footer"]["text"].rsplit("ref ", 1)[1]
    ids = ids_by_action(reply)
    assert set(ids) == {"more", "artist", "radio", "vote:up", "vote:down", "reseed"}
    assert all(cid.endswith(":" + answer_id) for cid in ids.values())

    bot = await make_bot(bot_watch_mode="mention")  # a new process over the same data directory
    assert bot is not old and not bot.recent

    await press(bot, edge, reply, ids["more"])
    assert edge.responses[0]["type"] == 5  # acknowledged at once ("thinking…")
    (embed,) = edge.embeds()
    assert "(more, 6–10)" in embed["title"] and embed["title"].startswith("🎧 Sounds like Artist 0")
    assert queries(bot, "more", "ok") == 1
    # page 2 came from the pool stored with the answer: no engine call at all
    assert bot.service.calls == []
    more_reply = edge.posted[0]
    assert all(f":{answer_id}" not in cid for cid in custom_ids(more_reply))  # the new page has its own id

    edge.clear()
    await press(bot, edge, reply, ids["vote:up"])
    assert edge.said() == [("Thanks, noted! 👍", True)]
    assert bot.feedback.counts()["up"] == 1

    edge.clear()
    await press(bot, edge, reply, ids["artist"])
    (embed,) = edge.embeds()
    assert embed["title"] == "🎶 Songs like Artist 0 – Song number 0"
    assert bot.service.calls[-1][:2] == ("more_by_artist", bot.service.tracks[0].track_id)

    edge.clear()
    await press(bot, edge, reply, ids["radio"])  # issue 31: a radio from the recognised song, after a restart
    (embed,) = edge.embeds()
    assert embed["title"] == "📻 Radio from Artist 0 – Song number 0"
    assert bot.service.calls[-1][:2] == ("radio", bot.service.tracks[0].track_id)
    assert embed["description"].count("open.spotify.com/track/") == 25  # the stub radio: 25 others
    assert edge.files[-1] == ["links.txt", "radio.m3u"]  # the playlist to take away

    edge.clear()
    pick = bot.service.tracks[3]
    await press(bot, edge, reply, ids["reseed"], values=[pick.track_id])
    (embed,) = edge.embeds()
    assert embed["title"] == f"🎶 Songs like {pick.title}"
    assert embed["footer"]["text"].startswith(f"like {pick.title} ·")


async def test_a_recording_answer_pages_past_its_pool_from_the_recognised_song(make_bot, files, sent, edge):
    reply, _ = await answer_before_restart(make_bot, files, sent)
    bot = await make_bot(bot_watch_mode="mention")
    more = ids_by_action(reply)["more"]
    for _ in range(3):  # pages 2, 3 from the stored pool; page 4 from the recognised song
        edge.clear()
        await press(bot, edge, reply, more)
        reply = edge.posted[0]
        more = ids_by_action(reply)["more"]
    assert "(more, 16–20)" in edge.embeds()[0]["title"]
    assert bot.service.calls == [("similar_to", bot.service.tracks[0].track_id, 5, 15)]


async def test_an_expired_answer_disables_its_buttons_and_says_so(make_bot, files, sent, edge, tmp_path):
    reply, old = await answer_before_restart(make_bot, files, sent)
    db = sqlite3.connect(old.settings.resolved_feedback_db_path)
    with db:
        db.execute("UPDATE answers SET created_at = ?", (time.time() - 8 * DAY,))  # default expiry: 7 days
    db.close()
    bot = await make_bot(bot_watch_mode="mention")
    await press(bot, edge, reply, ids_by_action(reply)["vote:up"])
    update, = edge.responses
    assert update["type"] == 7  # the message itself, edited: every item greyed out
    assert disabled(update["data"]["components"]) == [True] * 6
    ((text, ephemeral),) = edge.said()
    assert ephemeral and text.startswith(AnswerExpiredError.user_message)
    assert bot.feedback.counts()["up"] == 0 and bot.service.calls == []
    assert bot.metrics.sample("synesthete_bot_errors_total", kind="answer_expired") == 1


async def test_an_answer_from_another_model_has_expired(make_bot, files, sent, edge):
    reply, _ = await answer_before_restart(make_bot, files, sent)
    bot = await make_bot(bot_watch_mode="mention")
    bot.service.model_version = "retrained"  # its ranking no longer continues the old pages
    await press(bot, edge, reply, ids_by_action(reply)["more"])
    assert edge.responses[0]["type"] == 7 and edge.said()[0][0].startswith(AnswerExpiredError.user_message)
    assert bot.service.calls == []


async def test_an_unknown_answer_id_gets_a_sentence_not_silence(make_bot, files, sent, edge, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    reply, old = await answer_before_restart(make_bot, files, sent)
    old.settings.resolved_feedback_db_path.unlink()  # the data directory was wiped
    for suffix in ("-wal", "-shm"):
        old.settings.resolved_feedback_db_path.with_name("feedback.sqlite" + suffix).unlink(missing_ok=True)
    bot = await make_bot(bot_watch_mode="mention")
    for action in ("more", "vote:down", "artist"):
        edge.clear()
        await press(bot, edge, reply, ids_by_action(reply)[action])
        assert edge.responses[0]["type"] == 7 and disabled(edge.responses[0]["data"]["components"]) == [True] * 6
        ((text, ephemeral),) = edge.said()
        assert ephemeral and text.startswith(AnswerGoneError.user_message)
    assert "refused [answer_gone]" in caplog.text


async def test_an_answer_stored_before_the_pool_was_kept(make_bot, tmp_path, edge):
    """A feedback file written by the previous version (schema v0): it is upgraded when opened;
    votes work; "More" on an unrecognised recording cannot be rebuilt (its audio and its further
    results were not kept) and says so."""
    path = tmp_path / "data" / "feedback.sqlite"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    with db:
        db.execute("INSERT INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("0a1b2c3d", time.time() - 3600, "voice", "voice message (12 s)",
                    "stub-backbone:v1+head:abc123", None, None,
                    '[{"track_id": "AAAAAAAAAAAAAAAAAAAAA1", "name": "Song number 1", "artist": "Artist 1", '
                    '"similarity": 0.9, "rank": 1}]', 1, 2, 3))
    db.close()
    bot = await make_bot()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    old = {"id": "1", "embeds": [{"title": "🎧 Songs that sound like your clip", "footer": {"text": "ref 0a1b2c3d"}}],
           "components": [{"type": 1, "components": [
               {"type": 2, "style": 1, "label": "More like this", "custom_id": "syn:more:0a1b2c3d"},
               {"type": 2, "style": 2, "emoji": {"name": "👍"}, "custom_id": "syn:vote:up:0a1b2c3d"}]}],
           **MESSAGE_FIELDS}
    await press(bot, edge, old, "syn:vote:up:0a1b2c3d")
    assert edge.said() == [("Thanks, noted! 👍", True)]
    edge.clear()
    await press(bot, edge, old, "syn:more:0a1b2c3d")
    assert edge.responses[0]["type"] == 5
    ((text, ephemeral),) = edge.said()
    assert ephemeral and text.startswith(AnswerGoneError.user_message)


async def test_buttons_from_before_buttons_carried_ids(make_bot, edge):
    """The previous version's buttons had discord.py's random ids: a press says so (and greys them
    out) instead of "This interaction failed"; another message's random ids are not ours to answer."""
    bot = await make_bot()
    legacy = "9f" * 16
    old = {"id": "1", "embeds": [{"title": "🎧 Sounds like X", "footer": {"text": "file a.mp3 · 0.1 s · ref 0a1b2c3d"}}],
           "components": [{"type": 1, "components": [
               {"type": 2, "style": 1, "label": "More like this", "custom_id": legacy}]}], **MESSAGE_FIELDS}
    await press(bot, edge, old, legacy)
    assert edge.responses[0]["type"] == 7 and disabled(edge.responses[0]["data"]["components"]) == [True]
    assert edge.said()[0][0].startswith(ANSWER_GONE_OLD_BUTTONS)
    edge.clear()
    await press(bot, edge, {**old, "embeds": []}, legacy)
    assert edge.calls == []


V0_SCHEMA = """
CREATE TABLE answers (answer_id TEXT PRIMARY KEY, created_at REAL NOT NULL, flow TEXT NOT NULL, query TEXT NOT NULL,
    model_id TEXT NOT NULL, identified TEXT, seed TEXT, results TEXT NOT NULL, user_id INTEGER, guild_id INTEGER,
    channel_id INTEGER);
CREATE TABLE feedback (answer_id TEXT NOT NULL REFERENCES answers(answer_id), user_id INTEGER NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)), created_at REAL NOT NULL, PRIMARY KEY (answer_id, user_id));
"""

MESSAGE_FIELDS = {"type": 0, "content": "", "attachments": [], "mentions": [], "mention_roles": [], "pinned": False,
                  "mention_everyone": False, "tts": False, "edited_timestamp": None}


async def test_a_filtered_answer_read_back_pages_within_its_filters(make_bot):
    """What the store gives back is what paging needs: the kind, the place, the filters."""
    from .fakes import FakeInteraction

    bot = await make_bot()
    search = bot.get_cog("Search")
    inter = FakeInteraction(bot)
    await search.similar.callback(search, inter, "song number 12", genre="Rock", bpm="90-140")
    posted = inter.sent[0].view.answer
    bot.recent.clear()  # as in a new process: only the feedback store knows the answer
    rebuilt = await bot.find_answer(posted.answer_id)
    assert (rebuilt.kind, rebuilt.offset, rebuilt.filters, rebuilt.seed, rebuilt.query) == (
        "similar", 0, posted.filters, posted.seed, "/similar song number 12 (genre Rock · 90-140 BPM)")
    assert [r.track for r in rebuilt.results] == [r.track for r in posted.results]
    bot.recent.clear()
    more = FakeInteraction(bot)
    await inter.sent[0].view.more.callback(more)
    assert bot.service.calls[-1] == ("similar_to", posted.seed.track_id, 5, 5, posted.filters)
    assert more.embeds and "(more, 6–10)" in more.embeds[0].title


def test_the_hedged_guess_of_an_unrecognised_recording_survives_a_restart(tmp_path):
    """"It might be X" is stored with the answer, so a page rebuilt after a restart still says it;
    a row stored before it was kept has none."""
    from bot.answers import Answer
    from bot.embeds import answer_embed
    from bot.feedback import FeedbackStore
    from engine.catalogue import Track
    from engine.service import ScoredTrack

    guess = Track(track_id="AAAAAAAAAAAAAAAAAAAAA7", name="Song number 7", artist="Artist 7")
    shown = [ScoredTrack(Track(track_id=f"AAAAAAAAAAAAAAAAAAAAB{i}", name=f"Other {i}", artist=f"A{i}"), 0.9 - i / 100)
             for i in range(5)]
    answer = Answer("r1", "voice", "voice message (9 s)", "m", None, None, shown, might_be=guess)
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    store.record_answer(**answer.record())
    store.close()
    reopened = FeedbackStore(tmp_path / "feedback.sqlite")  # the next process
    rebuilt = Answer.from_record(reopened.get_answer("r1"))
    assert rebuilt.might_be == guess
    assert "It might be **Artist 7 – Song number 7**" in answer_embed(rebuilt).description
    ((exported,),) = [list(reopened.rows(include_unvoted=True))]  # the export says what a vote may be about
    assert exported["might_be_id"] == guess.track_id and exported["might_be_title"] == "Artist 7 – Song number 7"
    row = {k: v for k, v in answer.record().items() if k != "might_be"}
    reopened.record_answer(**{**row, "answer_id": "r0"})  # as a row of the previous version
    assert Answer.from_record(reopened.get_answer("r0")).might_be is None
    reopened.close()
