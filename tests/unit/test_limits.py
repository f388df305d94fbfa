"""The run's request limiter: a global cap, a per-target cap, and slots granted in turn."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from engine.api.transport import HttpRequest, HttpResponse
from engine.run.limits import FairLimiter, FairTransport, project_of


async def _hold(limiter: FairLimiter, key: str, order: list[str], live: Counter[str]) -> None:
    await limiter.acquire(key)
    try:
        live[key] += 1
        live["*"] += 1
        live[f"max {key}"] = max(live[f"max {key}"], live[key])
        live["max *"] = max(live["max *"], live["*"])
        order.append(key)
        await asyncio.sleep(0.001)
    finally:
        live[key] -= 1
        live["*"] -= 1
        limiter.release(key)


async def test_never_more_in_flight_than_either_cap() -> None:
    limiter = FairLimiter(total=3, per_key=2)
    order: list[str] = []
    live: Counter[str] = Counter()
    async with asyncio.TaskGroup() as group:
        for key in "aaaaabbbbbc":
            group.create_task(_hold(limiter, key, order, live))
    assert live["max *"] == 3
    assert live["max a"] == 2
    assert live["max b"] == 2
    assert sorted(order) == sorted("aaaaabbbbbc")
    assert limiter.in_flight == 0


async def test_a_small_target_is_not_starved_by_a_large_one() -> None:
    limiter = FairLimiter(total=1, per_key=1)
    order: list[str] = []
    live: Counter[str] = Counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(20):
            group.create_task(_hold(limiter, "big", order, live))
        await asyncio.sleep(0)  # the big target queued all its requests first
        for _ in range(2):
            group.create_task(_hold(limiter, "small", order, live))
    # The first big request had the slot before anyone waited; then the two take turns, so the
    # small target's requests are the 3rd and 5th of 22, not the last two.
    assert [i for i, key in enumerate(order) if key == "small"] == [2, 4]


async def test_a_cancelled_waiter_gives_up_its_place_and_leaks_no_slot() -> None:
    limiter = FairLimiter(total=1, per_key=1)
    await limiter.acquire("a")
    waiter = asyncio.create_task(limiter.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release("a")
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire("c"), timeout=1)  # the slot is free for others
    assert limiter.in_flight == 1


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="limits must be >= 1"):
        FairLimiter(total=0, per_key=1)


def test_requests_are_keyed_by_their_project() -> None:
    assert project_of("http://h:1/v3/abc123/jobs/batch-status?x=1") == "abc123"
    assert project_of("https://iam.example/v3/auth/tokens") == "auth"
    assert project_of("http://h/_emulator/stats") == ""


async def test_the_transport_holds_a_slot_only_while_the_request_is_in_flight() -> None:
    limiter = FairLimiter(total=1, per_key=1)
    seen: list[int] = []

    class Inner:
        async def send(self, request: HttpRequest) -> HttpResponse:
            seen.append(limiter.in_flight)
            return HttpResponse(status=200, headers={}, body=b"{}")

    transport = FairTransport(Inner(), limiter)
    request = HttpRequest(method="POST", url="http://h/v3/p1/jobs", headers={}, body=b"{}")
    await transport.send(request)
    await transport.send(request)
    assert seen == [1, 1]
    assert limiter.in_flight == 0
