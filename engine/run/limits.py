"""Concurrency caps on API requests: one for the run, one per target, granted fairly in turn.

A concurrency cap is not a rate limit: it bounds how many requests are in flight at once,
whatever their pace; ``engine.api.ratelimit`` paces them. Targets do not hold a slot while
they wait (a poll interval, a backoff, a sleep step): only a request in flight does. When a
slot frees up, it goes to the next target in turn that has a request waiting and is under its
own cap, so a project with thousands of jobs cannot starve one with ten.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque

from engine.api.transport import HttpRequest, HttpResponse, Transport


class FairLimiter:
    """At most ``total`` holders at once, and at most ``per_key`` with the same key."""

    def __init__(self, total: int, per_key: int) -> None:
        if total < 1 or per_key < 1:
            raise ValueError(f"limits must be >= 1, got total={total}, per_key={per_key}")
        self.total = total
        self.per_key = per_key
        self.in_flight = 0
        self._by_key: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()  # keys with waiters, next in turn first

    async def acquire(self, key: str) -> None:
        held = self._by_key.get(key, 0)
        if not self._turns and self.in_flight < self.total and held < self.per_key:
            self.in_flight += 1  # a free slot and nobody waiting: no turn to take
            self._by_key[key] = held + 1
            return
        granted = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        if not queue:
            self._turns.append(key)
        queue.append(granted)
        self._dispatch()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(key)  # granted as it was cancelled: hand the slot on
            raise

    def release(self, key: str) -> None:
        self.in_flight -= 1
        self._by_key[key] -= 1
        if not self._by_key[key]:
            del self._by_key[key]
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant free slots to waiting keys in turn, skipping keys at their own cap."""
        passed = 0
        while self.in_flight < self.total and passed < len(self._turns):
            key = self._turns[0]
            queue = self._waiting[key]
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
            if not queue:
                self._turns.popleft()
                del self._waiting[key]
                continue
            self._turns.rotate(-1)  # this key goes to the back of the line either way
            if self._by_key.get(key, 0) >= self.per_key:
                passed += 1
                continue
            passed = 0
            queue.popleft().set_result(None)
            self.in_flight += 1
            self._by_key[key] = self._by_key.get(key, 0) + 1
            if not queue:
                self._turns.pop()
                del self._waiting[key]


class FairTransport:
    """Holds a slot of the limiter for each request, keyed by the project in its path."""

    def __init__(self, inner: Transport, limiter: FairLimiter) -> None:
        self._inner = inner
        self._limiter = limiter

    async def send(self, request: HttpRequest) -> HttpResponse:
        key = project_of(request.url)
        await self._limiter.acquire(key)
        try:
            return await self._inner.send(request)
        finally:
            self._limiter.release(key)


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def project_of(url: str) -> str:
    """The project id of a DRS URL (``/v3/{project_id}/...``); other calls share one key."""
    parts = url.split("://", 1)[-1].split("?", 1)[0].split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "v3" else ""
