"""Client-side rate limiting: a token bucket per endpoint, as a transport wrapper.

A token bucket is not a concurrency cap: it bounds how many requests *start* per second,
however many are in flight; ``engine.run.limits`` caps how many are in flight.

Two things keep a run under the gateway's limit without wasting it. The bucket paces at
``PACING`` of the limit, not all of it: a request that waits for a new connection arrives a few
milliseconds late, and the next one, on time, would make one too many in the gateway's second.
And without a configured limit, the first 429 ``APIGW.0308`` teaches the endpoint's limit (its
message says ``limit:N, time:T second``): from then on that endpoint is paced too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from engine.api.transport import HttpRequest, HttpResponse, Transport, error_fields
from engine.api.types import ERR_THROTTLED

logger = logging.getLogger(__name__)

# The share of a limit the bucket paces at (see the module docstring).
PACING = 0.98
_LIMIT = re.compile(r"limit:\s*(\d+(?:\.\d+)?),\s*time:\s*(\d+(?:\.\d+)?)\s*(second|minute)")


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
    """Waits for a token of the request's endpoint (scheme://host:port) before sending.

    With ``rate_per_s`` every endpoint is paced from the start; without it, an endpoint is paced
    once a 429 has told its limit (and a configured rate is lowered the same way if the gateway
    says its limit is lower).
    """

    def __init__(
        self, inner: Transport, rate_per_s: float | None = None, *, burst: float = 1.0
    ) -> None:
        self._inner = inner
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._learnt: dict[str, float] = {}

    async def send(self, request: HttpRequest) -> HttpResponse:
        key = _origin(request.url)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self._learnt.get(key, self._rate)
            if rate is not None:
                bucket = self._buckets[key] = TokenBucket(rate * PACING, burst=self._burst)
        if bucket is not None:
            await bucket.acquire()
        response = await self._inner.send(request)
        if response.status == 429:
            self._learn(key, response)
        return response

    def _learn(self, key: str, response: HttpResponse) -> None:
        code, message = error_fields(response)
        match = _LIMIT.search(message or "") if code == ERR_THROTTLED else None
        if match is None:
            return
        per_s = float(match[1]) / (float(match[2]) * (60.0 if match[3] == "minute" else 1.0))
        known = self._learnt.get(key, self._rate)
        if per_s <= 0 or (known is not None and known <= per_s):
            return
        logger.warning("%s throttles at %g requests/s: pacing every request to it", key, per_s)
        self._learnt[key] = per_s
        self._buckets.pop(key, None)  # the next request makes a bucket at the learnt rate


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: requests to one origin share one bucket."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
