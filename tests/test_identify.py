"""engine.identify: the segment vote and the rule that turns two opinions into one answer."""

from __future__ import annotations

import numpy as np
import pytest

from engine.fingerprint.index import FingerprintMatch
from engine.identify import (FEATURES, MAX_PROBABILITY, SAFE_MARGIN_CONFIDENCE, Calibration, Decision, Evidence,
                             Observations, Vote, candidate_features, candidates, decide, evidence, segment_vote,
                             vote_confidence)
from engine.store import SegmentHit

THR = 0.5


def fp(key: int, conf: float, offset: float = 12.0, score: int = 20) -> FingerprintMatch:
    return FingerprintMatch(track_key=key, score=score, offset_s=offset, confidence=conf, query_landmarks=900)


def ev(matches=(), votes=(), n_segments: int = 6, seconds: float = 10.0) -> Evidence:
    return Evidence(tuple(matches), tuple(votes), n_segments if votes else 0, seconds)


def calibration(**weights: float) -> Calibration:
    """A hand-made model on raw features (mean 0, scale 1): the named weights, bias ``bias``."""
    bias = weights.pop("bias", 0.0)
    return Calibration(tuple(weights.get(f, 0.0) for f in FEATURES), bias, (0.0,) * len(FEATURES),
                       (1.0,) * len(FEATURES))


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


def test_vote_confidence_is_the_margin_shrunk_for_few_segments():
    assert vote_confidence([]) == 0.0
    assert vote_confidence([Vote(1, 0.7, 0.0)]) == pytest.approx(0.7)
    assert vote_confidence([Vote(1, 0.7, 0.0), Vote(2, 0.2, 0.0)]) == pytest.approx(0.5)
    # a unanimous vote of two segments is not certainty (issue 15): 2 / (2 + 2)
    assert vote_confidence([Vote(1, 1.0, 0.0)], n_segments=2) == pytest.approx(0.5)
    assert vote_confidence([Vote(1, 1.0, 0.0)], n_segments=18) == pytest.approx(0.9)


def test_segment_vote_can_leave_a_track_out():
    """With the recorded song removed, each segment's next-nearest track votes (the calibration's unknown songs)."""
    qt = np.array([0.0, 3.0])
    hits = [[SegmentHit(1, 0.0, 0.9), SegmentHit(2, 30.0, 0.8)], [SegmentHit(1, 3.0, 0.9), SegmentHit(2, 33.0, 0.8)]]
    assert segment_vote(hits, qt, bin_s=3.0)[0].track_key == 1
    (v,) = segment_vote(hits, qt, bin_s=3.0, exclude=1)
    assert v == Vote(2, 1.0, 30.0)


# ---- the safe (uncalibrated) rule -------------------------------------------------------


def test_safe_rule_answers_a_confident_fingerprint():
    d = decide(ev([fp(3, 0.9), fp(5, 0.0, score=4)]), None, threshold=0.9)
    assert d == Decision(3, 0.9, 12.0, "fingerprint")
    # against a vote for another track, the confident fingerprint still wins
    d = decide(ev([fp(3, 0.9)], [Vote(4, 0.8, 0.0)]), None, threshold=0.9)
    assert d.track_key == 3 and d.method == "fingerprint"


def test_safe_rule_ignores_the_threshold_setting_and_uses_its_margin():
    """identify_threshold is a probability: it applies to calibrated answers only."""
    assert decide(ev([fp(3, SAFE_MARGIN_CONFIDENCE)]), None, threshold=0.99) is not None
    assert decide(ev([fp(3, SAFE_MARGIN_CONFIDENCE - 0.01)]), None, threshold=0.0) is None


def test_safe_rule_agreement_is_a_noisy_or_with_the_shrunk_vote():
    # weak fingerprint 0.4, vote margin 0.5 over 6 segments -> 0.5 * 6/8 = 0.375: 1 - 0.6 * 0.625 = 0.625
    d = decide(ev([fp(3, 0.4)], [Vote(3, 0.6, 10.0), Vote(5, 0.1, 0.0)]), None, threshold=0.9)
    assert d == Decision(3, pytest.approx(0.625), 12.0, "both")


def test_safe_rule_never_lets_the_vote_answer_alone():
    """Issue 15: a trained head's unanimous vote of 2-3 segments said wrong songs at 1.0."""
    assert decide(ev([], [Vote(4, 1.0, 0.0)], n_segments=3), None, threshold=0.5) is None
    assert decide(ev([fp(3, 0.3)], [Vote(4, 1.0, 0.0)]), None, threshold=0.5) is None


def test_a_chance_landmark_match_is_no_second_opinion():
    """Confidence 0 = no margin over the runner-up: the vote cannot lift it (found in review)."""
    votes = [Vote(7, 1.0, 3.0)]
    assert decide(ev([fp(7, 0.0)], votes, n_segments=30), None, threshold=0.5) is None


