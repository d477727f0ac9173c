"""Spotify links in what people paste: ``open.spotify.com/track/ID?si=…``, ``spotify:track:ID``, …

Why a parser of our own: the shapes are few and stable (Spotify's URI scheme and its web
player's paths), the work is finding them inside a chat message (angle brackets, Markdown
``[text](url)``, trailing punctuation), and no maintained library does that without a
network call.  Short links (``spotify.link/…``, ``spotify.app.link/…``) need a redirect the
engine may not be able to follow, so they are recognised and answered with a sentence asking
for the full link.  Pure functions: no I/O, no logging.

    find_spotify_link("listen <https://open.spotify.com/intl-de/track/4uLU6hMCjMI75M1A2tKUQC?si=x>!")
    -> SpotifyLink(kind="track", id="4uLU6hMCjMI75M1A2tKUQC", others=0)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from typing import TYPE_CHECKING

from .errors import SynestheteError, TrackNotFoundError

if TYPE_CHECKING:
    from .catalogue import Track

#: A Spotify id: 22 characters of base 62.
SPOTIFY_ID = r"[0-9A-Za-z]{22}"
#: What a link can point at (Spotify's URI types).
KINDS = ("track", "album", "playlist", "artist", "episode", "show", "user")

_WEB = re.compile(
    r"(?:https?://)?(?<![\w.])open\.spotify\.com/(?:intl-[a-z]{2}(?:-[a-z]{2,4})?/)?(?:embed/)?"
    r"(?P<kind>[a-z]+)/(?P<id>[^\s/?#>)\]]+)", re.IGNORECASE)
_URI = re.compile(r"\bspotify:(?P<kind>[a-z]+):(?P<id>[^\s:>)\]]+)", re.IGNORECASE)
_SHORT = re.compile(r"https?://(?:spotify\.link|spotify\.app\.link)/[^\s>)\]]+", re.IGNORECASE)
_ID = re.compile(rf"^{SPOTIFY_ID}$")


@dataclass(frozen=True)
class SpotifyLink:
    """The first Spotify link found in a text.

    ``kind``: ``track``, another of :data:`KINDS`, ``short`` (a short link: needs the full one)
    or ``invalid`` (a track/... path whose id is not 22 base-62 characters).  ``id``: the
    22-character id (tracks and other kinds), else "".  ``others``: how many more Spotify
    links the text holds (only the first is answered; the answer says so).
    """

    kind: str
    id: str = ""
    others: int = 0

    @property
    def is_track(self) -> bool:
        return self.kind == "track"


def find_spotify_link(text: str, *, max_chars: int = 20_000) -> SpotifyLink | None:
    """The first Spotify link in ``text`` (a chat message, a search box), or None when there is none.

    Only the first ``max_chars`` characters are read (a 10,000-character message full of
    links costs one bounded scan).  Links are ordered by position, web links, ``spotify:``
    URIs and short links alike.
    """
    text = (text or "")[:max_chars]
    found: list[tuple[int, SpotifyLink]] = []
    for rx in (_WEB, _URI):
        for m in rx.finditer(text):
            kind, raw = m.group("kind").lower(), m.group("id")
            ident = raw.rstrip(".,;:!?'\"")
            if kind not in KINDS:
                continue
            found.append((m.start(), SpotifyLink(kind if _ID.match(ident) else "invalid", ident if _ID.match(ident)
                                                 else "")))
    found += [(m.start(), SpotifyLink("short")) for m in _SHORT.finditer(text)]
    if not found:
        return None
    found.sort(key=lambda x: x[0])
    first = found[0][1]
    return SpotifyLink(first.kind, first.id, len(found) - 1)


def link_sentence(link: SpotifyLink) -> str:
    """What to say about a link that is not a track id we can look up (one friendly sentence)."""
    if link.kind == "short":
        return ("Short spotify.link links need a redirect I can't follow here; open it and paste the full "
                "open.spotify.com/track/… link, or send me a voice note of the song.")
    if link.kind == "invalid":
        return "That Spotify link looks cut off; paste the whole open.spotify.com/track/… link."
    return (f"That's a Spotify {link.kind} link; I answer track links, or send me a voice note of a song "
            "and I'll find what sounds like it.")


class NotATrackLinkError(SynestheteError):
    """A Spotify link that is not a track we can look up (album, playlist, short, cut off)."""

    kind = "not_a_track_link"
    user_message = "That Spotify link isn't a track link; paste a track's link or send me a voice note."


#: what a track link to a song outside the catalogue gets (instead of "couldn't find that track")
NOT_IN_CATALOGUE = ("That song isn't in my catalogue; send me a voice note of it and I'll find what "
                    "sounds like it.")


def track_id_from(text: str) -> tuple[str, SpotifyLink | None]:
    """``(track_id, link)``: the id of the first Spotify track link in ``text``, else ``text`` itself.

    One rule for every surface that takes "a track" (``synesthete similar``, ``/api/similar``).
    Raises :class:`NotATrackLinkError` (its sentence from :func:`link_sentence`) for a link
    that is not a track's.
    """
    link = find_spotify_link(text)
    if link is None:
        return text.strip(), None
    if not link.is_track:
        raise NotATrackLinkError(f"{link.kind} link: {text[:200]!r}", user_message=link_sentence(link))
    return link.id, link


#: what a track link gets from a catalogue built without Spotify ids (``synesthete-index build --not-spotify``)
NO_SPOTIFY_TRACKS = ("This catalogue has no Spotify tracks, so I can't look up Spotify links here; send me a "
                     "voice note of the song and I'll find what sounds like it.")


def check_link_seed(seed: Track | None, from_link: bool) -> None:
    """After a lookup by a link's id: the track found must be a Spotify track of the catalogue.

    Why: a ``--not-spotify`` catalogue's own ids can look like Spotify ids; a pasted link
    matching one is a coincidence, not the song.  Raises ``TrackNotFoundError`` with
    :data:`NO_SPOTIFY_TRACKS`.
    """
    if from_link and seed is not None and seed.link_kind != "spotify":
        raise TrackNotFoundError(f"{seed.track_id!r} is a local id, not a Spotify track",
                                 user_message=NO_SPOTIFY_TRACKS)


@contextmanager
def looking_up(from_link: bool, has_spotify_ids: Callable[[], bool] | None = None) -> Iterator[None]:
    """Around a track lookup by an id from :func:`track_id_from`: a link to a song the catalogue
    lacks says :data:`NOT_IN_CATALOGUE` instead of "I couldn't find that track" (``from_link``:
    the id came from a link), or :data:`NO_SPOTIFY_TRACKS` when ``has_spotify_ids()`` says
    the catalogue has none (asked only then: one SQLite probe).

    Only the lookup's plain "not found" is re-worded (it keeps the class's own sentence); a
    track the catalogue has but cannot compare keeps its more specific sentence, and an id
    that did not come from a link keeps everything as it is.  One rule for the CLI and the web API.
    """
    try:
        yield
    except TrackNotFoundError as exc:
        if not from_link or exc.user_message != TrackNotFoundError.user_message:
            raise
        sentence = NO_SPOTIFY_TRACKS if has_spotify_ids is not None and not has_spotify_ids() else NOT_IN_CATALOGUE
        raise TrackNotFoundError(str(exc), user_message=sentence) from exc


__all__ = ["KINDS", "NOT_IN_CATALOGUE", "NO_SPOTIFY_TRACKS", "check_link_seed", "NotATrackLinkError", "SpotifyLink", "find_spotify_link", "link_sentence",
           "looking_up", "track_id_from"]
