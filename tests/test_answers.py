"""The discovery rule (engine.answers.diversify): at most N per artist, the seed's artist once."""

from __future__ import annotations

from engine.answers import by_similarity_in_pages, distinct_artists, diversify


def _art(x: tuple[str, str]) -> str:
    return x[0]


RANKED = [("A", "a1"), ("A", "a2"), ("A", "a3"), ("B", "b1"), ("B", "b2"), ("C", "c1"), ("D", "d1"), ("E", "e1")]


def test_one_per_artist_in_ranking_order():
    assert diversify(RANKED, 5, _art) == [("A", "a1"), ("B", "b1"), ("C", "c1"), ("D", "d1"), ("E", "e1")]


def test_seed_artist_gets_one_slot_even_with_a_higher_cap():
    out = diversify(RANKED, 5, _art, per_artist=2, seed_artist="a")
    assert [x[1] for x in out] == ["a1", "b1", "b2", "c1", "d1"]


def test_fills_up_from_the_best_skipped_when_artists_run_out():
    ranked = [("A", "a1"), ("A", "a2"), ("B", "b1"), ("A", "a3")]
    out = diversify(ranked, 3, _art)
    assert [x[1] for x in out] == ["a1", "b1", "a2"]  # new artists first, then the best of the rest
    assert distinct_artists(out, _art) == 2


def test_pages_are_prefixes_and_never_overlap():
    ranked = [("A", f"a{i}") for i in range(6)] + [("B", "b0"), ("C", "c0"), ("A", "a9"), ("D", "d0")]
    first = diversify(ranked, 5, _art)
    both = diversify(ranked, 10, _art)
    assert both[:5] == first
    assert not set(both[5:]) & set(first)


def test_seed_artist_fills_last_and_only_when_nothing_else_is_left():
    ranked = [("S", "s1"), ("A", "a1"), ("S", "s2"), ("A", "a2"), ("B", "b1"), ("A", "a3")]
    out = diversify(ranked, 5, _art, seed_artist="s")
    assert [x[1] for x in out] == ["s1", "a1", "b1", "a2", "a3"]
    assert [x[1] for x in diversify(ranked, 6, _art, seed_artist="s")][-1] == "s2"


def test_pages_sorted_by_score_keep_their_members():
    items = [("A", 0.5), ("B", 0.9), ("C", 0.7), ("D", 0.8), ("E", 0.1)]
    out = by_similarity_in_pages(items, 2, lambda x: x[1])
    assert out == [("B", 0.9), ("A", 0.5), ("D", 0.8), ("C", 0.7), ("E", 0.1)]


def test_off_is_the_raw_ranking():
    assert diversify(RANKED, 3, _art, per_artist=0) == RANKED[:3]


def test_unknown_artists_are_not_one_artist():
    ranked = [("", "x"), ("", "y"), ("A", "a1"), ("A", "a2")]
    assert [x[1] for x in diversify(ranked, 3, _art)] == ["x", "y", "a1"]
    assert distinct_artists([("", "x"), ("", "y")], _art) == 2


def test_k_zero_and_short_lists():
    assert diversify(RANKED, 0, _art) == []
    assert diversify(RANKED[:2], 5, _art) == RANKED[:2]
