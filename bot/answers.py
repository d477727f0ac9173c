"""What the bot showed for one request, and how to page on from it.

An :class:`Answer` is one message: the recognised track (if any), the track the
results were seeded from (if any), the five results shown, where they sit in the
ranking, and a pool of further results already fetched.  "More like this" makes
the next Answer from the pool, else by paging ``similar_to`` from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.catalogue import Track
from engine.service import Identification, Recommendation, ScoredTrack

#: Audio queries fetch this many pages at once: paging a clip later needs no re-download.
AUDIO_PAGES = 3


@dataclass
class Answer:
    answer_id: str
    flow: str
    query: str
    model_id: str
    identified: Identification | None
    seed: Track | None
    results: list[ScoredTrack]
    offset: int = 0
    pool: list[ScoredTrack] = field(default_factory=list)
    seconds: float = 0.0
    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None

    @classmethod
    def from_recommendation(cls, rec: Recommendation, *, answer_id: str, flow: str, query: str, page_size: int,
                            seconds: float = 0.0, **who: int | None) -> Answer:
        seed = rec.seed or (rec.identified.track if rec.identified else None)
        return cls(answer_id, flow, query, rec.model_id, rec.identified, seed, list(rec.results[:page_size]), 0,
                   list(rec.results[page_size:]), seconds, **who)

    @property
    def has_more(self) -> bool:
        return bool(self.pool) or self.seed is not None

    def record(self) -> dict:
        """The row stored for feedback and evaluation."""
        return {"answer_id": self.answer_id, "flow": self.flow, "query": self.query, "model_id": self.model_id,
                    "identified": self.identified.to_dict() if self.identified else None,
                    "seed": self.seed.to_dict() if self.seed else None,
                    "results": [{**r.to_dict(), "rank": self.offset + i + 1} for i, r in enumerate(self.results)],
                    "user_id": self.user_id, "guild_id": self.guild_id, "channel_id": self.channel_id}
