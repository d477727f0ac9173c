"""Which catalogue song a recording is: the identification rule, as pure functions.

Two opinions come in, one answer (or none) goes out:

* the best landmark match of the fingerprint index (``engine.fingerprint``), with a
  0..1 confidence;
* the time-consistent vote of the recording's segment vectors (:func:`segment_vote`
  over the nearest catalogue segment of each).

:func:`decide` turns them into an answer.  The service runs it on Milvus search
results and ``synesthete-index eval`` on exact numpy search, so what eval measures is
the rule the service answers with, not a copy of it.  Nothing here does I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

# Tuning of the embedding vote, chosen from principle (not fitted to any corpus):
# a recording of a catalogue song has most of its segments pointing at that
# song at one consistent time offset; a song *like* it scatters over tracks and offsets.
#: nearest catalogue segments fetched per query segment (only the first one votes)
SEGMENT_CANDIDATES = 1
#: fewer query segments than this cast no vote: one segment shows no time consistency
MIN_VOTE_SEGMENTS = 2
#: the least confidence with which the segment vote may answer on its own
EMBEDDING_ALONE_MIN = 0.6

Method = Literal["both", "fingerprint", "embedding"]


class SegmentHitLike(Protocol):
    """A catalogue segment near a query segment (``engine.store.SegmentHit``)."""

    @property
    def track_key(self) -> int: ...

    @property
    def t(self) -> float: ...


class FingerprintLike(Protocol):
    """The best landmark match (``engine.fingerprint.index.FingerprintMatch``)."""

    @property
    def track_key(self) -> int: ...

    @property
    def confidence(self) -> float: ...

    @property
    def offset_s(self) -> float: ...


class Vote(NamedTuple):
    """One track's share of the segment vote."""

    track_key: int
    score: float  # 0..1: fraction of query segments voting for it at one offset
    offset_s: float  # where the recording starts in the track (s); may be negative


@dataclass(frozen=True)
class Decision:
    """The answer: a track, how sure, where in it the recording starts, and which opinion(s) said so."""

    track_key: int
    confidence: float  # 0..1, >= the threshold it was decided with
    offset_s: float  # >= 0
    method: Method


def segment_vote(hits: Sequence[Sequence[SegmentHitLike]], query_times: np.ndarray, bin_s: float) -> list[Vote]:
    """Time-consistent voting: one :class:`Vote` per track, best first.

    ``hits[i]``: the nearest catalogue segments of query segment ``i`` (best first;
    only the first is used); ``query_times`` (n,) seconds; ``bin_s`` the catalogue's
    segment hop in seconds.

    Each query segment casts ONE vote: for the track and time offset of its nearest
    catalogue segment.  A track's score is the fraction of query segments voting for
    it within one offset window (+- one bin, since the catalogue grid is coarser than
    the query's).  Why top-1 votes and not summed similarities: cosine between any
    two pieces of music is high, so sums saturate and cannot tell the recorded song
    from a similar one; votes can (a recording points at its song again and again,
    a similar song only now and then).
    """
    votes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for qt, seg_hits in zip(query_times, hits):
        if not seg_hits:
            continue
        h = seg_hits[0]
        votes[h.track_key][int(round((h.t - float(qt)) / bin_s))] += 1
    n = max(1, len(query_times))
    out = []
    for key, bins in votes.items():
        best_bin, best = max(((b, bins.get(b - 1, 0) + v + bins.get(b + 1, 0)) for b, v in bins.items()),
                             key=lambda x: x[1])
        out.append(Vote(key, min(1.0, best / n), best_bin * bin_s))
    out.sort(key=lambda x: -x[1])
    return out


def vote_confidence(votes: Sequence[Vote]) -> float:
    """0..1: the best vote's margin over the runner-up (0 without votes).

    A margin, not the raw score: a recording of a song *like* a catalogue track can
    gather many votes for it, but so does the next-most-similar track.
    """
    if not votes:
        return 0.0
    margin = votes[0].score - (votes[1].score if len(votes) > 1 else 0.0)
    return float(max(0.0, margin))


def decide(fp_best: FingerprintLike | None, votes: Sequence[Vote], *, threshold: float,
           head_trained: bool) -> Decision | None:
    """The answer to "which catalogue song is this recording?", or None when no opinion is sure enough.

    ``fp_best``: the best landmark match (None without one); ``votes``: :func:`segment_vote`
    of the recording (empty when it was not voted); ``threshold``: the least confidence
    that answers (``Settings.identify_threshold``); ``head_trained``: whether the segment
    vectors come from a head fine-tuned for recordings.  Candidates, best confidence wins:

    * fingerprint (confidence > 0) and vote agree on the track: the noisy-OR of the two;
    * a confident fingerprint (>= threshold) alone;
    * otherwise the vote alone, with a trained head and a margin >= max(threshold, 0.6).
    """
    best_vote = votes[0] if votes else None
    fp_conf = fp_best.confidence if fp_best is not None else 0.0
    emb_conf = vote_confidence(votes)
    candidates: list[Decision] = []
    if fp_best is not None and fp_conf > 0 and best_vote is not None and fp_best.track_key == best_vote.track_key:
        # two independent opinions agree: a weak landmark match confirmed by the
        # segment vote is as good as a strong one (noisy-OR of the two confidences).
        # A landmark "match" of confidence 0 (no margin over the runner-up) is chance,
        # not an opinion: it must not let an untrained head's vote answer alone.
        both = 1.0 - (1.0 - fp_conf) * (1.0 - emb_conf)
        candidates.append(Decision(fp_best.track_key, both, fp_best.offset_s, "both"))
    if fp_best is not None and fp_conf >= threshold:
        candidates.append(Decision(fp_best.track_key, fp_conf, fp_best.offset_s, "fingerprint"))
    elif best_vote is not None and head_trained and emb_conf >= max(threshold, EMBEDDING_ALONE_MIN):
        # The segment vote alone speaks only when the landmarks have no confident
        # answer, and only with a head fine-tuned for recordings: pretrained features
        # of a phone recording can point consistently at the wrong song.
        candidates.append(Decision(best_vote.track_key, emb_conf, best_vote.offset_s, "embedding"))
    candidates = [c for c in candidates if c.confidence >= threshold]
    if not candidates:
        return None
    best = max(candidates, key=lambda c: c.confidence)
    return Decision(best.track_key, best.confidence, max(0.0, best.offset_s), best.method)


__all__ = ["EMBEDDING_ALONE_MIN", "MIN_VOTE_SEGMENTS", "SEGMENT_CANDIDATES", "Decision", "Vote", "decide",
           "segment_vote", "vote_confidence"]
