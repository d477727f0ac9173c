"""Spotify links as people paste them (issue 31, step 1): a table of real-world shapes."""

from __future__ import annotations

import pytest

from engine.links import find_spotify_link, link_sentence

T = "4uLU6hMCjMI75M1A2tKUQC"  # 22 base-62 characters, as Spotify's ids
U = "7ouMYWpwJ422jRcDASZB7P"

CASES = [
    (f"https://open.spotify.com/track/{T}", ("track", T, 0)),
    (f"https://open.spotify.com/track/{T}?si=a1b2c3d4e5f6", ("track", T, 0)),
    (f"https://open.spotify.com/track/{T}?si=abc&utm_source=copy-link", ("track", T, 0)),
    (f"http://open.spotify.com/track/{T}", ("track", T, 0)),
    (f"open.spotify.com/track/{T}", ("track", T, 0)),  # typed without the scheme (the page sends it as is)
    (f"notopen.spotify.com/track/{T}", None),
    (f"https://open.spotify.com/intl-de/track/{T}?si=x", ("track", T, 0)),
    (f"https://open.spotify.com/intl-pt-br/track/{T}", ("track", T, 0)),
    (f"https://open.spotify.com/embed/track/{T}", ("track", T, 0)),
    (f"https://open.spotify.com/track/{T}#comment", ("track", T, 0)),
    (f"spotify:track:{T}", ("track", T, 0)),
    (f"SPOTIFY:TRACK:{T}", ("track", T, 0)),
    (f"listen to this https://open.spotify.com/track/{T}?si=x it's great", ("track", T, 0)),
    (f"<https://open.spotify.com/track/{T}?si=x>", ("track", T, 0)),
    (f"[my song](https://open.spotify.com/track/{T})", ("track", T, 0)),
    (f"check https://open.spotify.com/track/{T}.", ("track", T, 0)),
    (f"check https://open.spotify.com/track/{T}!!", ("track", T, 0)),
    (f"(https://open.spotify.com/track/{T})", ("track", T, 0)),
    (f"https://open.spotify.com/track/{T}\nhttps://open.spotify.com/track/{U}", ("track", T, 1)),
    (f"spotify:track:{U} and https://open.spotify.com/track/{T}", ("track", U, 1)),
    (f"https://open.spotify.com/album/{T}?si=x", ("album", T, 0)),
    (f"https://open.spotify.com/playlist/{T}", ("playlist", T, 0)),
    (f"https://open.spotify.com/artist/{T}", ("artist", T, 0)),
    (f"https://open.spotify.com/episode/{T}", ("episode", T, 0)),
    (f"spotify:album:{T}", ("album", T, 0)),
    ("https://spotify.link/AbCdEf123", ("short", "", 0)),
    ("https://spotify.app.link/AbCdEf123?_p=x", ("short", "", 0)),
    ("https://open.spotify.com/track/4uLU6hMCjMI75M1A", ("invalid", "", 0)),  # cut off
    ("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC-x", ("invalid", "", 0)),
    ("just some words about a song", None),
    ("https://example.com/track/4uLU6hMCjMI75M1A2tKUQC", None),
    ("https://open.spotify.com/", None),
]


@pytest.mark.parametrize("text, want", CASES)
def test_link_shapes(text: str, want) -> None:
    got = find_spotify_link(text)
    assert (None if got is None else (got.kind, got.id, got.others)) == want


def test_a_huge_message_full_of_links_is_one_bounded_scan() -> None:
    text = f"https://open.spotify.com/track/{T} " * 400  # ~20,000 characters
    got = find_spotify_link(text * 2)
    assert got.kind == "track" and got.id == T and 0 < got.others < 800


@pytest.mark.parametrize("kind", ["short", "invalid", "album", "playlist", "artist", "episode"])
def test_every_non_track_link_gets_one_friendly_sentence(kind: str) -> None:
    from engine.links import SpotifyLink

    s = link_sentence(SpotifyLink(kind))
    assert s.endswith(".") and "\n" not in s and len(s) < 200


def test_the_cli_takes_the_first_track_link_and_refuses_other_links_with_exit_2() -> None:
    import io

    from engine import cli
    from engine.links import NotATrackLinkError
    from engine.startup import EXIT_USER_ERROR, exit_code

    out = io.StringIO()
    assert cli._track_link(f"https://open.spotify.com/track/{T}?si=1 https://open.spotify.com/track/{U}", out) == T
    assert out.getvalue() == "Answering the first of 2 Spotify links.\n"
    assert cli._track_link("Blue Transit", out) is None  # a name: searched as before
    with pytest.raises(NotATrackLinkError) as err:
        cli._track_link(f"https://open.spotify.com/playlist/{T}")
    assert exit_code(err.value) == EXIT_USER_ERROR and "playlist" in err.value.user_message
