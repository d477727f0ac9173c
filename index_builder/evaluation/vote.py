"""Identification as the service decides it, on exact numpy search instead of Milvus.

The segment vote and the rule that turns it and the landmark match into an answer
are the engine's own (:mod:`engine.identify`); only the search differs, so a
"combined" figure is what the service would answer, not what a copy of its rule would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.identify import MIN_VOTE_SEGMENTS, Calibration, Evidence, Vote, decide, segment_vote
from engine.store import SegmentHit


def exact_segment_hits(q_segs: np.ndarray, cat_segs: np.ndarray, cat_owner: np.ndarray, cat_times: np.ndarray,
                       candidates: int) -> list[list[SegmentHit]]:
    """Per query segment, its ``candidates`` nearest catalogue segments (cosine, best first).

    ``q_segs`` (n, D) and ``cat_segs`` (m, D) L2-normalised; ``cat_owner`` (m,) track index
    and ``cat_times`` (m,) start (s) of each catalogue segment.
    """
    sims = q_segs @ cat_segs.T
    c = min(candidates, sims.shape[1])
    top = np.argpartition(-sims, c - 1, axis=1)[:, :c]
    hits = []
    for i in range(len(q_segs)):
        order = top[i][np.argsort(-sims[i, top[i]])]
        hits.append([SegmentHit(int(cat_owner[j]), float(cat_times[j]), float(sims[i, j])) for j in order])
    return hits


def vote_ranking(q_segs: np.ndarray, q_times: np.ndarray, cat_segs: np.ndarray, cat_owner: np.ndarray,
                 cat_times: np.ndarray, bin_s: float, candidates: int) -> list[Vote]:
    """Exact top-``candidates`` segment search + the service's time-consistent vote."""
    return segment_vote(exact_segment_hits(q_segs, cat_segs, cat_owner, cat_times, candidates), q_times, bin_s)


def service_decision(fp: Sequence[Any], votes: Sequence[Vote], n_segments: int, seconds: float, *,
                     threshold: float, calibration: Calibration | None) -> int | None:
    """What the service answers (a track index, or None): :func:`engine.identify.decide`.

    ``fp``: the landmark matches, best first; ``votes``: :func:`vote_ranking` of the
    query's ``n_segments`` segment vectors (the service votes only from
    ``MIN_VOTE_SEGMENTS`` on); ``seconds``: the query's length; ``calibration``: the
    eval catalogue's own (``QueryRun.calibration``), or None for the safe rule.
    """
    votes = votes if n_segments >= MIN_VOTE_SEGMENTS else []
    ev = Evidence(tuple(fp), tuple(votes), n_segments if votes else 0, seconds)
    decision = decide(ev, calibration, threshold=threshold)
    return None if decision is None else int(decision.track_key)


def combined_ranking(decision: int | None, fp: Sequence[Any], votes: Sequence[Vote]) -> list[int]:
    """The service's answer first, then the fingerprint's and the vote's candidates (for top-5)."""
    ranking: list[int] = [decision] if decision is not None else []
    for key in [m.track_key for m in fp] + [v[0] for v in votes]:
        if key not in ranking:
            ranking.append(key)
    return ranking
