"""Per-client-IP token buckets: a burst is fine, a flood gets 429 with Retry-After.

Why a token bucket (and not the bot's sliding window): a page makes bursty
calls (autocomplete fires on typing, a person retries an upload), which a
bucket absorbs up to ``burst`` while holding the long-run rate to
``per_minute``; and ``retry_after`` is exact.  A refused request takes no
token.  Everything runs on the event loop, so no locks.  Idle buckets are
forgotten so a crowd of one-off clients cannot grow memory without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

MAX_KEYS = 50_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """``burst`` tokens per key, refilled at ``per_minute`` tokens per minute."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(0.0, float(per_minute)) / 60.0  # tokens per second
        self.burst = max(1, int(burst))
        self.clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _bucket(self, key: Hashable, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(now)
            b = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
        return b

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 when allowed, else the seconds to wait (nothing taken)."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        b = self._bucket(key, now)
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        full_after = self.burst / self.rate if self.rate else 0.0
        for k in [k for k, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[k]
        if len(self._buckets) >= MAX_KEYS:  # all busy: forget the oldest half
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)[: MAX_KEYS // 2]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


def client_ip(request, trust_forwarded: bool = False) -> str:
    """The rate-limit key of an aiohttp request: the peer address, or the first
    X-Forwarded-For hop when the app sits behind a proxy we trust."""
    if trust_forwarded:
        fwd = request.headers.get("X-Forwarded-For", "")
        first = fwd.split(",")[0].strip()
        if first:
            return first
    return request.remote or "unknown"
