"""How an answer looks in Discord: one embed, a line per track, within Discord's limits.

Limits that matter (https://discord.com/developers/docs/resources/message#embed-object-embed-limits):
title 256, description 4096, footer 2048 characters; we stay far below.
"""

from __future__ import annotations

import discord
from discord.utils import escape_markdown

from engine.service import ScoredTrack

from .answers import Answer

COLOUR = discord.Colour.from_rgb(138, 92, 246)
ERROR_COLOUR = discord.Colour.from_rgb(230, 120, 90)


def clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _md(text: str, n: int) -> str:
    return escape_markdown(clip(text, n)).replace("[", "(").replace("]", ")")


def track_line(rank: int, r: ScoredTrack) -> str:
    """One answer: link, artist, genre, the calibrated match and (on its own line) the reason."""
    track = r.track
    genre = ", ".join(track.genres[:2])
    parts = [f"`{rank:>2}.` [{_md(track.name, 80)}]({track.link})", f"— {_md(track.artist, 60)}" if track.artist else ""]
    tail = " · ".join(x for x in (_md(genre, 40) if genre else "",
                                  f"**{r.match_text}**") if x)
    line = " ".join(p for p in parts if p) + " · " + tail
    return line + (f"\n      ↳ {_md(r.reason, 120)}" if r.reason else "")


