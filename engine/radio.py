"""Song radio: a playlist that drifts from a seed, each next track near the recent ones.

How it walks (issue 31 step 2): one search around the seed gives a candidate pool (the seed's
``RADIO_POOL`` nearest tracks, inside the filters); the walk then runs in memory, greedily:
the next track is the unplayed candidate most similar to the **mean of the last
``RECENT`` tracks** (the seed first), so the list moves away from the seed a little at each
step instead of ranking everything against the seed alone; an artist is played at most
``PER_ARTIST`` times (so a catalogue of A artists fills min(N, 2A) tracks), and a candidate less similar to
its predecessor than the catalogue's median pair (``MatchScale``) is never chosen, so no step
is a jump.  No randomness: the same seed and settings give the same list.

What it draws on: the "drift" of playlist continuation by the recent context rather than the
seed alone (Bonnin & Jannach, "Automated generation of music playlists: survey and
experiments", ACM CSUR 2014: nearest-neighbour continuation on the last tracks), and the
artist-diversity constraint of Spotify-style radios; a greedy walk instead of a beam search,
because one pool and one pass keep it within a search call's time at 232k tracks.
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


@dataclass(frozen=True)
class RadioStep:
    """One chosen track: its index in the pool and its cosine to the track before it."""

    index: int
    to_previous: float


def walk(seed: np.ndarray, pool: np.ndarray, artists: Sequence[str], n: int, *,
         min_similarity: float = -1.0, recent: int = RECENT, per_artist: int = PER_ARTIST) -> list[RadioStep]:
    """The radio's order over ``pool``: up to ``n`` steps (fewer when fewer candidates qualify).

    ``seed`` ``(d,)`` and ``pool`` ``(m, d)``: unit track vectors; ``artists``: the pool's
    artists ("" unknown: each such track its own artist); ``min_similarity``: the cosine a
    track must have to its predecessor (the catalogue's median pair).  Raises ``ValueError``
    for ``n`` < 1 or mismatched shapes.
    """
    pool = np.asarray(pool, np.float32)
    if n < 1:
        raise ValueError(f"a radio needs at least one track, got n={n}")
    if pool.ndim != 2 or len(pool) != len(artists):
        raise ValueError(f"pool {pool.shape} and {len(artists)} artists do not match")
    played_artists: Counter[str] = Counter()
    history = [np.asarray(seed, np.float32)]
    free = np.ones(len(pool), bool)
    steps: list[RadioStep] = []
    while len(steps) < n:
        context = np.mean(history[-recent:], axis=0)
        score = pool @ (context / max(float(np.linalg.norm(context)), 1e-12))
        to_prev = pool @ history[-1]
        ok = free & (to_prev >= min_similarity)
        for i in np.flatnonzero(ok):
            name = artists[i].casefold()
            if name and played_artists[name] >= per_artist:
                ok[i] = False
        if not ok.any():
            break
        best = int(np.argmax(np.where(ok, score, -np.inf)))
        steps.append(RadioStep(best, float(to_prev[best])))
        free[best] = False
        if artists[best]:
            played_artists[artists[best].casefold()] += 1
        history.append(pool[best])
    return steps


__all__ = ["PER_ARTIST", "RADIO_DEFAULT", "RADIO_MAX", "RADIO_POOL", "RECENT", "RadioStep", "walk"]