def test_two_unanimous_segments_cannot_reach_certainty():
    d = decide(ev([fp(3, 0.45)], [Vote(3, 1.0, 0.0)], n_segments=2), None, threshold=0.5)
    assert d is not None and d.confidence == pytest.approx(1 - 0.55 * 0.5)


# ---- the calibrated rule -----------------------------------------------------------------


def test_candidate_features_measure_the_margin_over_the_runner_up():
    e = ev([fp(3, 0.9, score=40), fp(5, 0.0, score=8)], [Vote(3, 0.5, 0.0), Vote(9, 0.25, 0.0)], n_segments=4)
    x = dict(zip(FEATURES, candidate_features(e, 3)))
    from scipy.stats import poisson

    assert -poisson.logsf(39, 9) / np.log(10) > 10  # P(X >= 40), X ~ Poisson(9): beyond the cap
    assert x["fp_surprise"] == 10.0
    weak = dict(zip(FEATURES, candidate_features(ev([fp(3, 0.2, score=8), fp(5, 0.0, score=3)]), 3)))
    assert weak["fp_surprise"] == pytest.approx(-poisson.logsf(7, 4) / np.log(10))
    assert x["fp_runner_up"] == pytest.approx(np.log1p(8))
    assert x["vote_margin"] == pytest.approx(0.25 * 2.0)
    assert x["agree"] == 1.0 and x["log_landmarks"] == pytest.approx(np.log1p(900))
    y = dict(zip(FEATURES, candidate_features(e, 9)))  # the vote's runner-up has no landmark score
    assert y["fp_surprise"] == 0.0 and y["fp_runner_up"] == pytest.approx(np.log1p(40)) and y["agree"] == 0.0
    assert candidates(e) == [3]
    assert candidates(ev([fp(3, 0.9)], [Vote(4, 0.5, 0.0)])) == [3, 4]


def test_calibrated_rule_answers_with_the_probability():
    cal = calibration(fp_surprise=1.0, bias=-4.0)  # P = sigmoid(surprise - 4)
    e = ev([fp(3, 0.9, score=40), fp(5, 0.0, score=8)])
    d = decide(e, cal, threshold=0.9)
    assert d.track_key == 3 and d.method == "fingerprint"
    assert d.confidence == pytest.approx(1 / (1 + np.exp(-(10.0 - 4))))  # 40 vs 8: surprise capped at 10
    assert decide(e, cal, threshold=0.9995) is None  # never above MAX_PROBABILITY
    assert decide(ev([fp(3, 0.1, score=10), fp(5, 0.0, score=8)]), cal, threshold=0.9) is None


def test_calibrated_rule_picks_the_more_probable_candidate():
    cal = calibration(vote_margin=3.0, fp_surprise=0.1, bias=-2.0)
    e = ev([fp(3, 0.2, score=12), fp(5, 0.0, score=10)], [Vote(4, 0.9, 21.0), Vote(3, 0.05, 0.0)], n_segments=9)
    d = decide(e, cal, threshold=0.5)
    assert d.track_key == 4 and d.method == "embedding" and d.offset_s == 21.0


def test_probabilities_never_reach_one():
    cal = calibration(fp_surprise=50.0)
    d = decide(ev([fp(3, 1.0, score=900), fp(5, 0.0, score=1)]), cal, threshold=0.5)
    assert d.confidence == MAX_PROBABILITY


def test_offset_is_never_negative():
    d = decide(ev([], [Vote(4, 0.9, -3.0)]), calibration(vote_margin=5.0), threshold=0.5)
    assert d.offset_s == 0.0


def test_evidence_without_the_recorded_song_keeps_the_others_exactly():
    obs = Observations((fp(3, 0.9, score=40), fp(5, 0.0, score=8), fp(6, 0.0, score=7)),
                       ((SegmentHit(3, 0.0, 0.9), SegmentHit(6, 9.0, 0.8)),
                        (SegmentHit(3, 3.0, 0.9), SegmentHit(6, 12.0, 0.8))),
                       np.array([0.0, 3.0]), 3.0, 10.0)
    known = evidence(obs)
    assert [m.track_key for m in known.matches] == [3, 5, 6] and known.votes[0].track_key == 3
    unknown = evidence(obs, exclude=3)
    assert [m.score for m in unknown.matches] == [8, 7]
    # the new best gets the margin confidence the index would give it (the safe rule reads it)
    from engine.fingerprint.index import confidence

    assert unknown.matches[0].confidence == confidence(8, 7) and unknown.matches[1].confidence == 0.0
    assert unknown.votes[0] == Vote(6, 1.0, 9.0) and unknown.n_segments == 2
    one = Observations(obs.matches, obs.hits[:1], np.array([0.0]), 3.0, 10.0)
    assert evidence(one).votes == () and evidence(one).n_segments == 0
