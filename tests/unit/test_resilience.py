"""The retry loop through DrsClient and IAM auth, on virtual time: what is retried, how long."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.api.auth import AkSkAuth, IamPasswordAuth, StaticTokenAuth
from engine.api.client import DrsClient
from engine.api.resilience import MAX_RETRY_AFTER_S, Resilience, ResilienceStats, RetryPolicy
from engine.api.transport import HttpRequest, HttpResponse
from engine.api.types import BatchOutcome, RetryItem
from engine.errors import AuthError, DrsApiError, TransportError

PROJECT = "0123456789abcdef0123456789abcdef"
BASE = "https://drs.cn-north-4.myhuaweicloud.com"
TOKEN = "tok-SECRET-123"

Answer = HttpResponse | Exception | Callable[[HttpRequest], HttpResponse]


def reply(
    status: int, body: Any, *, request_id: str = "req-1", headers: dict[str, str] | None = None
) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(
        status=status, headers={"X-Request-Id": request_id, **(headers or {})}, body=raw
    )


def error(status: int, code: str, *, request_id: str = "req-1", **headers: str) -> HttpResponse:
    body = {"error_code": code, "error_msg": f"{code} happened"}
    return reply(status, body, request_id=request_id, headers=headers)


def statuses(*ids: str) -> HttpResponse:
    results = [{"id": i, "status": "INCRE_TRANSFER_STARTED"} for i in ids]
    return reply(200, {"results": results, "count": len(ids)})


def action_ok(*ids: str) -> HttpResponse:
    return reply(200, {"results": [{"id": i, "status": "success"} for i in ids], "count": len(ids)})


class FakeTransport:
    """Records every request; answers from a script (responses, exceptions or functions)."""

    def __init__(self, *answers: Answer) -> None:
        self.script = list(answers)
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, HttpResponse) else answer(request)


class VirtualSleep:
    """Records waits instead of sleeping; the virtual clock is the sum of them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    @property
    def now(self) -> float:
        return sum(self.waits)


def at_ceiling(low: float, high: float) -> float:
    """A 'random' source that always picks the top of the jitter range."""
    return high


def resilience(sleep: VirtualSleep, **kw: Any) -> Resilience:
    return Resilience(sleep=sleep, uniform=kw.pop("uniform", at_ceiling), **kw)


def drs(transport: FakeTransport, sleep: VirtualSleep, **kw: Any) -> DrsClient:
    return DrsClient(
        transport=transport,
        endpoint=BASE,
        project_id=PROJECT,
        auth=kw.pop("auth", StaticTokenAuth(TOKEN)),
        resilience=kw.pop("resilience", None) or resilience(sleep),
    )


@pytest.fixture
def sleep() -> VirtualSleep:
    return VirtualSleep()


# --- throttling: every request, reads and writes ------------------------------------------------


async def test_429_waits_retry_after_then_succeeds(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(429, "APIGW.0308", **{"Retry-After": "3"}), statuses("a"))
    client = drs(transport, sleep)
    results = await client.batch_status(["a"])
    assert [r.id for r in results] == ["a"]
    assert sleep.waits == [3.0]
    assert len(transport.requests) == 2
    assert (client.resilience.stats.throttled, client.resilience.stats.retries) == (1, 1)


async def test_jitter_wins_over_a_shorter_retry_after(sleep: VirtualSleep) -> None:
    transport = FakeTransport(
        error(429, "APIGW.0308", **{"Retry-After": "0"}),
        error(429, "APIGW.0308", **{"Retry-After": "0.1"}),
        statuses("a"),
    )
    await drs(transport, sleep).batch_status(["a"])
    assert sleep.waits == [0.5, 1.0]


@pytest.mark.parametrize(("raw", "expected"), [("3600", MAX_RETRY_AFTER_S), ("soon", 0.5)])
async def test_retry_after_is_clipped_or_ignored_when_unreadable(
    sleep: VirtualSleep, raw: str, expected: float
) -> None:
    transport = FakeTransport(error(429, "APIGW.0308", **{"Retry-After": raw}), statuses("a"))
    await drs(transport, sleep).batch_status(["a"])
    assert sleep.waits == [expected]


async def test_429_on_batch_retry_is_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(429, "APIGW.0308"), action_ok("a"))
    results = await drs(transport, sleep).batch_retry([RetryItem(job_id="a")])
    assert [r.status for r in results] == [BatchOutcome.SUCCESS]
    assert len(transport.requests) == 2
    assert transport.requests[0].body == transport.requests[1].body


async def test_too_frequent_on_batch_retry_is_retried_after_backoff(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(400, "DRS.M01503"), error(400, "DRS.M01503"), action_ok("a"))
    client = drs(transport, sleep)
    results = await client.batch_retry([RetryItem(job_id="a")])
    assert [r.id for r in results] == ["a"]
    assert sleep.waits == [0.5, 1.0]
    assert client.resilience.stats.throttled == 2


