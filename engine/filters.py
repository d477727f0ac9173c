"""Filters on the answers: genre(s), tempo range, instrumental only, popularity range (issue 14).

Applied *inside* the vector search as a Milvus boolean expression on the tracks
collection's scalar fields (``genre0..3``: hashes of the track's genres, ``bpm``,
``instrumental``, ``popularity``), not after it, so five answers still come back whenever five tracks
pass.  One parser and one validator for every surface (CLI flags, JSON API query
parameters, bot options), so a range means the same thing everywhere.

Unknown values are stored as -1 (a track whose tempo could not be estimated, a row
without popularity): a range filter leaves them out, since it cannot vouch for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadFilterError

#: the ``instrumental`` field: a track counts as instrumental from this score (0..1)
INSTRUMENTAL_MIN = 0.5
MAX_GENRES = 10

_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*(?:-|–|\.\.)\s*(\d+(?:\.\d+)?)?\s*$")


@dataclass(frozen=True)
class TrackFilter:
    genres: tuple[str, ...] = ()  # any of these (case-insensitive)
    bpm_min: float | None = None
    bpm_max: float | None = None
    instrumental: bool = False
    popularity_min: int | None = None  # Spotify popularity 0..100
    popularity_max: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.genres or self.instrumental or any(
            v is not None for v in (self.bpm_min, self.bpm_max, self.popularity_min, self.popularity_max)))

    def validated(self) -> TrackFilter:
        """Self, or ``BadFilterError`` with a sentence naming what is wrong."""
        if len(self.genres) > MAX_GENRES:
            raise BadFilterError(f"{len(self.genres)} genres", user_message=f"Pick at most {MAX_GENRES} genres.")
        for lo, hi, what, top in ((self.bpm_min, self.bpm_max, "tempo", 400),
                                  (self.popularity_min, self.popularity_max, "popularity", 100)):
            for v in (lo, hi):
                if v is not None and not 0 <= v <= top:
                    raise BadFilterError(f"{what} {v} out of range", user_message=(
                        f"A {what} filter must be between 0 and {top}."))
            if lo is not None and hi is not None and lo > hi:
                raise BadFilterError(f"{what} range {lo} > {hi}", user_message=(
                    f"The {what} range goes from {lo:g} to {hi:g}: the lower end must come first."))
        return self

    def to_params(self) -> dict[str, str]:
        """The JSON API's query parameters for this filter (what ``make_filter`` reads back)."""
        def rng(lo: float | None, hi: float | None) -> str | None:
            return None if lo is None and hi is None else f"{'' if lo is None else f'{lo:g}'}-" \
                f"{'' if hi is None else f'{hi:g}'}"

        params = {"genre": ",".join(self.genres), "bpm": rng(self.bpm_min, self.bpm_max),
                  "instrumental": "1" if self.instrumental else "",
                  "popularity": rng(self.popularity_min, self.popularity_max)}
        return {k: v for k, v in params.items() if v}

    def to_expr(self) -> str:
        """The Milvus boolean expression ('' when no filter is set)."""
        parts: list[str] = []
        if self.genres:
            from .store import GENRE_SLOTS

            wanted = sorted({genre_hash(g) for g in self.genres} - {0})
            parts.append("(" + " or ".join(f"genre{i} in {wanted}" for i in range(GENRE_SLOTS)) + ")")
        parts += _range_expr("bpm", self.bpm_min, self.bpm_max, float)
        if self.instrumental:
            parts.append(f"instrumental >= {INSTRUMENTAL_MIN}")
        parts += _range_expr("popularity", self.popularity_min, self.popularity_max, int)
        return " and ".join(parts)

    def describe(self) -> str:
        """``"genre rock or jazz · 100-130 BPM · instrumental"`` for an answer's header."""
        bits = []
        if self.genres:
            bits.append("genre " + " or ".join(self.genres))
        if self.bpm_min is not None or self.bpm_max is not None:
            bits.append(f"{_fmt(self.bpm_min, '0')}-{_fmt(self.bpm_max, '…')} BPM")
        if self.instrumental:
            bits.append("instrumental")
        if self.popularity_min is not None or self.popularity_max is not None:
            bits.append(f"popularity {_fmt(self.popularity_min, '0')}-{_fmt(self.popularity_max, '100')}")
        return " · ".join(bits)


VOCAL_TAGS = ("female vocalists", "male vocalists", "female vocalist")


def instrumental_score(tag_names, tags) -> float | None:
    """0..1 from musicnn's MSD tags: p(instrumental) / (p(instrumental) + the strongest vocal tag).

    A ratio of the two opinions rather than one raw probability, whose scale varies with
    the music; None when the backbone has no such tags.
    """
    if tags is None:
        return None
    p = dict(zip(tag_names, (float(x) for x in tags)))
    if "instrumental" not in p:
        return None
    vocal = max((p.get(t, 0.0) for t in VOCAL_TAGS), default=0.0)
    return p["instrumental"] / max(p["instrumental"] + vocal, 1e-6)


def _range_expr(field: str, lo, hi, cast) -> list[str]:
    """Milvus terms for ``lo <= field <= hi``; an upper bound leaves the unknown (-1) out too."""
    out = []
    if lo is not None:
        out.append(f"{field} >= {cast(lo)}")
    if hi is not None:
        out.append(f"({field} >= 0 and {field} <= {cast(hi)})")
    return out


def _fmt(v: float | None, default: str) -> str:
    return default if v is None else f"{v:g}"


def genre_hash(g: str) -> int:
    """A genre as a positive 63-bit integer (blake2b of its normalised name); 0 for no name."""
    import hashlib

    name = normalise_genre(g)
    if not name:
        return 0
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") & ((1 << 63) - 1) or 1


def normalise_genre(g: str) -> str:
    """How genres are stored and compared: trimmed, lower case, at most 64 characters, and
    without the characters the stored form and LIKE give a meaning to (``|``, ``%``, ``_``, quotes,
    backslash), so a genre can neither match another nor escape the expression."""
    g = re.sub(r'[|%_"\\\']', " ", str(g))
    return " ".join(g.split()).lower()[:64]


def parse_range(text: str | None, what: str) -> tuple[float | None, float | None]:
    """``"100-130"``, ``"100-"``, ``"-130"``, ``"100..130"``, ``"120"`` (exactly) -> (min, max).

    Raises ``BadFilterError`` with a sentence for anything else.
    """
    if text is None or not str(text).strip():
        return None, None
    t = str(text).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t), float(t)
    m = _RANGE.match(t)
    if not m or (m.group(1) is None and m.group(2) is None):
        raise BadFilterError(f"bad {what} range {text!r}", user_message=(
            f"I couldn't read the {what} range “{t[:40]}”; write it like 100-130, 100- or -130."))
    lo = float(m.group(1)) if m.group(1) is not None else None
    hi = float(m.group(2)) if m.group(2) is not None else None
    return lo, hi


def make_filter(genres: str | list[str] | tuple[str, ...] | None = None, bpm: str | None = None,
                instrumental: bool = False, popularity: str | None = None) -> TrackFilter:
    """A validated filter from user text: genres comma-separated, ranges as :func:`parse_range` reads them."""
    if isinstance(genres, str):
        genres = [g for g in (x.strip() for x in genres.split(",")) if g]
    b_lo, b_hi = parse_range(bpm, "tempo")
    p_lo, p_hi = parse_range(popularity, "popularity")
    return TrackFilter(tuple(genres or ()), b_lo, b_hi, bool(instrumental),
                       None if p_lo is None else int(p_lo), None if p_hi is None else int(p_hi)).validated()
