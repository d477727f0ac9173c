"""Slash commands, autocomplete, context menu and buttons, through thin Interaction fakes."""

from __future__ import annotations

import logging

import asyncio
import csv
import json
import time

import discord.ext.test as dpytest
import pytest

from engine import errors as E

from .fakes import (FakeInteraction, FakeUser, attachment_dict, errors, make_attachment, post, queries,
                    sent_messages, votes)

AUDIO = b"OggS" + bytes(range(256)) * 100


def cog(bot, name):
    return bot.get_cog(name)


async def recommend(bot, inter, att):
    listen = cog(bot, "Listen")
    await listen.recommend.callback(listen, inter, att)


def audio_att(files, name="clip.m4a", ctype="audio/mp4", **kw):
    return make_attachment(attachment_dict(files.add(name, AUDIO), name, len(AUDIO), ctype, **kw))


async def test_recommend_defers_at_once_then_answers(bot, files):
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    assert inter.response.deferred == {"thinking": True, "ephemeral": False}
    (sent,) = inter.sent
    assert sent.via == "followup" and sent.embed.title.startswith("🎧 Sounds like")
    assert {type(c).__name__ for c in sent.view.children} == {"MoreButton", "ArtistButton", "RadioButton",
                                                              "VoteButton", "ReseedSelect"}
    assert queries(bot, "recommend", "ok") == 1


async def test_more_by_this_artist_answers_with_the_recognised_songs_artist(bot, files):
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    view = inter.sent[0].view
    seed = view.answer.seed
    assert view.artist is not None and view.artist.item.label == f"More by {seed.artist}"
    click = FakeInteraction(bot, FakeUser(9))
    await view.artist.callback(click)
    (sent,) = click.sent
    assert sent.view.answer.results and all(r.track.artist == seed.artist for r in sent.view.answer.results)
    assert bot.service.calls[-1][:2] == ("more_by_artist", seed.track_id)
    assert sent.view.artist is None  # no "more by" under an answer that already is "more by"
    assert queries(bot, "artist", "ok") == 1


async def test_recommend_with_a_non_audio_file_says_so(bot, files):
    inter = FakeInteraction(bot)
    att = make_attachment(attachment_dict(files.add("x.pdf", b"%PDF-1.4"), "x.pdf", 8, "application/pdf"))
    await recommend(bot, inter, att)
    assert inter.texts[0].startswith("That file doesn't look like audio") and files.hits == []


ENGINE_ERRORS = [cls for cls in vars(E).values()
                 if isinstance(cls, type) and issubclass(cls, E.SynestheteError)]


@pytest.mark.parametrize("cls", ENGINE_ERRORS, ids=lambda c: c.kind)
async def test_every_engine_error_kind_gives_its_sentence(bot, files, cls, caplog):
    caplog.set_level(logging.INFO, logger="bot.client")  # a person's own mistake (not_found) is logged at INFO
    bot.service.fail = cls("detail for the log only")
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    (text,) = inter.texts
    assert text.startswith(cls.user_message) and "detail for the log only" not in text
    rid = text.split("(ref `")[1].rstrip("`)")
    assert errors(bot, cls.kind) == 1
    assert any(rid in r.getMessage() and "detail for the log only" in r.getMessage() for r in caplog.records)


