"""The contract the front-ends (the Discord bot, the web app) depend on: :class:`SynestheteAPI`.

Why a Protocol: the bot and the web app need six things from the engine, not
the whole :class:`engine.service.SynestheteService` with its stores, models and
executors.  Typing their ``service`` parameters with this Protocol says exactly
what they may call, lets the engine change everything else in one place, and
lets a test double be a plain class (tests/bot/fakes.py) instead of a subclass
that rebuilds the real service's private fields.  The real service conforms
(tests/bot/test_service_contract.py checks both, by ``isinstance`` and by
signature).

Shapes
    ``arecommend``, ``asimilar_to``, ``amore_by_artist`` return an
    :class:`engine.service.Recommendation`: ``identified`` (the catalogue song
    the recording is, or None), ``results`` (``ScoredTrack``, best first, at
    most ``k``), ``seed`` (the track a "similar" started from), ``model_id``.
    ``asearch_tracks`` returns at most ``min(limit, 25)``
    :class:`engine.catalogue.SearchHit` (``track``, ``score``), best first.
    ``about()`` is a dict with at least ``tracks``, ``indexed_tracks`` and
    ``model_id`` (health checks read those); it is blocking (call it in a
    thread from a coroutine).  ``settings`` is the :class:`engine.settings.Settings`
    the service was opened with (``top_k``, limits); ``model_id`` names the
    backbone and head, for answers and feedback records.

Errors
    Every failure a user can cause or see is an :class:`engine.errors.SynestheteError`
    subclass with a stable ``kind`` and one friendly ``user_message``; front-ends
    show that sentence and log ``str(exc)``.  Anything else is a bug.

    * audio (``arecommend``): ``TooLargeAudioError``, ``NotAudioError``,
      ``CorruptAudioError``, ``EmptyAudioError``, ``TooShortAudioError``,
      ``DecodeTimeoutError`` (all ``AudioError``);
    * a track id that is not in the catalogue, or has no audio: ``TrackNotFoundError``;
    * filters: ``BadFilterError`` (they contradict), ``NothingMatchesError`` (nothing passes);
    * load: ``BusyError`` at once when every query slot is taken (never a queue),
      ``QueryTimeoutError`` after ``settings.query_timeout_s``;
    * the index: ``StoreError`` and its subclasses (unavailable, locked, empty).

Concurrency
    The ``a*`` coroutines never hold the event loop: CPU work runs in the
    service's own bounded threads.  They may be called concurrently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .audio import AudioSource
    from .catalogue import SearchHit
    from .filters import TrackFilter
    from .service import Recommendation
    from .settings import Settings


@runtime_checkable
class SynestheteAPI(Protocol):
    """What a front-end may use of the engine (see the module docstring for shapes and errors)."""

    settings: Settings

    @property
    def model_id(self) -> str:
        """``backbone:version+head:hash``: which model made an answer."""
        ...

    def about(self) -> dict[str, Any]:
        """Catalogue size, index and model facts (blocking)."""
        ...

    def health(self) -> dict[str, Any]:
        """Whether the engine can answer now (blocking, a few seconds at most): ``{"ok": bool, "store": ..., ...}``.

        ``ok`` needs indexed tracks and a store that answers (``/healthz``; issue 30).
        """
        ...

    async def arecommend(self, source: AudioSource, k: int | None = None, diverse: bool = True,
                         filters: TrackFilter | None = None) -> Recommendation:
        """Identify a recording (when it is a catalogue song) and recommend ``k`` other tracks.

        ``k`` None: ``settings.top_k``; ``diverse=False``: the raw similarity
        ranking without the per-artist cap; ``filters`` restrict the answers.
        """
        ...

    async def asimilar_to(self, track_id: str, k: int | None = None, offset: int = 0, diverse: bool = True,
                          filters: TrackFilter | None = None) -> Recommendation:
        """Tracks most like a catalogue track; ``offset`` pages through them ("more like this")."""
        ...

    async def amore_by_artist(self, track_id: str, k: int | None = None, offset: int = 0) -> Recommendation:
        """The seed's own artist's other tracks, most similar first."""
        ...

    async def aradio(self, track_id: str, n: int | None = None, filters: TrackFilter | None = None) -> Recommendation:
        """A radio playlist of ``n`` tracks (default 25, 1..50) drifting from a catalogue track or a
        Spotify track link (``engine.radio``); each result's similarity is to the track before it;
        ``note`` says why when fewer qualify.  ``BadRadioLengthError`` (bad_request) outside 1..50."""
        ...

    async def asearch_tracks(self, text: str, limit: int = 10) -> list[SearchHit]:
        """Catalogue tracks by title and artist (prefix and typo tolerant), for autocomplete."""
        ...
