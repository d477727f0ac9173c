"""Answer filters (engine.filters): one parser and validator for every surface."""

from __future__ import annotations

import pytest

from engine.errors import BadFilterError
from engine.filters import TrackFilter, genre_hash, instrumental_score, make_filter, parse_range


@pytest.mark.parametrize(("text", "want"), [
    ("100-130", (100.0, 130.0)), ("100 - 130", (100.0, 130.0)), ("100..130", (100.0, 130.0)),
    ("120-", (120.0, None)), ("-90", (None, 90.0)), ("120", (120.0, 120.0)), ("", (None, None)), (None, (None, None)),
])
def test_parse_range(text, want):
    assert parse_range(text, "tempo") == want


@pytest.mark.parametrize("text", ["fast", "1-2-3", "-", "abc-10"])
def test_unreadable_range_is_a_sentence(text):
    with pytest.raises(BadFilterError) as e:
        parse_range(text, "tempo")
    assert "tempo range" in e.value.user_message


def test_contradictory_and_out_of_range_filters_are_refused():
    with pytest.raises(BadFilterError, match="130.0 > 100.0") as e:
        make_filter(bpm="130-100")
    assert "lower end must come first" in e.value.user_message
    with pytest.raises(BadFilterError) as e:
        make_filter(popularity="50-150")
    assert "between 0 and 100" in e.value.user_message


def test_expression_and_description():
    f = make_filter("Rock, Jazz ", "100-130", True, "20-")
    assert f.active
    rock, jazz = sorted([genre_hash("rock"), genre_hash("JAZZ ")])
    genres = " or ".join(f"genre{i} in [{rock}, {jazz}]" for i in range(4))
    assert f.to_expr() == (f"({genres}) and bpm >= 100.0 and "
                           "(bpm >= 0 and bpm <= 130.0) and instrumental >= 0.5 and popularity >= 20")
    assert f.describe() == "genre Rock or Jazz · 100-130 BPM · instrumental · popularity 20-100"
    assert not TrackFilter().active and TrackFilter().to_expr() == ""


def test_genre_text_cannot_reach_the_expression():
    f = make_filter('rock" or track_key > 0 or "x')
    assert f.to_expr() == "(" + " or ".join(f"genre{i} in [{genre_hash(f.genres[0])}]" for i in range(4)) + ")"
    from engine.store import genre_slots

    slots = genre_slots(["Rock", "rock ", "Jazz", "", "Pop", "Blues", "Soul"])
    assert slots == {"genre0": genre_hash("rock"), "genre1": genre_hash("jazz"), "genre2": genre_hash("pop"),
                     "genre3": genre_hash("blues")}
    assert genre_slots([]) == {f"genre{i}": 0 for i in range(4)}
    assert genre_hash("") == 0 and genre_hash("Hip-Hop") == genre_hash(" hip-hop ")


def test_instrumental_score():
    names = ("instrumental", "female vocalists", "male vocalists", "rock")
    assert instrumental_score(names, [0.2, 0.01, 0.02, 0.5]) == pytest.approx(0.2 / 0.22)
    assert instrumental_score(names, [0.01, 0.6, 0.1, 0.5]) < 0.05
    assert instrumental_score(names, None) is None
    assert instrumental_score(("rock",), [0.3]) is None