async def test_unexpected_exception_is_one_sentence_and_logged(bot, files, caplog):
    bot.service.fail = ZeroDivisionError("boom")
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    assert inter.texts[0].startswith(E.SynestheteError.user_message)
    assert errors(bot, "internal") == 1
    assert any("failed unexpectedly" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_busy_and_timeout_from_the_engine_wrappers(make_bot, files):
    bot = await make_bot(workers=1, query_timeout_s=0.3)
    bot.service.delay = 0.6
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    assert inter.texts[0].startswith(E.QueryTimeoutError.user_message)
    # fill the engine's 4 slots (workers=1 -> 4) with slow queries; the next is refused at once
    bot.service.delay = 0.8
    bot.settings = bot.settings.replace(query_timeout_s=5.0)
    bot.service.settings = bot.settings
    inters = [FakeInteraction(bot, FakeUser(100 + i), guild_id=1000 + i) for i in range(5)]
    await asyncio.gather(*(recommend(bot, i, audio_att(files, f"c{n}.ogg", "audio/ogg"))
                           for n, i in enumerate(inters)))
    texts = [i.sent[0].content or "" for i in inters]
    assert sum(t.startswith(E.BusyError.user_message) for t in texts) >= 1


async def test_guild_concurrency_cap(make_bot, files):
    bot = await make_bot(bot_guild_concurrency=1)
    bot.service.delay = 0.5
    a, b = FakeInteraction(bot, FakeUser(1)), FakeInteraction(bot, FakeUser(2))
    other_guild = FakeInteraction(bot, FakeUser(3), guild_id=999)
    await asyncio.gather(recommend(bot, a, audio_att(files, "a.ogg", "audio/ogg")),
                         recommend(bot, b, audio_att(files, "b.ogg", "audio/ogg")),
                         recommend(bot, other_guild, audio_att(files, "c.ogg", "audio/ogg")))
    answered = [i for i in (a, b) if i.embeds]
    refused = [i for i in (a, b) if not i.embeds]
    assert len(answered) == 1 and len(refused) == 1
    assert refused[0].texts[0].startswith("I'm already listening to 1 song for this server; please try again in ")
    assert other_guild.embeds  # another server is not held up
    assert errors(bot, "guild_busy") == 1 and bot.guild_slots.running == {}


async def test_concurrent_requests_run_in_parallel(make_bot, files):
    bot = await make_bot(workers=2)
    bot.service.delay = 0.6
    inters = [FakeInteraction(bot, FakeUser(10 + i), guild_id=50 + i) for i in range(2)]
    t0 = time.perf_counter()
    await asyncio.gather(*(recommend(bot, i, audio_att(files, f"p{n}.ogg", "audio/ogg"))
                           for n, i in enumerate(inters)))
    elapsed = time.perf_counter() - t0
    assert all(i.embeds for i in inters)
    assert elapsed < 1.1, f"two 0.6 s queries took {elapsed:.2f}s: not parallel"


async def test_a_slow_query_does_not_delay_another_command(bot, files):
    """The engine's CPU work runs in its pool: /help and autocomplete answer while it runs."""
    bot.service.delay = 1.5
    slow = FakeInteraction(bot, FakeUser(1))
    task = asyncio.create_task(recommend(bot, slow, audio_att(files)))
    await asyncio.sleep(0.2)  # the slow query is now inside the engine
    assert not task.done()
    info, search = cog(bot, "Info"), cog(bot, "Search")
    quick = FakeInteraction(bot, FakeUser(2))
    t0 = time.perf_counter()
    await info.show_help.callback(info, quick)
    choices = await search.track_autocomplete(quick, "song number 1")
    elapsed = time.perf_counter() - t0
    assert quick.sent[0].embed.title.startswith("Synesthete") and choices
    assert elapsed < 0.3, f"help + autocomplete took {elapsed:.2f}s behind a slow query"
    assert not task.done()
    await task
    assert slow.embeds


async def test_similar_with_autocomplete_value_and_free_text(bot):
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    choices = await search.track_autocomplete(inter, "artist 3")
    assert 0 < len(choices) <= 25 and all(len(c.name) <= 100 and len(c.value) <= 100 for c in choices)
    assert all(c.value.startswith("id:") for c in choices)
    await search.similar.callback(search, inter, choices[0].value)
    assert inter.embeds[0].title.startswith("🎶 Songs like Artist 3")
    assert ("similar_to", choices[0].value[3:], 5, 0) in bot.service.calls
    free = FakeInteraction(bot)
    await search.similar.callback(search, free, "song number 12")
    assert free.embeds[0].title == "🎶 Songs like Artist 5 – Song number 12"


async def test_similar_from_autocomplete_shows_and_stores_the_title_not_the_id(bot):
    """Issue 16: a track picked from the autocomplete showed "/similar id:…" in the footer and
    stored it as the query; the person picked a title, so that is what both say."""
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    choice = (await search.track_autocomplete(inter, "song number 12"))[0]
    await search.similar.callback(search, inter, choice.value)
    footer = inter.embeds[0].footer.text
    assert footer.startswith("/similar Artist 5 – Song number 12 · ") and "id:" not in footer
    typed = FakeInteraction(bot)
    await search.similar.callback(search, typed, "song number 12", genre="Rock", bpm="90-140")
    assert typed.embeds[0].footer.text.startswith("/similar song number 12 (genre Rock · 90-140 BPM) · ")
    queries_stored = [r["query"] for r in bot.feedback.rows(include_unvoted=True)]
    assert queries_stored == ["/similar Artist 5 – Song number 12",
                              "/similar song number 12 (genre Rock · 90-140 BPM)"]


async def test_more_pages_the_way_the_answer_was_made(bot, files):
    """"More like this" under a filtered /similar keeps the filters, and under "More by <artist>"
    pages more by that artist (it paged unfiltered similar tracks in both)."""
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    await search.similar.callback(search, inter, "song number 12", genre="Rock")
    wanted = bot.service.calls[-1][4]
    assert wanted.genres == ("Rock",)
    more = FakeInteraction(bot)
    await inter.sent[0].view.more.callback(more)
    assert bot.service.calls[-1] == ("similar_to", bot.service.tracks[12].track_id, 5, 5, wanted)
    assert more.embeds and more.sent[0].view.answer.filters == wanted

    rec = FakeInteraction(bot)
    await recommend(bot, rec, audio_att(files))
    by_artist = FakeInteraction(bot)
    await rec.sent[0].view.artist.callback(by_artist)
    first = by_artist.sent[0].view.answer
    assert first.kind == "artist" and len(first.results) == 4  # the stub's Artist 0 has four other songs
    more = FakeInteraction(bot)
    await by_artist.sent[0].view.more.callback(more)
    assert bot.service.calls[-1] == ("more_by_artist", bot.service.tracks[0].track_id, 5, 4)
    assert more.texts[0].startswith("That's all I have by Artist 0;")


async def test_similar_with_filters_and_a_contradictory_one(bot):
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    await search.similar.callback(search, inter, "song number 12", genre="Rock, Jazz", bpm="90-140")
    assert inter.embeds[0].title == "🎶 Songs like Artist 5 – Song number 12"
    assert bot.service.calls[-1][0] == "similar_to"
    bad = FakeInteraction(bot)
    await search.similar.callback(search, bad, "song number 12", bpm="140-90")
    assert bad.texts[0].startswith("The tempo range goes from 140 to 90")
    assert not bad.embeds


async def test_similar_not_found(bot):
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    await search.similar.callback(search, inter, "zzzz no such thing")
    assert inter.texts[0].startswith("I couldn't find “zzzz no such thing” in the catalogue")
    gone = FakeInteraction(bot)
    await search.similar.callback(search, gone, "id:NOPE")
    assert gone.texts[0].startswith(E.TrackNotFoundError.user_message)


async def test_autocomplete_limits(bot):
    search = cog(bot, "Search")
    inter = FakeInteraction(bot)
    assert await search.track_autocomplete(inter, "s") == []  # too short to search
    many = await search.track_autocomplete(inter, "song")
    assert len(many) == 25
    long_ = await search.track_autocomplete(inter, "extraordinarily")
    assert len(long_) == 1 and len(long_[0].name) == 100 and long_[0].name.endswith("…")


async def test_autocomplete_answers_empty_rather_than_late(bot, monkeypatch):
    import bot.cogs.search as search_mod

    monkeypatch.setattr(search_mod, "AUTOCOMPLETE_BUDGET_S", 0.2)
    bot.service.search_delay = 1.0
    search = cog(bot, "Search")
    t0 = time.perf_counter()
    assert await search.track_autocomplete(FakeInteraction(bot), "song") == []
    assert time.perf_counter() - t0 < 0.6


async def test_context_menu_on_message_with_and_without_audio(bot, files):
    c = dpytest.get_config()
    channel, member = c.channels[0], c.members[0]
    listen = cog(bot, "Listen")
    # a message the bot does not answer on its own (no attachments) -> menu says there is no audio
    plain = await post(channel, member, "just text")
    inter = FakeInteraction(bot)
    await listen.ctx_menu.callback(inter, plain)
    assert inter.sent[0].ephemeral and inter.texts[0].startswith("That message has no audio")
    bot.settings = bot.settings.replace(bot_watch_mode="mention")  # so posting does not answer by itself
    url = files.add("v.ogg", AUDIO)
    voice = await post(channel, member, "", [attachment_dict(url, "voice-message.ogg", len(AUDIO), voice=True)])
    sent_messages()
    inter = FakeInteraction(bot)
    await listen.ctx_menu.callback(inter, voice)
    assert inter.response.deferred and inter.embeds[0].title.startswith("🎧 Sounds like")
    assert queries(bot, "context_menu", "ok") == 1
    assert any(cmd.name == "Find similar songs" for cmd in bot.tree.get_commands(type=listen.ctx_menu.type))


async def test_more_like_this_pages_then_reseeds(bot, files):
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    first = inter.sent[0]
    view = first.view
    seen = [r.track.track_id for r in view.answer.results]
    # pages 2 and 3 come from the pool fetched with the clip; page 4 from similar_to(identified, offset)
    for page in range(2, 5):
        click = FakeInteraction(bot, FakeUser(7))
        await view.more.callback(click)
        (sent,) = click.sent
        assert f"(more, {(page - 1) * 5 + 1}–{page * 5})" in sent.embed.title
        ids = [r.track.track_id for r in sent.view.answer.results]
        assert not set(ids) & set(seen)
        seen += ids
        view = sent.view
    assert bot.service.calls[-1][0] == "similar_to" and bot.service.calls[-1][3] == 15
    # reseed from a chosen result
    pick = view.answer.results[2].track
    view.reseed.item._values = [pick.track_id]
    click = FakeInteraction(bot, FakeUser(8))
    await view.reseed.callback(click)
    assert click.embeds[0].title == f"🎶 Songs like {pick.title}"
    assert queries(bot, "more", "ok") == 3 and queries(bot, "reseed", "ok") == 1


async def test_more_on_unknown_clip_runs_out_politely(bot, files):
    bot.service.identify = False
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    view = inter.sent[0].view
    assert inter.embeds[0].title == "🎧 Songs that sound like your clip"
    for _ in range(2):
        click = FakeInteraction(bot)
        await view.more.callback(click)
        view = click.sent[0].view
    assert view.more.item.disabled  # pool used up and no seed track: nothing more to page
    click = FakeInteraction(bot)
    await view.more.callback(click)
    assert click.texts[0].startswith("That's all I have for this clip")


async def test_feedback_is_stored_with_query_model_and_answer_and_exported(bot, files, tmp_path):
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files, "mine.ogg", "audio/ogg"))
    view = inter.sent[0].view
    up, down = FakeInteraction(bot, FakeUser(1)), FakeInteraction(bot, FakeUser(2))
    await view.up.callback(up)
    await view.down.callback(down)
    again = FakeInteraction(bot, FakeUser(2))
    await view.up.callback(again)  # user 2 changes their mind: one vote per user
    assert up.sent[0].ephemeral and up.texts[0].startswith("Thanks")
    assert bot.feedback.counts() == {"answers": 1, "up": 2, "down": 0}
    n = bot.feedback.export(tmp_path / "fb.csv")
    rows = list(csv.DictReader((tmp_path / "fb.csv").read_text(encoding="utf-8").splitlines()))
    assert n == 2 and rows[0]["query"] == "file mine.ogg" and rows[0]["model_id"] == bot.service.model_id
    assert rows[0]["identified_id"] == bot.service.tracks[0].track_id
    assert len(rows[0]["result_ids"].split("|")) == 5
    bot.feedback.export(tmp_path / "fb.json")
    data = json.loads((tmp_path / "fb.json").read_text())
    assert {r["vote"] for r in data} == {1} and data[0]["flow"] == "recommend"
    assert votes(bot, "up") == 2 and votes(bot, "down") == 1


