"""The emulator's gateway throttle and its rate meter, both on sliding windows of the fleet clock.

``Throttle`` refuses a request when its (user, route) already had ``limit`` admitted requests in
the last window: a sliding window, stricter than the fixed windows a gateway may use (no double
burst across a window edge), so a client that passes here passes there. ``RateMeter`` measures
the most requests admitted in any one-second window, per route and overall; tests read it to
prove a client stayed under its own limit. Neither is a token bucket: there is no burst credit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class _Window:
    """Timestamps of admitted events within the last ``length`` seconds."""

    __slots__ = ("_events", "_length")

    def __init__(self, length: float) -> None:
        self._length = length
        self._events: deque[float] = deque()

    def count(self, now: float) -> int:
        while self._events and self._events[0] <= now - self._length:
            self._events.popleft()
        return len(self._events)

    def add(self, now: float) -> int:
        count = self.count(now) + 1
        self._events.append(now)
        return count


class Throttle:
    """Admit at most ``limit`` requests per ``window_s`` per (identity, route).

    A rate of ``r`` per second becomes ``floor(r)`` per 1 s window when ``r >= 1``; a slower
    rate becomes 1 request per ``1/r`` s window (``30/m``: 1 per 2 s).
    """

    def __init__(self, rate_per_s: float, clock: Clock) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be greater than zero, got {rate_per_s}")
        self.window_s = 1.0 if rate_per_s >= 1 else 1.0 / rate_per_s
        self.limit = max(1, math.floor(rate_per_s * self.window_s + 1e-9))
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    @property
    def retry_after_s(self) -> int:
        """The ``Retry-After`` a refused request gets, in whole seconds."""
        return max(1, math.ceil(self.window_s))

    def admit(self, identity: str, route: str) -> bool:
        """Whether this request may pass; an admitted request counts, a refused one does not."""
        now = self._clock()
        window = self._windows.setdefault((identity, route), _Window(self.window_s))
        if window.count(now) >= self.limit:
            return False
        window.add(now)
        return True


class RateMeter:
    """The peak number of admitted requests in any one-second window, per route and overall."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._all = _Window(1.0)
        self.peak: dict[str, int] = {}
        self.peak_all = 0

    def record(self, route: str) -> None:
        now = self._clock()
        count = self._windows.setdefault(route, _Window(1.0)).add(now)
        self.peak[route] = max(self.peak.get(route, 0), count)
        self.peak_all = max(self.peak_all, self._all.add(now))
