"""Which catalogue song a recording is: the identification rule, as pure functions.

Two opinions come in, one answer (or none) goes out:

* the landmark candidates of the fingerprint index (``engine.fingerprint``): each with
  its offset-histogram score (aligned landmarks) and the query's landmark count;
* the time-consistent vote of the recording's segment vectors (:func:`segment_vote`
  over the nearest catalogue segment of each).

They are gathered into one :class:`Evidence`, and :func:`decide` turns it into an
answer.  With a :class:`Calibration` (fitted when the index is built, on degraded
self-queries of the catalogue's own audio: ``index_builder.calibrate``), the confidence
is a *probability of being right* from a logistic model of the evidence; without one
(a catalogue too small to calibrate, or a calibration that does not fit the index)
a conservative fixed rule answers (:func:`safe_rule`), and ``about`` says so.

The service runs :func:`decide` on Milvus search results and ``synesthete-index eval``
on exact numpy search, so what eval measures is the rule the service answers with, not
a copy of it (eval's corpus index has no calibration of its own, so it measures the safe
rule; ``bench/identify_says.py`` measures the calibrated service).  Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

import numpy as np
from scipy.stats import poisson

# Tuning of the embedding vote, chosen from principle (not fitted to any corpus):
# a recording of a catalogue song has most of its segments pointing at that
# song at one consistent time offset; a song *like* it scatters over tracks and offsets.
#: nearest catalogue segments fetched per query segment (only the first one votes)
SEGMENT_CANDIDATES = 1
#: fewer query segments than this cast no vote: one segment shows no time consistency
MIN_VOTE_SEGMENTS = 2
#: the uncalibrated rule's least landmark margin confidence (:func:`engine.fingerprint.index.confidence`);
#: on the dev corpus (238 songs) no wrong best candidate scored above 0.35 (docs/identification.md)
SAFE_MARGIN_CONFIDENCE = 0.5
#: a calibrated probability is never reported above this: it is a model of evidence, not a proof
MAX_PROBABILITY = 0.999

Method = Literal["both", "fingerprint", "embedding"]


class SegmentHitLike(Protocol):
    """A catalogue segment near a query segment (``engine.store.SegmentHit``)."""

    @property
    def track_key(self) -> int: ...

    @property
    def t(self) -> float: ...


class FingerprintLike(Protocol):
    """A landmark candidate (``engine.fingerprint.index.FingerprintMatch``)."""

    @property
    def track_key(self) -> int: ...

    @property
    def score(self) -> int: ...

    @property
    def confidence(self) -> float: ...

    @property
    def offset_s(self) -> float: ...

    @property
    def query_landmarks(self) -> int: ...


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
    #: ``-log10`` of the chance that its landmarks align this well (:func:`landmark_surprise`), uncapped;
    #: for an answer of the offset verification, its own surprise when that is larger (:func:`verified_rule`)
    surprise: float = field(default=0.0, compare=False)

    @property
    def level(self) -> str:
        """:func:`confidence_level` of this answer."""
        return confidence_level(self.surprise)


#: Named confidence levels (issue 30): what the landmark evidence says, by the chance that a
#: song the recording is not would line up this well.  Fixed from principle, not fitted: below
#: 1 in 1,000 (3) is the level where "might be" speaks (engine.service.MIGHT_BE_SURPRISE); at
#: 1 in 10^10 (:data:`SURPRISE_CAP`) the calibration sees no more evidence.  The probability
#: (``confidence``) stays what decides; these say *why* in words.  docs/identification.md.
LEVEL_CERTAIN_SURPRISE = 10.0
LEVEL_LIKELY_SURPRISE = 3.0
LEVELS = ("certain", "likely", "possible")


#: what each level tells a person (the CLI, the bot, the page and the API say the same)
LEVEL_TEXT = {
    "certain": "certain: its spectral peaks line up with the song far beyond chance",
    "likely": "likely: its landmarks line up with the song beyond a 1-in-1,000 chance",
    "possible": "possible: mostly the sound of its segments agrees, few landmarks do",
}


def confidence_level(surprise: float) -> str:
    """``certain`` (landmarks, or the verified single peaks, align beyond a 1-in-10^10 chance), ``likely``
    (landmarks beyond 1 in 1,000), else
    ``possible`` (the answer rests mostly on the segment vote or few landmarks)."""
    if surprise >= LEVEL_CERTAIN_SURPRISE:
        return "certain"
    return "likely" if surprise >= LEVEL_LIKELY_SURPRISE else "possible"


@dataclass(frozen=True)
class Evidence:
    """Everything one recording's identification is decided from.

    ``matches``: landmark candidates, best first (the top 3 or more, so the runner-up's
    score, the chance level, is known); ``votes``: :func:`segment_vote`, best first (empty
    below :data:`MIN_VOTE_SEGMENTS`); ``n_segments``: query segments that voted;
    ``seconds``: length of the recording.
    """

    matches: tuple[FingerprintLike, ...] = ()
    votes: tuple[Vote, ...] = ()
    n_segments: int = 0
    seconds: float = 0.0

    @property
    def n_landmarks(self) -> int:
        """Landmarks the query was matched with (0 without a match)."""
        return int(self.matches[0].query_landmarks) if self.matches else 0


@dataclass(frozen=True)
class Observations:
    """What the service measured of one recording, before any decision.

    ``matches``: landmark candidates, best first; ``hits[i]``: the nearest catalogue
    segments of query segment ``i`` (best first); ``query_times`` (n,) seconds;
    ``bin_s``: the catalogue's segment hop (s); ``seconds``: the recording's length.
    """

    matches: tuple[FingerprintLike, ...]
    hits: tuple[tuple[SegmentHitLike, ...], ...]
    query_times: np.ndarray
    bin_s: float
    seconds: float


def evidence(obs: Observations, exclude: int | None = None) -> Evidence:
    """The :class:`Evidence` of some observations; with ``exclude``, as if the catalogue lacked that track.

    Why ``exclude``: the calibration needs recordings of songs the catalogue does not
    hold, with this catalogue's density.  Removing the recorded song from its own
    self-query is exact for the landmarks (each track's score is its own) and for the
    vote when ``hits`` holds two candidates per segment (the next one votes instead).
    """
    matches = tuple(m for m in obs.matches if m.track_key != exclude)
    if exclude is not None and matches and len(matches) < len(obs.matches):
        matches = _rescored(matches)
    n = len(obs.query_times)
    votes = tuple(segment_vote(obs.hits, obs.query_times, obs.bin_s, exclude=exclude)) if n >= MIN_VOTE_SEGMENTS else ()
    return Evidence(matches, votes, n if votes else 0, float(obs.seconds))


def _rescored(matches: tuple[FingerprintLike, ...]) -> tuple[FingerprintLike, ...]:
    """The margin confidences as the index would give them for these candidates (only the best has one)."""
    import dataclasses

    from engine.fingerprint.index import confidence

    best, rest = matches[0], matches[1:]
    conf = confidence(int(best.score), int(rest[0].score) if rest else 0)
    return (dataclasses.replace(best, confidence=conf), *(dataclasses.replace(m, confidence=0.0) for m in rest))


def segment_vote(hits: Sequence[Sequence[SegmentHitLike]], query_times: np.ndarray, bin_s: float,
                 exclude: int | None = None) -> list[Vote]:
    """Time-consistent voting: one :class:`Vote` per track, best first.

    ``hits[i]``: the nearest catalogue segments of query segment ``i`` (best first;
    only the first one not of track ``exclude`` is used); ``query_times`` (n,) seconds;
    ``bin_s`` the catalogue's segment hop in seconds.

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
        h = next((x for x in seg_hits if x.track_key != exclude), None)
        if h is None:
            continue
        votes[h.track_key][int(round((h.t - float(qt)) / bin_s))] += 1
    n = max(1, len(query_times))
    out = []
    for key, bins in votes.items():
        best_bin, best = max(((b, bins.get(b - 1, 0) + v + bins.get(b + 1, 0)) for b, v in bins.items()),
                             key=lambda x: x[1])
        out.append(Vote(key, min(1.0, best / n), best_bin * bin_s))
    out.sort(key=lambda x: -x[1])
    return out


def vote_confidence(votes: Sequence[Vote], n_segments: int | None = None) -> float:
    """0..1: the best vote's margin over the runner-up (0 without votes), shrunk for few segments.

    A margin, not the raw score: a recording of a song *like* a catalogue track can
    gather many votes for it, but so does the next-most-similar track.  With
    ``n_segments`` the margin is multiplied by ``n / (n + 2)`` (a unanimous vote of two
    segments is 0.5, of eighteen 0.9): two votes agreeing is not certainty.
    """
    if not votes:
        return 0.0
    margin = votes[0].score - (votes[1].score if len(votes) > 1 else 0.0)
    if n_segments is not None:
        margin *= n_segments / (n_segments + 2.0)
    return float(max(0.0, margin))


# ---- the calibrated rule ----------------------------------------------------------------

#: Cap of the landmark surprise: past a chance probability of 1e-10 more evidence changes
#: nothing, and uncapped clean matches (surprise in the hundreds) would flatten the model's
#: slope where right and wrong actually overlap (around 1-4).  (A margin in Poisson sigmas
#: was a feature too; it says the same as the surprise, and the two fought: weights -9.6 and
#: +19.6 on the dev corpus.)
SURPRISE_CAP = 10.0
#: What the calibration's logistic model sees of one candidate track (see :func:`candidate_features`).
FEATURES = ("fp_surprise", "fp_runner_up", "vote_margin", "agree", "log_landmarks", "log_seconds")


def landmark_surprise(score: float, chance: float) -> float:
    """``-log10 P(X >= score)`` for ``X ~ Poisson(chance + 1)``: how unlikely ``score`` aligned votes are by chance.

    ``chance``: a wrong track's score for the same recording (the runner-up), which
    estimates the chance level.  0 for a score of 0.  Uncapped (see :data:`SURPRISE_CAP`).
    """
    if score <= 0:
        return 0.0
    return max(0.0, -float(poisson.logsf(score - 1.0, chance + 1.0)) / math.log(10.0))


def _own_and_best_other(items: Iterable[FingerprintLike | Vote], track_key: int) -> tuple[float, float]:
    """The score of ``track_key`` among ``items`` and the best score of any other track (0 when absent)."""
    own = other = 0.0
    for it in items:
        if it.track_key == track_key:
            own = max(own, float(it.score))
        else:
            other = max(other, float(it.score))
    return own, other


def candidate_features(ev: Evidence, track_key: int) -> np.ndarray:
    """The evidence *for* one candidate track, shape ``(len(FEATURES),)`` float64.

    * ``fp_surprise``: how unlikely its landmark score ``s`` is by chance, ``-log10 P(X >= s)``
      for ``X ~ Poisson(s_o + 1)``, clipped to 0..:data:`SURPRISE_CAP`: the runner-up's score ``s_o`` estimates
      the chance level of a wrong track's aligned votes, which grows with the query's length
      and the catalogue's size and density.  Why a tail probability and not the margin: the
      log-odds of being right grow with it nearly linearly, so a logistic model can say
      0.99 for 16 votes against 3 and stay unsure for 6 against 3;
    * ``fp_runner_up``: ``log1p(s_o)``, the chance level itself;
    * ``vote_margin``: its vote share minus the best other's, times ``sqrt(n_segments)``
      (more segments, firmer margin);
    * ``agree``: 1 when it is the best of both opinions;
    * ``log_landmarks``, ``log_seconds``: how much the recording holds.
    """
    s_c, s_o = _own_and_best_other(ev.matches, track_key)
    v_c, v_o = _own_and_best_other(ev.votes, track_key)
    agree = float(bool(ev.matches) and bool(ev.votes) and ev.matches[0].track_key == track_key
                  and ev.votes[0].track_key == track_key)
    return np.array([
        min(landmark_surprise(s_c, s_o), SURPRISE_CAP),
        math.log1p(s_o),
        (v_c - v_o) * math.sqrt(max(ev.n_segments, 0)),
        agree,
        math.log1p(ev.n_landmarks),
        math.log(max(ev.seconds, 0.5)),
    ], dtype=np.float64)


def candidates(ev: Evidence) -> list[int]:
    """The tracks an answer can name: the best landmark candidate and the best vote."""
    out: list[int] = []
    for key in ([ev.matches[0].track_key] if ev.matches else []) + ([ev.votes[0].track_key] if ev.votes else []):
        if key not in out:
            out.append(int(key))
    return out


@dataclass(frozen=True)
class Calibration:
    """P(candidate is the recorded song | its evidence), fitted per index by ``index_builder.calibrate``.

    Two parts, as in Platt (1999) then Zadrozny & Elkan (2002):

    * a logistic model ranks the evidence: ``weights`` (len(FEATURES),) and ``bias`` on
      ``(features - mean) / scale`` give a score (a logit);
    * an isotonic map turns the score into a probability: piecewise-linear through
      (``iso_x``, ``iso_y``), fitted on held-out scores.  Why: right and wrong overlap only
      in a narrow band of evidence, where a logistic curve alone must stay shallow, so it
      said 0.89 for 16 aligned votes against 3 that no wrong track had ever reached.  The
      isotonic map follows the measured frequencies instead, and it was fitted with one
      phantom wrong answer above the best score, so it never says 1.0.

    Without ``iso_x`` the logistic's own sigmoid is the probability.  ``info`` carries where
    it came from (catalogue size, landmark version, model id, how it was measured).
    """

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = FEATURES
    info: dict = field(default_factory=dict, compare=False)
    iso_x: tuple[float, ...] = ()
    iso_y: tuple[float, ...] = ()

    def score(self, x: np.ndarray) -> float:
        """The logistic model's logit for one candidate's :func:`candidate_features`."""
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(z @ np.asarray(self.weights) + self.bias)

    def probability(self, x: np.ndarray) -> float:
        """P(right) for one candidate's :func:`candidate_features`, at most :data:`MAX_PROBABILITY`."""
        logit = self.score(x)
        if self.iso_x:
            p = float(np.interp(logit, self.iso_x, self.iso_y))
        else:
            p = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        return min(p, MAX_PROBABILITY)


def _method(ev: Evidence, key: int) -> Method:
    fp_top = bool(ev.matches) and ev.matches[0].track_key == key
    vote_top = bool(ev.votes) and ev.votes[0].track_key == key
    return "both" if fp_top and vote_top else "fingerprint" if fp_top else "embedding"


def _offset(ev: Evidence, key: int) -> float:
    for m in ev.matches:
        if m.track_key == key:
            return float(m.offset_s)
    return next((float(v.offset_s) for v in ev.votes if v.track_key == key), 0.0)


def scored_candidates(ev: Evidence, calibration: Calibration) -> Iterable[tuple[int, float]]:
    """``(track_key, P(right))`` for each of :func:`candidates` (what :func:`decide` chooses from)."""
    for key in candidates(ev):
        yield key, calibration.probability(candidate_features(ev, key))


def safe_rule(ev: Evidence) -> Decision | None:
    """The uncalibrated rule: only the landmarks may answer, with a margin confidence >= 0.5.

    * the best landmark candidate with :data:`SAFE_MARGIN_CONFIDENCE` or more;
    * or one with some margin (> 0) that the segment vote agrees with, at the noisy-OR of
      both confidences (the vote's shrunk for few segments, :func:`vote_confidence`).

    The segment vote never answers alone here: pretrained or fine-tuned features of a
    phone recording can point consistently at the wrong song, and without a calibration
    nothing says how often.
    """
    if not ev.matches:
        return None
    best = ev.matches[0]
    conf = float(best.confidence)
    if conf > 0 and ev.votes and ev.votes[0].track_key == best.track_key:
        conf = 1.0 - (1.0 - conf) * (1.0 - vote_confidence(ev.votes, ev.n_segments))
    if conf < SAFE_MARGIN_CONFIDENCE:
        return None
    return Decision(int(best.track_key), min(conf, MAX_PROBABILITY), max(0.0, float(best.offset_s)),
                    _method(ev, best.track_key), _surprise_of(ev, int(best.track_key)))


def decide(ev: Evidence, calibration: Calibration | None, *, threshold: float) -> Decision | None:
    """The answer to "which catalogue song is this recording?", or None when not sure enough.

    With a ``calibration``: each of :func:`candidates` gets P(right) from the logistic
    model; the most probable one answers when P >= ``threshold``
    (``Settings.identify_threshold``, a probability).  Without: :func:`safe_rule`.  When
    neither answers, the offset verification may (:func:`verified_rule`).
    """
    decision = safe_rule(ev) if calibration is None else _calibrated(ev, calibration, threshold)
    if decision is None and threshold <= MAX_PROBABILITY:  # its answers carry MAX_PROBABILITY
        decision = verified_rule(ev)
    return decision


def _calibrated(ev: Evidence, calibration: Calibration, threshold: float) -> Decision | None:
    scored = list(scored_candidates(ev, calibration))
    if not scored:
        return None
    key, p = max(scored, key=lambda kv: kv[1])
    if p < threshold:
        return None
    return Decision(key, p, max(0.0, _offset(ev, key)), _method(ev, key), _surprise_of(ev, key))


#: The offset verification names the best landmark candidate on its own when the chance that
#: the query's single peaks land on its peaks this well is below 1 in 10^10: the "certain"
#: level (:data:`LEVEL_CERTAIN_SURPRISE`), fixed from principle, not fitted.  A recording gets a
#: few dozen such tries (one candidate, three offsets, the speed variants), so under the binomial
#: null chance alone would name a song about once in 10^8 recordings; on real soundtracks it
#: named 3 unknown songs in 1,257 recordings (shared loops hit more than chance), which is why
#: ``Settings.identify_verification`` is off: docs/identification.md ("Offset verification").
VERIFIED_SURPRISE = LEVEL_CERTAIN_SURPRISE


def _peaks_of(m: FingerprintLike) -> tuple[int, int] | None:
    """A candidate's offset verification ``(matched, total)``, None when it was not verified.

    Read with ``getattr``: candidates of a backend without peaks (Milvus) or of an index built
    before them carry no verification, which means "not verified", never "no match".
    """
    matched = getattr(m, "peaks_matched", None)
    total = int(getattr(m, "peaks_total", 0) or 0)
    return None if matched is None or total <= 0 else (int(matched), total)


def verification_surprise(ev: Evidence, key: int) -> float:
    """``-log10`` of the chance that ``key``'s verified peaks land this well (0 when not verified).

    The chance level is the best *other* verified candidate's share (tonal music with held notes
    hits more peaks by chance than random peaks do), floored at the share of random peaks
    (:func:`engine.fingerprint.peaks.peak_surprise`, Wang 2003's verification as a tail probability).
    """
    from engine.fingerprint.peaks import peak_surprise

    own, other = None, 0.0
    for m in ev.matches:
        pm = _peaks_of(m)
        if pm is None:
            continue
        if m.track_key == key and own is None:
            own = pm
        elif m.track_key != key:
            other = max(other, pm[0] / pm[1])
    return 0.0 if own is None else peak_surprise(own[0], own[1], other)


def verified_rule(ev: Evidence) -> Decision | None:
    """The best landmark candidate when its offset verification clears :data:`VERIFIED_SURPRISE`, else None.

    What it adds to the calibrated rule: recordings whose few intact landmarks cannot be told
    from an unknown song's, while most of their single peaks still land on the song's
    (issue 23).  Its confidence is :data:`MAX_PROBABILITY`: the evidence is far past any
    calibrated probability; the level it shows is the verification's own surprise.
    """
    if not ev.matches:
        return None
    best = ev.matches[0]
    surprise = verification_surprise(ev, int(best.track_key))
    if surprise < VERIFIED_SURPRISE:
        return None
    return Decision(int(best.track_key), MAX_PROBABILITY, max(0.0, float(best.offset_s)),
                    _method(ev, int(best.track_key)), max(surprise, _surprise_of(ev, int(best.track_key))))


def _surprise_of(ev: Evidence, key: int) -> float:
    """The uncapped landmark surprise of ``key`` against the best other candidate (0 without landmarks)."""
    own, other = _own_and_best_other(ev.matches, key)
    return landmark_surprise(own, other)


__all__ = ["FEATURES", "LEVELS", "LEVEL_TEXT", "MAX_PROBABILITY", "confidence_level", "MIN_VOTE_SEGMENTS", "SAFE_MARGIN_CONFIDENCE", "SEGMENT_CANDIDATES",
           "Calibration", "Decision", "Evidence", "Observations", "Vote", "candidate_features", "candidates", "decide", "evidence", "landmark_surprise", "safe_rule",
           "scored_candidates", "segment_vote", "verification_surprise", "verified_rule", "vote_confidence",
           "VERIFIED_SURPRISE"]