async def test_operation_running_202_on_batch_pause_is_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(202, "DRS.M01504"), action_ok("a"))
    client = drs(transport, sleep)
    await client.batch_pause(["a"], pause_mode="target")
    assert len(transport.requests) == 2
    assert (client.resilience.stats.busy, client.resilience.stats.throttled) == (1, 0)


# --- unknown outcome: reads retry, writes do not ------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 422])  # 422: M00004 as Huawei has it
async def test_5xx_on_batch_status_is_retried(sleep: VirtualSleep, status: int) -> None:
    transport = FakeTransport(error(status, "DRS.M00004"), statuses("a"))
    client = drs(transport, sleep)
    assert [r.id for r in await client.batch_status(["a"])] == ["a"]
    assert len(transport.requests) == 2
    assert client.resilience.stats.server_errors == 1


async def test_503_on_batch_retry_is_not_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(503, "DRS.M00004", request_id="rid-9"), action_ok("a"))
    with pytest.raises(DrsApiError) as info:
        await drs(transport, sleep).batch_retry([RetryItem(job_id="a")])
    assert (info.value.http_status, info.value.request_id) == (503, "rid-9")
    assert len(transport.requests) == 1
    assert sleep.waits == []


async def test_500_on_batch_pause_is_not_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(error(500, "DRS.M00004"), action_ok("a"))
    with pytest.raises(DrsApiError):
        await drs(transport, sleep).batch_pause(["a"], pause_mode="target")
    assert len(transport.requests) == 1


async def test_reset_on_batch_retry_is_not_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(TransportError("POST x: connection reset"), action_ok("a"))
    client = drs(transport, sleep)
    with pytest.raises(TransportError):
        await client.batch_retry([RetryItem(job_id="a")])
    assert len(transport.requests) == 1
    assert client.resilience.stats.as_dict() | {"waited_s": 0} == {
        "sends": 1,
        "retries": 0,
        "throttled": 0,
        "busy": 0,
        "server_errors": 0,
        "transport_errors": 1,
        "gave_up": 0,
        "waited_s": 0,
    }


async def test_timeout_on_list_jobs_is_retried(sleep: VirtualSleep) -> None:
    page = reply(200, {"total_record": 1, "jobs": [{"id": "j", "name": "n", "status": "PAUSING"}]})
    transport = FakeTransport(TransportError("POST x: timed out"), page)
    listing = await drs(transport, sleep).list_jobs(db_use_type="migration")
    assert [j.id for j in listing.jobs] == ["j"]
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    ("status", "code"), [(400, "DRS.M00202"), (403, "DRS.M00102"), (404, "APIGW.0101")]
)
async def test_a_final_error_is_not_retried(sleep: VirtualSleep, status: int, code: str) -> None:
    transport = FakeTransport(error(status, code))
    with pytest.raises(DrsApiError):
        await drs(transport, sleep).batch_status(["a"])
    assert len(transport.requests) == 1


# --- giving up ----------------------------------------------------------------------------------


async def test_gives_up_after_max_attempts_with_the_last_error(sleep: VirtualSleep) -> None:
    answers = [error(503, "DRS.M00004", request_id=f"req-{n}") for n in range(1, 6)]
    transport = FakeTransport(*answers)
    client = drs(transport, sleep)
    with pytest.raises(DrsApiError) as info:
        await client.batch_status(["a"])
    assert info.value.request_id == "req-5"
    assert len(transport.requests) == 5
    assert sleep.waits == [0.5, 1.0, 2.0, 4.0]
    stats = client.resilience.stats
    assert (stats.sends, stats.retries, stats.gave_up, stats.waited_s) == (5, 4, 1, 7.5)


async def test_gives_up_on_a_read_raising_the_last_transport_error(sleep: VirtualSleep) -> None:
    transport = FakeTransport(*(TransportError(f"reset {n}") for n in range(1, 4)))
    client = drs(transport, sleep, resilience=resilience(sleep, policy=RetryPolicy(max_attempts=3)))
    with pytest.raises(TransportError, match="reset 3"):
        await client.batch_status(["a"])
    assert len(transport.requests) == 3
    assert client.resilience.stats.gave_up == 1


async def test_throttled_write_gives_up_with_the_last_throttled_error(sleep: VirtualSleep) -> None:
    transport = FakeTransport(*(error(429, "APIGW.0308") for _ in range(5)))
    with pytest.raises(DrsApiError) as info:
        await drs(transport, sleep).batch_retry([RetryItem(job_id="a")])
    assert info.value.http_status == 429
    assert len(transport.requests) == 5


# --- backoff ------------------------------------------------------------------------------------


