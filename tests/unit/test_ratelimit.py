"""Token bucket and the rate-limited transport, on a virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from engine.api.ratelimit import RateLimitedTransport, TokenBucket
from engine.api.transport import HttpRequest, HttpResponse


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_bucket_spaces_requests_at_the_rate_after_the_burst() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(10.0, burst=5, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(25):
        await bucket.acquire()
        starts.append(clock.now)
    assert starts[:5] == [0.0] * 5
    assert clock.now == pytest.approx(2.0)  # 20 more at 10/s
    # No one-second window ever holds more than rate + burst starts.
    assert max(sum(1 for s in starts if t <= s < t + 1) for t in starts) <= 15


async def test_bucket_refills_while_idle_but_never_beyond_burst() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(2.0, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(2):
        await bucket.acquire()
    clock.now += 100.0
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_bucket_rejects_nonsense_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst=burst)


async def test_transport_limits_each_endpoint_separately() -> None:
    sent: list[str] = []

    class Inner:
        async def send(self, request: HttpRequest) -> HttpResponse:
            sent.append(request.url)
            return HttpResponse(status=200, headers={}, body=b"{}")

    transport = RateLimitedTransport(Inner(), 50.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    requests = [
        HttpRequest(method="POST", url=f"http://{host}/v3/p/jobs", headers={}, body=b"")
        for host in ("127.0.0.1:1", "127.0.0.1:2")
        for _ in range(6)
    ]
    await asyncio.gather(*(transport.send(r) for r in requests))
    elapsed = loop.time() - start
    assert len(sent) == 12
    # Each endpoint: 1 at once, 5 more at 50/s = 0.1 s; both endpoints in parallel.
    assert 0.09 <= elapsed < 0.5
