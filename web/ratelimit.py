"""Per-client-address rate limits on the ``limits`` library: a burst is fine, a flood gets 429.

Why ``limits``: its strategies and storages are maintained and tested, and the
same code enforces one limit across several engine processes by pointing the
storage at a shared backend (``async+redis://host:6379``, see docs/api.md)
instead of this process's memory.  What stays ours is only the mapping of our
settings onto its items and the Retry-After arithmetic.

How the settings map (``per_minute`` = R, ``burst`` = B; the settings
``web_rate_per_minute``/``web_rate_burst`` for audio, ``web_search_rate_*`` for
search and autocomplete): one **moving window** of B requests per B·60/R
seconds, per client address.  That keeps both promises the old token bucket
made: B requests back to back are fine (a person retrying an upload,
autocomplete firing while typing), and over any long stretch a client gets at
most R a minute.  Defaults: audio 12/min, burst 6 -> 6 per 30 s; search
240/min, burst 40 -> 40 per 10 s.  The one difference: after a burst a bucket
gave one request back every 60/R s, the window gives the whole burst back once
the oldest request in it is B·60/R s old.  The window is whole seconds (limits'
granularity), rounded; when B·60/R is under a second it becomes R/60 (at
least B) per second.  ``per_minute <= 0`` switches a limit off.

Why a moving window and not limits' fixed window: a fixed window lets a client
send 2·B across a window boundary; the moving window never allows more than B
in any B·60/R seconds, and its Retry-After is exact (when the oldest request
in the window leaves it).  A refused request is not counted.  Expired entries
are dropped by the storage, so a crowd of one-off clients cannot grow memory
without bound.

A storage outage (a shared Redis gone) lets requests through with a warning:
the limit protects the engine from floods, it must not take the page down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

log = logging.getLogger(__name__)

#: In-process memory: right for one engine process (the default deployment).
DEFAULT_STORAGE_URI = "async+memory://"


def rate_item(per_minute: float, burst: int, namespace: str) -> RateLimitItem | None:
    """The moving-window item for ``per_minute`` with ``burst`` (see the module docstring); None: no limit."""
    rate = float(per_minute)
    if rate <= 0:
        return None
    burst = max(1, int(burst))
    window_s = burst * 60.0 / rate
    if window_s >= 1.0:
        return RateLimitItemPerSecond(burst, max(1, round(window_s)), namespace=namespace)
    return RateLimitItemPerSecond(max(burst, round(rate / 60.0)), 1, namespace=namespace)


def make_storage(uri: str | None = None) -> Any:
    """A limits async storage from a URI (default in-process memory); errors wrapped as ``StorageError``."""
    uri = uri or DEFAULT_STORAGE_URI
    if not uri.startswith("async+"):
        raise ValueError(f"rate-limit storage {uri!r}: use an async storage URI such as "
                         "async+memory:// or async+redis://host:6379")
    return storage_from_string(uri, wrap_exceptions=True)


class RateLimiter:
    """One named limit (``audio``, ``search``) per client key, over a shared limits storage."""

    def __init__(self, name: str, per_minute: float, burst: int, *, storage: Any | None = None) -> None:
        self.name = name
        self.item = rate_item(per_minute, burst, namespace=f"synesthete-web-{name}")
        self.storage = storage if storage is not None else make_storage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    @property
    def enabled(self) -> bool:
        return self.item is not None

    async def take(self, key: str) -> float:
        """Count one request for ``key``: 0.0 when allowed, else the seconds to wait (nothing counted)."""
        if self.item is None:
            return 0.0
        try:
            if await self._limiter.hit(self.item, key):
                return 0.0
            stats = await self._limiter.get_window_stats(self.item, key)
        except StorageError as exc:
            log.warning("rate limit %s not enforced: storage error %s", self.name, exc)
            return 0.0
        # the oldest request in the window leaves it at reset_time; a clock tick of slack keeps it > 0
        return max(0.001, stats.reset_time - time.time())


def make_limiters(per_minute: float, burst: int, search_per_minute: float, search_burst: int,
                  storage_uri: str | None = None) -> dict[str, RateLimiter]:
    """The web app's two limits over one storage: ``audio`` (uploads, live) and ``search`` (search, similar)."""
    storage = make_storage(storage_uri)
    return {"audio": RateLimiter("audio", per_minute, burst, storage=storage),
            "search": RateLimiter("search", search_per_minute, search_burst, storage=storage)}


def client_ip(request: Any, trust_forwarded: bool = False) -> str:
    """The rate-limit key of an aiohttp request: the peer address, or the first
    X-Forwarded-For hop when the app sits behind a proxy we trust."""
    if trust_forwarded:
        fwd = request.headers.get("X-Forwarded-For", "")
        first = fwd.split(",")[0].strip()
        if first:
            return first
    return request.remote or "unknown"
