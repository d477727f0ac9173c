"""Song radio: a playlist that drifts from a seed, each next track near the recent ones.

How it walks (issue 31 step 2): one search around the seed gives a candidate pool (the seed's
``RADIO_POOL`` nearest tracks, inside the filters); the walk then runs in memory, by a small
beam search: the next track is the unplayed candidate most similar to the **mean of the last
``RECENT`` tracks** (the seed first), so the list moves away from the seed a little at each
step instead of ranking everything against the seed alone; an artist is played at most
``PER_ARTIST`` times (so a catalogue of A artists fills min(N, 2A) tracks), and a candidate less similar to
its predecessor than the catalogue's median pair (``MatchScale``) is never chosen, so no step
is a jump.  No randomness: the same seed and settings give the same list.

What it draws on: the "drift" of playlist continuation by the recent context rather than the
seed alone (Bonnin & Jannach, "Automated generation of music playlists: survey and
experiments", ACM CSUR 2014: nearest-neighbour continuation on the last tracks), and the
artist-diversity constraint of Spotify-style radios; a beam of 16 (4 next tracks each) instead of
a greedy walk, which stranded itself on set a (10 of 238 seeds short of 18; beam 6x3: 4; 16x4:
1; docs/performance.md), and one pool keeps it within a search call's time at 232k tracks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: tracks in a radio when none is asked for, and the most one may have
RADIO_DEFAULT = 25
RADIO_MAX = 50
#: nearest tracks of the seed the walk chooses from (one search)
RADIO_POOL = 400
#: how many of the last tracks the next one must be near (their mean vector)
RECENT = 3
#: an artist at most this many times in one radio
PER_ARTIST = 2
#: partial radios kept at each step, and the next tracks each is tried with
BEAM = 16
BRANCH = 4


@dataclass(frozen=True)
class RadioStep:
    """One chosen track: its index in the pool and its cosine to the track before it."""

    index: int
    to_previous: float


@dataclass
class _Path:
    """One partial radio in the beam: its steps, what it used, and its summed step scores."""

    steps: list[RadioStep]
    free: np.ndarray
    played: Counter[str]
    history: list[np.ndarray]
    total: float = 0.0
    done: bool = False


def walk(seed: np.ndarray, pool: np.ndarray, artists: Sequence[str], n: int, *,
         min_similarity: float = -1.0, recent: int = RECENT, per_artist: int = PER_ARTIST,
         beam: int = BEAM, branch: int = BRANCH) -> list[RadioStep]:
    """The radio's order over ``pool``: up to ``n`` steps (fewer when fewer candidates qualify).

    ``seed`` ``(d,)`` and ``pool`` ``(m, d)``: unit track vectors; ``artists``: the pool's
    artists ("" unknown: each such track its own artist); ``min_similarity``: the cosine a
    track must have to its predecessor (the catalogue's median pair).  A beam of ``beam``
    partial radios, each extended by its ``branch`` best next tracks, keeps the longest and
    then the most coherent: a greedy walk can strand itself where every artist left is too
    far from the last track.  Raises ``ValueError`` for ``n`` < 1 or mismatched shapes.
    """
    pool = np.asarray(pool, np.float32)
    if n < 1:
        raise ValueError(f"a radio needs at least one track, got n={n}")
    if pool.ndim != 2 or len(pool) != len(artists):
        raise ValueError(f"pool {pool.shape} and {len(artists)} artists do not match")
    names = [a.casefold() for a in artists]
    paths = [_Path([], np.ones(len(pool), bool), Counter(), [np.asarray(seed, np.float32)])]
    while any(not p.done and len(p.steps) < n for p in paths):
        grown: list[_Path] = []
        for p in paths:
            if p.done or len(p.steps) >= n:
                grown.append(p)
                continue
            children = _extend(p, pool, names, min_similarity, recent, per_artist, branch)
            grown += children or [_Path(p.steps, p.free, p.played, p.history, p.total, done=True)]
        paths = sorted(grown, key=lambda p: (-len(p.steps), -p.total))[:beam]
    return max(paths, key=lambda p: (len(p.steps), p.total)).steps


def _extend(p: _Path, pool: np.ndarray, names: list[str], min_similarity: float, recent: int,
            per_artist: int, branch: int) -> list[_Path]:
    """``p`` followed by each of its ``branch`` best allowed next tracks (none: it cannot go on)."""
    context = np.mean(p.history[-recent:], axis=0)
    score = pool @ (context / max(float(np.linalg.norm(context)), 1e-12))
    to_prev = pool @ p.history[-1]
    ok = p.free & (to_prev >= min_similarity)
    for i in np.flatnonzero(ok):
        if names[i] and p.played[names[i]] >= per_artist:
            ok[i] = False
    out = []
    for best in np.argsort(-np.where(ok, score, -np.inf), kind="stable")[:branch]:
        if not ok[best]:
            break
        free = p.free.copy()
        free[best] = False
        played = p.played + Counter({names[best]: 1} if names[best] else {})
        out.append(_Path(p.steps + [RadioStep(int(best), float(to_prev[best]))], free, played,
                         p.history + [pool[best]], p.total + float(score[best])))
    return out


__all__ = ["PER_ARTIST", "RADIO_DEFAULT", "RADIO_MAX", "RADIO_POOL", "RECENT", "RadioStep", "walk"]
