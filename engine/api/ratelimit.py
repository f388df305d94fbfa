"""Client-side rate limiting: a token bucket per identity, region and API, as a transport wrapper.

A token bucket is not a concurrency cap: it bounds how many requests *start* per second,
however many are in flight; ``engine.run.limits`` caps how many are in flight.

Three things keep a run under the gateway's limit without wasting it. The bucket paces at
``PACING`` of the limit, not all of it: a request that waits for a new connection arrives a few
milliseconds late, and the next one, on time, would make one too many in the gateway's second.
A waiter the event loop wakes late (a busy loop wakes every sleeper a few milliseconds late) is
counted from the moment its token was due, up to ``LATE_CREDIT_S``: otherwise each grant would
lose its lateness and, over hundreds of grants, the bucket would pace below its rate; a longer
stall is not credited, so it never turns into a burst. And without a configured limit, the
first 429 ``APIGW.0308`` teaches the endpoint's limit (its message says ``limit:N, time:T
second``): from then on that endpoint is paced too.
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
# How late a woken waiter may be and still be counted from when its token was due (see the
# module docstring): a few ms of a busy loop, never a stall.
LATE_CREDIT_S = 0.005
_LIMIT = re.compile(r"limit:\s*(\d+(?:\.\d+)?),\s*time:\s*(\d+(?:\.\d+)?)\s*(second|minute)")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one.

    Waiters are served in arrival order (one lock), so no caller starves. A waiter woken at
    most ``LATE_CREDIT_S`` after its token was due is granted as if on time: consecutive grants
    are never closer than ``1 / rate - LATE_CREDIT_S``, and over many grants the rate is kept.
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
                due = now + wait
                await self._sleep(wait)
                woke = self._now()
                # Late by a busy loop's few ms: the next token accrues from when this one was
                # due. Later than that (a stall): from now, so no burst follows.
                self._updated = due if woke - due <= LATE_CREDIT_S else woke
                self._tokens = 1.0
            self._tokens -= 1


class RateBudgets:
    """Every token bucket of a run, one per budget key: (scope, route).

    The gateway throttles per user, per region and per API, so a budget is keyed the same way:
    ``scope`` names the identity and the region (or endpoint) — ``prod cn-north-4`` — and the
    route is ``METHOD /v3/{project_id}/jobs/...``. Two accounts, or two regions of one account,
    never share a budget; one account's targets in one region always do, whichever client sends.

    A budget's rate is its scope's configured one (an account's ``rate_limit`` over the
    runbook's), else what a 429 ``APIGW.0308`` taught for that key; without either, unpaced.
    """

    def __init__(self, *, burst: float = 1.0) -> None:
        self._burst = burst
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._learnt: dict[tuple[str, str], float] = {}

    def bucket(self, key: tuple[str, str], configured: float | None) -> TokenBucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self._learnt.get(key, configured)
            if rate is not None:
                bucket = self._buckets[key] = TokenBucket(rate * PACING, burst=self._burst)
        return bucket

    def learn(self, key: tuple[str, str], configured: float | None, response: HttpResponse) -> None:
        code, message = error_fields(response)
        match = _LIMIT.search(message or "") if code == ERR_THROTTLED else None
        if match is None:
            return
        per_s = float(match[1]) / (float(match[2]) * (60.0 if match[3] == "minute" else 1.0))
        known = self._learnt.get(key, configured)
        if per_s <= 0 or (known is not None and known <= per_s):
            return
        scope, route = key
        logger.warning(
            "%s throttles %s at %g requests/s: pacing it", scope or "the endpoint", route, per_s
        )
        self._learnt[key] = per_s
        self._buckets.pop(key, None)  # the next request makes a bucket at the learnt rate


class RateLimitedTransport:
    """Waits for a token of the request's budget (``scope``, route) before sending.

    One per identity and region (or endpoint), over the run's shared ``RateBudgets``. Without a
    ``scope`` the request's origin (scheme://host:port) is the scope.
    """

    def __init__(
        self,
        inner: Transport,
        rate_per_s: float | None = None,
        *,
        budgets: RateBudgets | None = None,
        scope: str | None = None,
    ) -> None:
        self._inner = inner
        self._rate = rate_per_s
        self._budgets = budgets if budgets is not None else RateBudgets()
        self._scope = scope

    async def send(self, request: HttpRequest) -> HttpResponse:
        key = (self._scope if self._scope is not None else _origin(request.url), route_of(request))
        bucket = self._budgets.bucket(key, self._rate)
        if bucket is not None:
            await bucket.acquire()
        response = await self._inner.send(request)
        if response.status == 429:
            self._budgets.learn(key, self._rate, response)
        return response


def route_of(request: HttpRequest) -> str:
    """``METHOD /route`` of a request, project ids folded into ``{project_id}``."""
    return _route(request.method, request.url)


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def _route(method: str, url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == "v3" and parts[1] != "auth":
        parts[1] = "{project_id}"
    return f"{method} /{'/'.join(parts)}"


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: requests to one origin share one bucket."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
