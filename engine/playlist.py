"""A playlist to take away: the same tracks as links (one per line) or as an extended M3U file.

One place for every surface (CLI ``radio --links``, ``/api/radio?format=``, the bot's
attachment).  Links are each track's own (``Track.link``: ``open.spotify.com/track/…`` for a
Spotify catalogue, which Spotify's desktop app accepts pasted into a playlist; a Spotify search
for a catalogue that is not Spotify's).  M3U: the de-facto ``#EXTM3U`` / ``#EXTINF:<seconds>,
<artist> - <title>`` layout (as Winamp defined it and players read it), UTF-8.
"""

from __future__ import annotations

from collections.abc import Sequence

from .catalogue import Track

FORMATS = ("json", "links", "m3u", "csv")


def links_text(tracks: Sequence[Track]) -> str:
    """One link per line, in order, with a final newline ("" for no track)."""
    return "".join(f"{t.link}\n" for t in tracks)


def m3u_text(tracks: Sequence[Track], title: str = "") -> str:
    """Extended M3U: a header, then ``#EXTINF`` + the link per track (length -1 when unknown)."""
    lines = ["#EXTM3U"] + ([f"#PLAYLIST:{_one_line(title)}"] if title else [])
    for t in tracks:
        secs = round(t.duration_ms / 1000) if t.duration_ms else -1
        lines += [f"#EXTINF:{secs},{_one_line(t.title)}", t.link]
    return "\n".join(lines) + "\n"


def csv_text(tracks: Sequence[Track]) -> str:
    """``position,artist,title,track_id,link`` rows with a header (the csv module's quoting)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["position", "artist", "title", "track_id", "link"])
    for i, t in enumerate(tracks, 1):
        w.writerow([i, _cell(t.artist), _cell(t.name), _cell(t.track_id), t.link])
    return buf.getvalue()


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run: a leading ``= + - @`` (anyone who publishes a song
    picks its title) gets a ``'`` (OWASP's CSV-injection advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


__all__ = ["FORMATS", "csv_text", "links_text", "m3u_text"]
