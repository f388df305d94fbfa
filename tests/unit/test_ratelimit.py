"""Token bucket and the rate-limited transport, on a virtual clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from engine.api.ratelimit import LATE_CREDIT_S, PACING, RateLimitedTransport, TokenBucket
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


class LateWakingClock(VirtualClock):
    """A busy event loop: every sleeper wakes the next of ``lateness`` seconds late."""

    def __init__(self, lateness: list[float]) -> None:
        super().__init__()
        self._lateness = itertools.cycle(lateness)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + next(self._lateness)


async def _grants(bucket: TokenBucket, clock: VirtualClock, count: int) -> list[float]:
    starts = []
    for _ in range(count):
        await bucket.acquire()
        starts.append(clock.now)
    return starts


def _most_in_one_second(starts: list[float]) -> int:
    return max(sum(1 for s in starts if t <= s < t + 1) for t in starts)


async def test_a_waiter_woken_late_within_the_credit_keeps_the_buckets_rate() -> None:
    # Before, each grant lost its lateness: 299 waits 2.6 ms late on average took 16.03 s
    # instead of 15.26 s, 5 % below the rate.
    clock = LateWakingClock([0.004, 0.001, 0.0049, 0.0, 0.003])
    rate = 20.0 * PACING
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    starts = await _grants(bucket, clock, 300)
    assert 299 / rate - 1e-9 <= starts[-1] - starts[0] <= 299 / rate + LATE_CREDIT_S
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1 / rate - LATE_CREDIT_S - 1e-9
    assert _most_in_one_second(starts) <= 20  # never more than the gateway's 20 in its second


async def test_a_waiter_woken_after_a_stall_is_not_followed_by_a_burst() -> None:
    lateness = [0.003] * 10 + [0.5] + [0.002] * 10 + [0.04] + [0.0] * 10
    clock = LateWakingClock(lateness)
    rate = 20.0 * PACING
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    starts = await _grants(bucket, clock, len(lateness) + 1)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The grants after the stalls (the 11th and 22nd sleeps) wait a whole interval again.
    assert gaps[11] >= 1 / rate - 1e-9
    assert gaps[22] >= 1 / rate - 1e-9
    assert min(gaps) >= 1 / rate - LATE_CREDIT_S - 1e-9
    assert _most_in_one_second(starts) <= 20


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


async def test_a_429_teaches_the_endpoint_its_limit_and_later_requests_are_paced() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    throttled = HttpResponse(
        status=429,
        headers={"Retry-After": "1"},
        body=b'{"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been'
        b' reached: policy user over ratelimit, limit:10, time:1 second"}',
    )

    class Inner:
        async def send(self, request: HttpRequest) -> HttpResponse:
            sent.append(loop.time())
            return throttled if len(sent) == 1 else HttpResponse(status=200, body=b"{}")

    transport = RateLimitedTransport(Inner())  # no configured limit: nothing paced at first
    request = HttpRequest(method="POST", url="http://127.0.0.1:1/v3/p/jobs", headers={}, body=b"")
    assert (await transport.send(request)).status == 429
    for _ in range(4):
        await transport.send(request)
    gaps = [b - a for a, b in itertools.pairwise(sent[1:])]
    # Paced a hair under the learnt 10/s: 1 / 9.8 = 0.102 s apart. A grant the loop woke late
    # (by at most LATE_CREDIT_S) is counted from when it was due, so the gap after it may be
    # that much shorter, never the sum: the rate holds over the run.
    interval = 1 / (10 * PACING)
    assert all(gap >= interval - LATE_CREDIT_S for gap in gaps), gaps
    assert sent[-1] - sent[1] >= len(gaps) * interval - LATE_CREDIT_S, gaps


async def test_a_configured_limit_is_paced_a_hair_under_it() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(20.0 * PACING, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == [pytest.approx(1 / 19.6)] * 2
