"""Why a pick was made, and how strong a match it is, in words a person can check (issue 14).

Two things are shown with every answer:

- **a match on a calibrated scale**: where the pair's cosine ranks among *all pairs of
  tracks in this catalogue* (:class:`MatchScale`, fitted at build time), as a
  percentile and a 1-5 scale.  A raw cosine is not shown: between any two pieces of
  music it is high, so "87%" says nothing; "top 2% of all pairs" does.
- **a short reason**, only from what the data backs: what the two tracks share
  among musicnn's tag outputs (genre, mood and instrument tags the backbone already
  computes; Pons & Serra 2019, trained on the Million Song Dataset tags), a shared
  catalogue genre, and tempo and key estimated from the audio (``engine.analysis``).
  A tag is named only when it is strong in *both* tracks; tempos only when both
  were estimated; with nothing shared it says so plainly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: musicnn MSD tags that describe a sound (decades, "sexy" and "catchy" do not)
REASON_TAGS = frozenset({
    "rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "beautiful",
    "metal", "chillout", "classic rock", "soul", "indie rock", "Mellow", "electronica", "folk", "chill",
    "instrumental", "punk", "blues", "hard rock", "ambient", "acoustic", "experimental", "guitar", "Hip-Hop",
    "party", "country", "easy listening", "funk", "electro", "heavy metal", "Progressive rock", "rnb",
    "indie pop", "sad", "House", "happy", "female vocalists", "male vocalists",
})
#: a tag is "strong" in a track when its mean probability reaches this and it is among the track's top tags
TAG_MIN_PROB = 0.1
TAG_TOP = 6
#: tempos within this ratio (or of its double/half) are "similar"
TEMPO_TOLERANCE = 0.06


@dataclass
class Traits:
    """What is known of one track (or recording) to explain a match with."""

    tags: dict[str, float] = field(default_factory=dict)  # tag -> mean probability
    bpm: float | None = None
    key: str | None = None
    genres: tuple[str, ...] = ()

    @classmethod
    def from_arrays(cls, tag_names: Sequence[str], probs: np.ndarray | None, bpm: float | None = None,
                    key: str | None = None, genres: Sequence[str] = ()) -> Traits:
        tags = {} if probs is None else {n: float(p) for n, p in zip(tag_names, np.asarray(probs).ravel())}
        return cls(tags, bpm, key, tuple(genres))

    def strong_tags(self) -> list[str]:
        ranked = sorted((t for t in self.tags if t in REASON_TAGS), key=lambda t: -self.tags[t])[:TAG_TOP]
        return [t for t in ranked if self.tags[t] >= TAG_MIN_PROB]


def _tempo_close(a: float, b: float) -> bool:
    return any(abs(a * m / b - 1.0) <= TEMPO_TOLERANCE for m in (0.5, 1.0, 2.0))


def _speed(bpm: float) -> str:
    return "slow" if bpm < 90 else "fast" if bpm >= 125 else "mid-tempo"


def explain(seed: Traits, other: Traits, max_items: int = 3) -> str:
    """One short line of what ``seed`` and ``other`` share, e.g. ``both: electronic · synth · fast (128 vs 126 BPM)``.

    Only shared, backed facts; ``"similar overall sound"`` when none is.
    """
    items: list[str] = []
    shared_genres = [g for g in seed.genres if g in set(other.genres)]
    items += shared_genres[:1]
    tags_b = set(other.strong_tags())
    shared = [t for t in seed.strong_tags() if t in tags_b and t.lower() not in {g.lower() for g in items}]
    shared.sort(key=lambda t: -min(seed.tags[t], other.tags[t]))
    items += [t.lower() for t in shared[: max(0, max_items - len(items))]]
    if seed.bpm and other.bpm and _tempo_close(seed.bpm, other.bpm):
        items.append(f"{_speed(other.bpm)} ({other.bpm:.0f} vs {seed.bpm:.0f} BPM)")
    if seed.key and other.key and seed.key == other.key:
        items.append(f"in {other.key}")
    return ("both: " + " · ".join(items)) if items else "similar overall sound"


@dataclass
class MatchScale:
    """Where a cosine ranks among all pairs of catalogue tracks, fitted at build time.

    ``quantiles``: the cosine at 0.0, 0.1, ..., 100.0 percent of the sampled pairs (1001 values).
    """

    quantiles: np.ndarray
    #: percentile thresholds of the 1-5 scale: 5 = top 1% of pairs, 4 = top 5%, 3 = top 15%, 2 = top 40%
    STEPS = (99.0, 95.0, 85.0, 60.0)

    @classmethod
    def fit(cls, vectors: np.ndarray, max_pairs: int = 2_000_000, seed: int = 0) -> MatchScale:
        """From unit track vectors ``(n, D)``, n >= 2: all pairs, or a random sample of ``max_pairs``."""
        v = np.asarray(vectors, np.float32)
        n = len(v)
        if n < 2:
            raise ValueError("a match scale needs at least two tracks")
        if n * (n - 1) // 2 <= max_pairs:
            i, j = np.triu_indices(n, 1)
        else:
            rng = np.random.default_rng(seed)
            i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
            keep = i != j
            i, j = i[keep], j[keep]
        sims = np.einsum("nd,nd->n", v[i], v[j])
        return cls(np.quantile(sims, np.linspace(0, 1, 1001)).astype(np.float32))

    def percentile(self, cosine: float) -> float:
        """Share (0..100) of catalogue pairs less similar than this one."""
        q = self.quantiles
        return float(np.clip(np.interp(cosine, q, np.linspace(0, 100, len(q))), 0.0, 100.0))

    def level(self, cosine: float) -> int:
        """1..5: 5 = among the closest 1% of pairs in this catalogue."""
        p = self.percentile(cosine)
        return 5 - next((i for i, s in enumerate(self.STEPS) if p >= s), 4)

    def to_list(self) -> list[float]:
        return [round(float(x), 5) for x in self.quantiles]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> MatchScale:
        q = np.asarray(values, np.float32)
        if q.ndim != 1 or len(q) < 2 or np.any(np.diff(q) < 0):
            raise ValueError("match scale quantiles must be a non-decreasing list")
        return cls(q)


def match_words(level: int, percentile: float) -> str:
    """``"●●●●○ close match (top 3%)"``: the scale as a person reads it."""
    names = {5: "very close match", 4: "close match", 3: "good match", 2: "some likeness", 1: "loose match"}
    top = max(0.1, 100.0 - percentile)
    top_s = f"top {top:.0f}%" if top >= 1 else f"top {top:.1f}%"
    return f"{'●' * level}{'○' * (5 - level)} {names[level]} ({top_s})"


def match_label(match: int | None, percentile: float | None, cosine: float) -> str:
    """What a surface shows for a pair: the calibrated scale, or the raw cosine when none was fitted."""
    if match is None or percentile is None:
        return f"{cosine * 100:.0f}% similar"
    return match_words(match, percentile)
