"""Which five of the ranked neighbours a person sees: the discovery rule (issue 14).

The similarity ranking (``engine.similarity``) is about sound; an *answer* is about
what a person can follow.  Five tracks of one album are a poor answer to "what
else sounds like this", so by default an answer takes at most ``per_artist`` tracks
of any artist and at most one of the recognised (or seed) song's own artist, walking
down the ranking; only when the ranking runs out of new artists does it fill the
remaining places with the best tracks left, so five answers still come back from a
small catalogue.  This is the "artist filter" of music-similarity evaluation
(Pampalk et al. 2005; Flexer 2007) applied to the product's answers.

A pure function: the service, the evaluation and the tests call the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def diversify(ranked: Sequence[T], k: int, artist_of: Callable[[T], str], *, per_artist: int = 1,
              seed_artist: str | None = None) -> list[T]:
    """Pick ``k`` items from ``ranked`` (best first) with at most ``per_artist`` per artist.

    - ``per_artist <= 0`` turns the rule off: the first ``k`` of the ranking.
    - the seed's own artist (``seed_artist``, compared case-insensitively) gets at most one slot;
    - an empty artist name counts as an artist of its own for each item (unknown ≠ same);
    - when fewer than ``k`` items pass, the best skipped ones fill up, after them, the
      seed's own artist's last of all (only when nothing else is left, so that ``k``
      answers still come back from a catalogue of two or three artists).
    The result is a prefix of one re-ranking of ``ranked`` (the passing items in ranking
    order, then the skipped ones), so ``diversify(r, k)`` is a prefix of
    ``diversify(r, k + n)`` and pages never overlap.  ``O(len(ranked))``.
    """
    if k <= 0:
        return []
    if per_artist <= 0:
        return list(ranked[:k])
    seed = (seed_artist or "").strip().casefold()
    counts: dict[str, int] = {}
    picked: list[int] = []
    for i, item in enumerate(ranked):
        a = (artist_of(item) or "").strip().casefold()
        if not a:
            picked.append(i)
        else:
            cap = 1 if seed and a == seed else per_artist
            if counts.get(a, 0) < cap:
                counts[a] = counts.get(a, 0) + 1
                picked.append(i)
        if len(picked) >= k:
            break
    if len(picked) < k:
        chosen = set(picked)
        rest = [i for i in range(len(ranked)) if i not in chosen]
        is_seed = [bool(seed) and (artist_of(ranked[i]) or "").strip().casefold() == seed for i in rest]
        rest = [i for i, s in zip(rest, is_seed) if not s] + [i for i, s in zip(rest, is_seed) if s]
        picked += rest[: k - len(picked)]
    return [ranked[i] for i in picked]


def by_similarity_in_pages(items: list[T], page: int, score: Callable[[T], float]) -> list[T]:
    """Each page of ``page`` items sorted best first; which items are on which page is kept.

    The discovery rule's order puts new artists before better matches of artists already
    shown; within what one page shows, the best match still comes first.
    """
    page = max(1, page)
    out: list[T] = []
    for i in range(0, len(items), page):
        out += sorted(items[i:i + page], key=lambda x: -score(x))
    return out


def distinct_artists(items: Sequence[T], artist_of: Callable[[T], str]) -> int:
    """How many different artists an answer holds (unknown artists each count once)."""
    names = [(artist_of(x) or "").strip().casefold() for x in items]
    return len({n for n in names if n}) + sum(1 for n in names if not n)