def test_full_jitter_asks_for_uniform_between_zero_and_the_capped_ceiling() -> None:
    asked: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        asked.append((low, high))
        return high / 2

    backoff = Resilience(uniform=record)
    waits = [backoff.backoff(retry) for retry in range(8)]
    assert asked == [(0.0, c) for c in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0)]
    assert waits == [c / 2 for c in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0)]


def test_full_jitter_with_a_real_random_source_stays_in_bounds() -> None:
    rng = random.Random(1234)
    backoff = Resilience(uniform=rng.uniform)
    for retry in range(10):
        ceiling = min(20.0, 0.5 * 2**retry)
        samples = [backoff.backoff(retry) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # full jitter spreads over the whole range
        assert min(samples) < ceiling * 0.2


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_s": -1.0}, {"cap_s": -0.5}], ids=str
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)


# --- counters, logs, interplay with auth --------------------------------------------------------


async def test_one_stats_object_counts_across_clients(sleep: VirtualSleep) -> None:
    shared = ResilienceStats()
    first = FakeTransport(error(429, "APIGW.0308"), statuses("a"))
    second = FakeTransport(error(400, "DRS.M01503"), statuses("b"))
    for transport in (first, second):
        await drs(transport, sleep, resilience=resilience(sleep, stats=shared)).batch_status(["x"])
    assert (shared.sends, shared.retries, shared.throttled) == (4, 2, 2)


async def test_each_retry_is_logged_at_info_without_secrets(
    sleep: VirtualSleep, caplog: pytest.LogCaptureFixture
) -> None:
    transport = FakeTransport(error(503, "DRS.M00004", request_id="rid-7"), statuses("a"))
    with caplog.at_level(logging.INFO, logger="engine.api.resilience"):
        await drs(transport, sleep).batch_status(["a"])
    (record,) = [r for r in caplog.records if r.name == "engine.api.resilience"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "batch-status: HTTP 503 DRS.M00004, request id rid-7; retry 1 of 4 in 0.50 s"
    )
    assert TOKEN not in caplog.text


async def test_401_refresh_and_replay_still_happens_once(sleep: VirtualSleep) -> None:
    class Renewable:
        def __init__(self) -> None:
            self.refreshes = 0

        async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
            return {"X-Auth-Token": f"token-{self.refreshes + 1}"}

        async def refresh(self) -> bool:
            self.refreshes += 1
            return True

    expired = error(401, "APIGW.0307")
    transport = FakeTransport(expired, error(429, "APIGW.0308"), action_ok("a"))
    auth = Renewable()
    await drs(transport, sleep, auth=auth).batch_retry([RetryItem(job_id="a")])
    assert auth.refreshes == 1
    assert [r.headers["X-Auth-Token"] for r in transport.requests] == [
        "token-1",
        "token-2",
        "token-2",
    ]


async def test_ak_sk_requests_are_signed_afresh_for_every_retry(sleep: VirtualSleep) -> None:
    start = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    auth = AkSkAuth(
        "AKEXAMPLE0001", "sk-EXAMPLE", PROJECT, clock=lambda: start + timedelta(seconds=sleep.now)
    )
    transport = FakeTransport(error(429, "APIGW.0308", **{"Retry-After": "2"}), statuses("a"))
    await drs(transport, sleep, auth=auth).batch_status(["a"])
    dates = [r.headers["X-Sdk-Date"] for r in transport.requests]
    assert dates == ["20250102T030405Z", "20250102T030407Z"]
    first, second = (r.headers["Authorization"] for r in transport.requests)
    assert first != second


async def test_iam_token_request_is_retried_on_503(sleep: VirtualSleep) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=24)).isoformat()
    token_answer = HttpResponse(
        status=201,
        headers={"X-Subject-Token": "iam-token"},
        body=json.dumps({"token": {"expires_at": expires}}).encode(),
    )
    transport = FakeTransport(
        error(503, "HTTP_503"), TransportError("POST iam: reset"), token_answer
    )
    auth = IamPasswordAuth(
        transport=transport,
        iam_endpoint="https://iam.example",
        user="u",
        password="p4ss-SECRET",
        domain="d",
        project_id=PROJECT,
        resilience=resilience(sleep),
    )
    assert await auth.auth_headers() == {"X-Auth-Token": "iam-token"}
    assert len(transport.requests) == 3


async def test_iam_password_rejection_is_not_retried(sleep: VirtualSleep) -> None:
    transport = FakeTransport(reply(401, {"error": {"code": 401, "message": "wrong"}}))
    auth = IamPasswordAuth(
        transport=transport,
        iam_endpoint="https://iam.example",
        user="u",
        password="p4ss-SECRET",
        domain="d",
        project_id=PROJECT,
        resilience=resilience(sleep),
    )
    with pytest.raises(AuthError):
        await auth.auth_headers()
    assert len(transport.requests) == 1