def fmt_time(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def answer_embed(answer: Answer) -> discord.Embed:
    ident = answer.identified
    if ident is not None:
        title = f"🎧 Sounds like {clip(ident.track.title, 200)}"
        head = (f"I'm **{ident.confidence * 100:.0f}%** sure"
                + (f", about {fmt_time(ident.offset_s)} in" if ident.offset_s >= 1 else "")
                + f". [Open in Spotify]({ident.track.link})"
                + (f"\n*{_md(ident.level_text, 120).capitalize()}.*" if getattr(ident, "level_text", "") else ""))
        url = ident.track.link
        sub = "**Songs like it**"
    elif answer.seed is not None:
        title = f"🎶 Songs like {clip(answer.seed.title, 200)}"
        head, url, sub = "", answer.seed.link, ""
    else:
        title = "🎧 Songs that sound like your clip"
        head = "I don't know this recording, but here is what it sounds like."
        url, sub = None, ""
        if answer.might_be is not None:
            head = (f"It might be **{_md(answer.might_be.title, 200)}** ([Spotify]({answer.might_be.link})), "
                    "but I'm not sure. Here is what it sounds like.")
    if answer.offset:
        title = clip(title + f" (more, {answer.offset + 1}–{answer.offset + len(answer.results)})", 256)
    lines = [track_line(answer.offset + i + 1, r) for i, r in enumerate(answer.results)]
    if not lines:
        lines = ["I found nothing similar in the catalogue."]
    desc = "\n".join(x for x in (head, sub) if x)
    desc = (desc + "\n\n" if desc else "") + "\n".join(lines)
    embed = discord.Embed(title=clip(title, 256), url=url, description=desc[:4096], colour=COLOUR)
    embed.set_footer(text=clip(f"{answer.query} · {answer.seconds:.1f} s · model {short_model(answer.model_id)} · "
                               f"ref {answer.answer_id}", 2048))
    return embed


def short_model(model_id: str) -> str:
    return clip(model_id.split("+")[0], 40) if model_id else "?"


def error_text(message: str, request_id: str | None) -> str:
    """One friendly sentence, with the reference that finds the detail in the log."""
    return f"{message} (ref `{request_id}`)" if request_id else message


def help_embed(settings) -> discord.Embed:
    e = discord.Embed(title="Synesthete — a music recommender that listens", colour=COLOUR)
    mode = {"all": "in any channel I can read", "allowlist": "in the channels the admins picked",
            "mention": "in a message that @mentions me"}.get(settings.bot_watch_mode, "")
    e.description = (
        f"Send me a **voice message** or an **audio file** (mp3, ogg/opus, m4a, wav, flac, webm, mp4) {mode} "
        "or in a DM, and I'll tell you which song it is (when I know it) and five songs that sound like it.")
    e.add_field(name="/similar track:<name>", value="Five songs like a track from the catalogue (start typing to search).",
                inline=False)
    e.add_field(name="/recommend file:<audio>", value="The same as sending audio, as a command.", inline=False)
    e.add_field(name="Right-click a message → Apps → Find similar songs",
                value="Listen to the audio in any message.", inline=False)
    e.add_field(name="Buttons", value="**More like this** pages on; the menu explores from one result; "
                "👍/👎 tell us how we did.", inline=False)
    e.add_field(name="Limits", value=f"{settings.bot_max_attachments} files per message, up to "
                f"{min(settings.bot_max_attachment_bytes, settings.max_upload_bytes) / 1048576:.0f} MB each; "
                f"I listen to the first {settings.max_query_seconds:.0f} s.", inline=False)
    return e


def about_embed(about: dict, extra: dict) -> discord.Embed:
    e = discord.Embed(title="About Synesthete", colour=COLOUR)
    e.add_field(name="Catalogue", value=f"{about.get('tracks', 0):,} tracks ({about.get('indexed_tracks', 0):,} with audio)")
    e.add_field(name="Model", value=clip(f"{about.get('backbone', '?')} · "
                                         f"{'trained head' if about.get('head_trained') else 'untrained head'}", 1024))
    e.add_field(name="Index built", value=str(about.get("index_built") or "unknown"))
    e.add_field(name="Vector store", value=clip(str(about.get("milvus", "?")), 1024))
    for k, v in extra.items():
        e.add_field(name=k, value=clip(str(v), 1024))
    e.set_footer(text=clip(f"model id {about.get('model_id', '?')}", 2048))
    return e


#: the radio's description stops before Discord's 4,096 (the rest is in the attached playlist)
RADIO_DESCRIPTION_BUDGET = 3800


def radio_embed(rec, footer: str = "") -> discord.Embed:
    """A radio (``SynestheteService.radio``): one line per track, as many as fit, each linked.

    Why attachments too (:func:`radio_files`): 50 linked lines can pass an embed's 4,096
    characters, and a playlist is taken away as a file, not copied line by line.
    """
    seed = rec.seed
    lines: list[str] = []
    used = 0
    for i, r in enumerate(rec.results, 1):
        line = (f"`{i:>2}.` [{_md(r.track.name, 70)}]({r.track.link})"
                + (f" — {_md(r.track.artist, 50)}" if r.track.artist else ""))
        if used + len(line) + 1 > RADIO_DESCRIPTION_BUDGET:
            lines.append(f"… and {len(rec.results) - i + 1} more in the attached playlist.")
            break
        lines.append(line)
        used += len(line) + 1
    if rec.note:
        lines.append(f"\n{_md(rec.note, 300)}")
    if not rec.results:
        lines = ["Nothing near enough to play after it; try another song."]
    embed = discord.Embed(title=f"📻 Radio from {clip(seed.title, 200)}" if seed else "📻 Radio",
                          url=seed.link if seed else None, description="\n".join(lines), colour=COLOUR)
    spotify = bool(rec.results) and all(r.track.link.startswith("https://open.spotify.com/track/")
                                        for r in rec.results)
    take = " · links.txt pastes into a Spotify playlist" if spotify else " · links.txt and radio.m3u attached"
    embed.set_footer(text=clip(f"{len(rec.results)} tracks, each near the one before{take}"
                               + (f" · {footer}" if footer else ""), 2000))
    return embed


def radio_files(rec) -> list[discord.File]:
    """The radio as ``links.txt`` (one link per line) and ``radio.m3u``: the forms too long for a message."""
    import io

    from engine.playlist import links_text, m3u_text

    tracks = [r.track for r in rec.results]
    if not tracks:
        return []
    title = f"Radio: {rec.seed.title}" if rec.seed else "Radio"
    return [discord.File(io.BytesIO(links_text(tracks).encode()), filename="links.txt"),
            discord.File(io.BytesIO(m3u_text(tracks, title).encode()), filename="radio.m3u")]