async def test_help_and_about(bot):
    info = cog(bot, "Info")
    h = FakeInteraction(bot)
    await info.show_help.callback(info, h)
    assert h.sent[0].ephemeral and "/similar" in str(h.sent[0].embed.to_dict())
    a = FakeInteraction(bot)
    await info.show_about.callback(info, a)
    fields = {f.name: f.value for f in a.embeds[0].fields}
    assert fields["Catalogue"].startswith(f"{len(bot.service.tracks)} tracks")
    assert fields["Index built"] == "2024-01-01T00:00:00Z" and "stub" in fields["Model"]


async def test_command_tree_has_every_command(bot):
    names = {c.name for c in bot.tree.get_commands()}
    assert names >= {"recommend", "similar", "help", "about", "Find similar songs"}
    for c in bot.tree.get_commands():
        assert len(getattr(c, "description", "") or "x") <= 100


async def test_tree_error_handler_says_one_sentence(bot, caplog):
    from discord import app_commands

    inter = FakeInteraction(bot)
    inter.command = bot.tree.get_command("similar")
    await bot.tree.on_error(inter, app_commands.AppCommandError("transformer blew up"))
    assert inter.sent[0].ephemeral and inter.texts[0].startswith(E.SynestheteError.user_message)
    assert "failed outside the request path" in caplog.text


async def test_buttons_work_when_the_answer_could_not_be_stored(bot, files, monkeypatch, caplog):
    """A failed feedback write (disk full, locked file) must not break the buttons of the answer
    just posted: the process keeps its latest answers in memory."""
    def full_disk(**_):
        raise OSError("database or disk is full")

    monkeypatch.setattr(bot.feedback, "record_answer", full_disk)
    inter = FakeInteraction(bot)
    await recommend(bot, inter, audio_att(files))
    assert "could not store answer" in caplog.text
    more = FakeInteraction(bot)
    await inter.sent[0].view.more.callback(more)
    assert more.embeds and "(more, 6–10)" in more.embeds[0].title
