"""Client-side rate limiting: a token bucket per endpoint, as a transport wrapper.

A token bucket is not a concurrency cap: it bounds how many requests *start* per second,
however many are in flight. The executor's semaphore bounds how many targets run at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from engine.api.transport import HttpRequest, HttpResponse, Transport


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one.

    Waiters are served in arrival order (one lock), so no caller starves.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated: float | None = None
        self._lock = asyncio.Lock()

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        async with self._lock:
            now = self._now()
            if self._updated is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                await self._sleep(wait)
                self._updated = self._now()
                self._tokens = 1.0
            self._tokens -= 1


class RateLimitedTransport:
    """Waits for a token of the request's endpoint (scheme://host:port) before sending."""

    def __init__(self, inner: Transport, rate_per_s: float, *, burst: float = 1.0) -> None:
        self._inner = inner
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    async def send(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        key = f"{parts.scheme}://{parts.netloc}"
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, burst=self._burst)
        await bucket.acquire()
        return await self._inner.send(request)
