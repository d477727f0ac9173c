"""Issue 30 item 7: when nothing is identified the played song is never recommended to itself."""

from __future__ import annotations

import io
from types import SimpleNamespace

from engine import cli
from engine.catalogue import Track
from engine.service import Recommendation, ScoredTrack, might_be_of


def _t(key: int, name: str) -> Track:
    return Track(f"id{key}", name, "Artist", ["rock"], 10)


def _fp(key: int, score: int = 40) -> SimpleNamespace:
    return SimpleNamespace(track_key=_t(key, "").track_key, score=score)


def test_the_nearest_track_that_is_also_the_landmarks_best_is_a_might_be() -> None:
    results = [ScoredTrack(_t(1, "Played"), 0.575), ScoredTrack(_t(2, "Other"), 0.51)]
    assert might_be_of(None, [_fp(1)], results).name == "Played"
    assert might_be_of(None, [_fp(2)], results) is None  # opinions differ: nothing said
    assert might_be_of(None, [], results) is None  # no landmark candidate at all
    # a top candidate no stronger than chance (the runner-up's level) is no evidence
    assert might_be_of(None, [_fp(1, 6), _fp(2, 5)], results) is None
    assert might_be_of(None, [_fp(1, 40), _fp(2, 5)], results).name == "Played"
    assert might_be_of(object(), [_fp(1)], results) is None  # identified: it says so itself


def test_a_might_be_is_said_hedged_and_survives_the_api() -> None:
    rec = Recommendation(None, [ScoredTrack(_t(2, "Other"), 0.51)], might_be=_t(1, "Played"))
    back = Recommendation.from_dict(rec.to_dict())
    assert back.might_be.name == "Played" and [r.track.name for r in back.results] == ["Other"]
    out = io.StringIO()
    cli._print_recommendation(back, out)
    text = out.getvalue()
    assert text.startswith("Might be: Artist – Played  (not sure;") and "Not a song I know" not in text
    assert "Played" not in text.split("\n", 2)[2]  # not among the recommendations
