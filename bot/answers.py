"""What the bot showed for one request, and how to page on from it.

An :class:`Answer` is one message: the recognised track (if any), the track the
results were seeded from (if any), the five results shown, where they sit in the
ranking, and a pool of further results already fetched.  "More like this" makes
the next Answer from the pool, else by paging the engine from the seed (tracks
like it, or more by its artist: the answer's ``kind``, with the filters it was
asked with).

Every answer is stored (:mod:`bot.feedback`) with all of that, so a button
pressed after a restart rebuilds it with :meth:`Answer.from_record`: the buttons
carry only the answer id (:mod:`bot.views`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.catalogue import Track
from engine.filters import TrackFilter
from engine.service import Identification, Recommendation, ScoredTrack

#: Audio queries fetch this many pages at once: paging a clip later needs no re-download.
AUDIO_PAGES = 3

#: How "More like this" pages: "audio" the clip's pool, then tracks like the recognised song;
#: "similar" tracks like the seed (within the filters); "artist" more by the seed's artist.
Kind = Literal["audio", "similar", "artist"]
#: flows whose answer is about a recording (the kind of rows stored before ``kind`` was)
AUDIO_FLOWS = frozenset({"voice", "attachment", "recommend", "context_menu"})


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
    kind: Kind = "similar"
    filters: TrackFilter | None = None
    created_at: float = field(default_factory=time.time)
    #: False for an answer stored before the pool was (schema v0): with no seed it cannot page
    pool_kept: bool = True
    #: the engine's hedged guess when nothing was identified (might_be_of in the engine's service module)
    might_be: Track | None = None

    @classmethod
    def from_recommendation(cls, rec: Recommendation, *, answer_id: str, flow: str, query: str, page_size: int,
                            kind: Kind, filters: TrackFilter | None = None, seconds: float = 0.0,
                            **who: int | None) -> Answer:
        seed = rec.seed or (rec.identified.track if rec.identified else None)
        return cls(answer_id, flow, query, rec.model_id, rec.identified, seed, list(rec.results[:page_size]), 0,
                   list(rec.results[page_size:]), seconds, **who, kind=kind,
                   filters=filters if filters is not None and filters.active else None,
                   might_be=getattr(rec, "might_be", None))

    @property
    def has_more(self) -> bool:
        return bool(self.pool) or self.seed is not None

    def record(self) -> dict[str, Any]:
        """The row stored for feedback and evaluation, and for rebuilding the answer after a restart."""
        return {"answer_id": self.answer_id, "flow": self.flow, "query": self.query, "model_id": self.model_id,
                "identified": self.identified.to_dict() if self.identified else None,
                "seed": self.seed.to_dict() if self.seed else None,
                "results": [{**r.to_dict(), "rank": self.offset + i + 1} for i, r in enumerate(self.results)],
                "user_id": self.user_id, "guild_id": self.guild_id, "channel_id": self.channel_id,
                "kind": self.kind, "offset": self.offset, "pool": [r.to_dict() for r in self.pool],
                "filters": dataclasses.asdict(self.filters) if self.filters is not None else None,
                "might_be": self.might_be.to_dict() if self.might_be is not None else None}

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> Answer:
        """The answer a stored row describes (:meth:`bot.feedback.FeedbackStore.get_answer`).

        Rows stored before ``kind``, ``offset`` and ``pool`` were kept get them from
        what was: the kind from the flow, the offset from the first result's rank, and
        ``pool_kept=False`` (their pool is lost; they page from the seed, if any).
        """
        results = [ScoredTrack.from_dict(d) for d in row["results"]]
        kind = row.get("kind") or ("audio" if row["flow"] in AUDIO_FLOWS else
                                   "artist" if row["flow"] == "artist" else "similar")
        offset = row.get("offset")
        if offset is None:
            offset = int(row["results"][0].get("rank", 1)) - 1 if row["results"] else 0
        filters = row.get("filters")
        return cls(
            answer_id=row["answer_id"], flow=row["flow"], query=row["query"], model_id=row["model_id"],
            identified=Identification.from_dict(row["identified"]) if row.get("identified") else None,
            seed=Track.from_dict(row["seed"]) if row.get("seed") else None,
            results=results, offset=offset, pool=[ScoredTrack.from_dict(d) for d in row.get("pool") or ()],
            user_id=row.get("user_id"), guild_id=row.get("guild_id"), channel_id=row.get("channel_id"),
            kind=kind, filters=TrackFilter(**{**filters, "genres": tuple(filters.get("genres", ()))})
            if filters else None, created_at=float(row["created_at"]), pool_kept=row.get("pool") is not None,
            might_be=Track.from_dict(row["might_be"]) if row.get("might_be") else None)
