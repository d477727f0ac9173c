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


def test_might_be_looks_at_the_cosine_nearest_even_when_mutual_proximity_ranks_a_hub_first() -> None:
    """Review finding: with SYNESTHETE_SIMILARITY_HUBNESS=mp the list is in MP order, so results[0]
    may be a hub; the played song (nearest by cosine) must still be named, not recommended to itself."""
    results = [ScoredTrack(_t(2, "Hub"), 0.51), ScoredTrack(_t(1, "Played"), 0.575)]
    assert might_be_of(None, [_fp(1)], results).name == "Played"


def test_confidence_levels_follow_the_landmark_evidence_not_the_saturated_probability() -> None:
    """Issue 30 item 5: every identification showed 0.991-0.997; three named levels say what the
    landmarks show (chance of aligning this well: < 1e-10 certain, < 1e-3 likely, else possible)."""
    from engine.identify import LEVEL_TEXT, Evidence, confidence_level, decide, landmark_surprise

    assert [confidence_level(s) for s in (25.0, 10.0, 9.9, 3.0, 2.9, 0.0)] == \
        ["certain", "certain", "likely", "likely", "possible", "possible"]
    assert set(LEVEL_TEXT) == {"certain", "likely", "possible"}
    def fp(key: int, score: int, conf: float) -> SimpleNamespace:
        return SimpleNamespace(track_key=_t(key, "").track_key, score=score, confidence=conf, offset_s=2.0)

    strong = Evidence(matches=(fp(1, 60, 0.95), fp(2, 3, 0.0), fp(3, 2, 0.0)), seconds=10.0)
    weak = Evidence(matches=(fp(1, 9, 0.6), fp(2, 3, 0.0), fp(3, 2, 0.0)), seconds=10.0)
    d_strong, d_weak = decide(strong, None, threshold=0.5), decide(weak, None, threshold=0.5)
    assert d_strong.surprise == landmark_surprise(60, 3) and d_strong.level == "certain"
    assert d_weak is None or d_weak.level in ("likely", "possible")
