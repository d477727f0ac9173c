"""Spam control: a per-user sliding-window cooldown and a per-guild concurrency cap.

Why not ``commands.CooldownMapping``: the same budget must cover messages,
slash commands and buttons, which carry users in different places, and a
refused request must not use up a token (we check, then take), so a small
keyed sliding window is simpler and exact.  Everything here runs on the event
loop only, so no locks are needed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

from ..errors import CooldownError, GuildBusyError


class UserCooldowns:
    """At most ``rate`` hits per ``per`` seconds per key."""

    def __init__(self, rate: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(1, int(rate))
        self.per = float(per)
        self.clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        self._warned: dict[Hashable, float] = {}  # key -> end of the refusal we told them about

    def _window(self, key: Hashable, now: float) -> deque[float]:
        q = self._hits.setdefault(key, deque())
        while q and now - q[0] >= self.per:
            q.popleft()
        return q

    def retry_after(self, key: Hashable) -> float:
        """0 when ``key`` may go now, else seconds until it may."""
        if self.per <= 0:
            return 0.0
        now = self.clock()
        q = self._window(key, now)
        return 0.0 if len(q) < self.rate else self.per - (now - q[0])

    def hit(self, key: Hashable) -> None:
        """Take a token or raise :class:`CooldownError` (a refusal takes nothing)."""
        wait = self.retry_after(key)
        if wait > 0:
            # say it once per refusal window: a user who keeps sending gets silence, not a reply each time
            now = self.clock()
            quiet = now < self._warned.get(key, float("-inf"))
            if not quiet:
                self._warned[key] = now + wait
            err = CooldownError(wait)
            err.quiet = quiet
            raise err
        if self.per > 0:
            self._hits[key].append(self.clock())
        if len(self._hits) > 10_000:  # forget idle users now and then
            now = self.clock()
            for k in [k for k, q in self._hits.items() if not q or now - q[-1] >= self.per]:
                del self._hits[k]
                self._warned.pop(k, None)


class GuildSlots:
    """At most ``cap`` queries in flight per guild (DMs are not capped here)."""

    def __init__(self, cap: int, estimate: Callable[[], float] = lambda: 5.0) -> None:
        self.cap = max(1, int(cap))
        self.estimate = estimate
        self.running: dict[int, int] = {}

    def acquire(self, guild_id: int | None) -> None:
        if guild_id is None:
            return
        n = self.running.get(guild_id, 0)
        if n >= self.cap:
            raise GuildBusyError(n, self.estimate())
        self.running[guild_id] = n + 1

    def release(self, guild_id: int | None) -> None:
        if guild_id is None:
            return
        n = self.running.get(guild_id, 0) - 1
        if n <= 0:
            self.running.pop(guild_id, None)
        else:
            self.running[guild_id] = n
