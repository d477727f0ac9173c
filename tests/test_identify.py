"""engine.identify: the segment vote and the rule that turns two opinions into one answer."""

from __future__ import annotations

import numpy as np
import pytest

from engine.fingerprint.index import FingerprintMatch
from engine.identify import EMBEDDING_ALONE_MIN, Decision, Vote, decide, segment_vote, vote_confidence
from engine.store import SegmentHit

THR = 0.5


def fp(key: int, conf: float, offset: float = 12.0) -> FingerprintMatch:
    return FingerprintMatch(track_key=key, score=20, offset_s=offset, confidence=conf)


# ---- segment_vote -----------------------------------------------------------------


def test_segment_vote_scores_the_time_consistent_track():
    # 6 query segments at a 1.5-s hop; catalogue grid 3 s.  Track 7 is hit at one
    # consistent offset (query starts 30 s into it) by 4 segments, track 9 twice at scattered offsets.
    qt = np.arange(6) * 1.5
    hits = [[SegmentHit(7, 30.0, 0.9)], [SegmentHit(7, 31.5, 0.9)], [SegmentHit(9, 60.0, 0.8)],
            [SegmentHit(7, 34.5, 0.9)], [SegmentHit(9, 3.0, 0.8)], [SegmentHit(7, 37.5, 0.9)]]
    votes = segment_vote(hits, qt, bin_s=3.0)
    assert votes[0] == Vote(7, 4 / 6, 30.0)
    assert votes[0].track_key == 7 and votes[0][0] == 7  # still a tuple
    assert votes[1].track_key == 9 and votes[1].score == pytest.approx(1 / 6)


def test_segment_vote_counts_neighbouring_offset_bins():
    # offsets 29.4 s and 33.5 s fall in bins 10 and 11 (of 3 s): one window of +-1 bin holds both
    qt = np.array([0.0, 1.5])
    hits = [[SegmentHit(1, 29.4, 0.9)], [SegmentHit(1, 35.0, 0.9)]]
    (v,) = segment_vote(hits, qt, bin_s=3.0)
    assert v.score == 1.0 and v.offset_s in (30.0, 33.0)


def test_segment_vote_uses_only_the_first_hit_and_skips_empty_ones():
    qt = np.array([0.0, 3.0, 6.0, 9.0])
    hits = [[SegmentHit(1, 0.0, 0.9), SegmentHit(2, 0.0, 0.8)], [], [SegmentHit(1, 6.0, 0.9)], []]
    votes = segment_vote(hits, qt, bin_s=3.0)
    assert [v.track_key for v in votes] == [1]
    assert votes[0].score == 0.5  # 2 votes of 4 query segments


def test_segment_vote_of_nothing():
    assert segment_vote([], np.zeros(0), bin_s=3.0) == []


def test_vote_confidence_is_the_margin():
    assert vote_confidence([]) == 0.0
    assert vote_confidence([Vote(1, 0.7, 0.0)]) == pytest.approx(0.7)
    assert vote_confidence([Vote(1, 0.7, 0.0), Vote(2, 0.2, 0.0)]) == pytest.approx(0.5)


# ---- decide -------------------------------------------------------------------------


def test_agreement_gives_the_noisy_or():
    # a weak fingerprint (0.4) confirmed by the vote (margin 0.5): 1 - 0.6 * 0.5 = 0.7
    d = decide(fp(3, 0.4), [Vote(3, 0.6, 10.0), Vote(5, 0.1, 0.0)], threshold=THR, head_trained=False)
    assert d == Decision(3, pytest.approx(0.7), 12.0, "both")


def test_a_confident_fingerprint_alone():
    d = decide(fp(3, 0.9), [], threshold=THR, head_trained=False)
    assert d == Decision(3, 0.9, 12.0, "fingerprint")
    # against a vote for another track, the confident fingerprint still wins
    d = decide(fp(3, 0.9), [Vote(4, 0.8, 0.0)], threshold=THR, head_trained=True)
    assert d.track_key == 3 and d.method == "fingerprint"


def test_the_higher_of_agreement_and_fingerprint_wins():
    d = decide(fp(3, 0.6), [Vote(3, 0.5, 0.0)], threshold=THR, head_trained=True)
    assert d.method == "both" and d.confidence == pytest.approx(0.8)


def test_an_untrained_heads_vote_alone_gives_none():
    votes = [Vote(4, 0.9, 20.0)]
    assert decide(None, votes, threshold=THR, head_trained=False) is None
    d = decide(None, votes, threshold=THR, head_trained=True)
    assert d == Decision(4, pytest.approx(0.9), 20.0, "embedding")


def test_the_vote_alone_needs_a_margin_of_0_6_even_under_a_lower_threshold():
    below = [Vote(4, 0.55, 0.0)]
    assert decide(None, below, threshold=0.3, head_trained=True) is None
    at = [Vote(4, EMBEDDING_ALONE_MIN, 0.0)]
    assert decide(None, at, threshold=0.3, head_trained=True).method == "embedding"
    # and the threshold when it is higher than 0.6
    assert decide(None, [Vote(4, 0.7, 0.0)], threshold=0.8, head_trained=True) is None


def test_the_vote_alone_does_not_speak_over_a_confident_fingerprint_of_another_track():
    d = decide(fp(3, 0.55), [Vote(4, 0.95, 0.0)], threshold=THR, head_trained=True)
    assert d.track_key == 3 and d.method == "fingerprint"


def test_below_threshold_gives_none():
    assert decide(None, [], threshold=THR, head_trained=True) is None
    assert decide(fp(3, 0.3), [], threshold=THR, head_trained=True) is None
    # agreement that stays below: 1 - 0.8 * 0.8 = 0.36
    assert decide(fp(3, 0.2), [Vote(3, 0.2, 0.0)], threshold=THR, head_trained=True) is None
    # a weak fingerprint and a weak vote for different tracks
    assert decide(fp(3, 0.4), [Vote(4, 0.5, 0.0)], threshold=THR, head_trained=True) is None


def test_offset_is_never_negative():
    d = decide(None, [Vote(4, 0.9, -3.0)], threshold=THR, head_trained=True)
    assert d.offset_s == 0.0


def test_a_chance_landmark_match_does_not_let_an_untrained_vote_answer() -> None:
    """Confidence 0 = no margin over the runner-up: not a second opinion (found in review)."""
    votes = [Vote(7, 0.6, 3.0), Vote(8, 0.1, 0.0)]
    assert decide(fp(7, 0.0), votes, threshold=0.5, head_trained=False) is None
    weak = decide(fp(7, 0.1), votes, threshold=0.5, head_trained=False)
    assert weak is not None and weak.method == "both" and weak.confidence == pytest.approx(1 - 0.9 * 0.5)
