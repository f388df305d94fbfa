"""IAM password auth and static tokens against a fake transport: caching, sharing, secrets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import FakeClock

from engine.api.auth import IamPasswordAuth, StaticTokenAuth
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse
from engine.errors import AuthError, TransportError

PASSWORD = "s3cret-Pa55word"
PROJECT = "0123456789abcdef0123456789abcdef"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def wall(clock: FakeClock) -> datetime:
    """The fake clock's time as the wall clock IAM tokens are dated by (T0 at 0)."""
    return T0 + timedelta(seconds=clock.now)


class FakeIam:
    """Issues token-1, token-2, ... each valid for ``lifetime`` from the fake clock's now."""

    def __init__(self, clock: FakeClock, *, lifetime: timedelta = timedelta(hours=24)) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.requests: list[HttpRequest] = []
        self.gate: asyncio.Event | None = None
        self.failure: HttpResponse | Exception | None = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.failure, Exception):
            raise self.failure
        if self.failure is not None:
            return self.failure
        expires = (wall(self.clock) + self.lifetime).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = json.dumps({"token": {"expires_at": expires, "methods": ["password"]}})
        headers = {"x-subject-token": f"token-{len(self.requests)}", "X-Request-Id": "iam-1"}
        return HttpResponse(status=201, headers=headers, body=body.encode())


async def no_sleep(seconds: float) -> None:
    pass


def iam_auth(iam: FakeIam, clock: FakeClock) -> IamPasswordAuth:
    return IamPasswordAuth(
        transport=iam,
        iam_endpoint=IAM + "/",
        user="ops-bot",
        password=PASSWORD,
        domain="acme",
        project_id=PROJECT,
        clock=lambda: wall(clock),
        resilience=Resilience(sleep=no_sleep),  # a 500 from IAM is retried: on virtual time
    )


@pytest.fixture
def iam(clock: FakeClock) -> FakeIam:
    return FakeIam(clock)


async def test_password_request_matches_the_fact_sheet(iam: FakeIam, clock: FakeClock) -> None:
    headers = await iam_auth(iam, clock).auth_headers()
    assert headers == {"X-Auth-Token": "token-1"}
    (request,) = iam.requests
    assert (request.method, request.url) == ("POST", f"{IAM}/v3/auth/tokens")
    assert request.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(request.body)
    assert body == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "ops-bot", "password": PASSWORD, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }


async def test_token_is_cached(iam: FakeIam, clock: FakeClock) -> None:
    auth = iam_auth(iam, clock)
    first = await auth.auth_headers()
    clock.advance(23 * 3600)
    assert await auth.auth_headers() == first
    assert len(iam.requests) == 1


async def test_concurrent_callers_share_one_iam_request(iam: FakeIam, clock: FakeClock) -> None:
    auth = iam_auth(iam, clock)
    iam.gate = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(auth.auth_headers()) for _ in range(10)]
        await asyncio.sleep(0)
        iam.gate.set()
    assert {t.result()["X-Auth-Token"] for t in tasks} == {"token-1"}
    assert len(iam.requests) == 1


async def test_token_is_renewed_five_minutes_before_it_expires(
    iam: FakeIam, clock: FakeClock
) -> None:
    auth = iam_auth(iam, clock)
    await auth.auth_headers()
    clock.now = (timedelta(hours=24) - timedelta(minutes=5, seconds=1)).total_seconds()
    assert await auth.auth_headers() == {"X-Auth-Token": "token-1"}
    clock.advance(1)
    assert await auth.auth_headers() == {"X-Auth-Token": "token-2"}
    assert len(iam.requests) == 2


async def test_refresh_forces_a_new_token(iam: FakeIam, clock: FakeClock) -> None:
    auth = iam_auth(iam, clock)
    await auth.auth_headers()
    assert await auth.refresh() is True
    assert await auth.auth_headers() == {"X-Auth-Token": "token-2"}


async def test_concurrent_refreshes_of_one_rejected_token_fetch_once(
    iam: FakeIam, clock: FakeClock
) -> None:
    auth = iam_auth(iam, clock)
    await auth.auth_headers()
    iam.gate = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(auth.refresh()) for _ in range(5)]
        await asyncio.sleep(0)
        iam.gate.set()
    assert all(t.result() for t in tasks)
    assert len(iam.requests) == 2


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_rejection_raises_auth_error_naming_user_but_not_password(
    iam: FakeIam, clock: FakeClock, status: int
) -> None:
    body = {"error": {"code": "IAM.0004", "message": f"The password {PASSWORD} is wrong"}}
    iam.failure = HttpResponse(status=status, body=json.dumps(body).encode())
    with pytest.raises(AuthError) as info:
        await iam_auth(iam, clock).auth_headers()
    message = str(info.value)
    assert "'ops-bot'" in message
    assert "'acme'" in message
    assert PROJECT in message
    assert f"HTTP {status} IAM.0004" in message
    assert PASSWORD not in message


async def test_answer_without_subject_token_raises_auth_error(
    iam: FakeIam, clock: FakeClock
) -> None:
    iam.failure = HttpResponse(
        status=201, body=b'{"token": {"expires_at": "2030-01-01T00:00:00Z"}}'
    )
    with pytest.raises(AuthError, match="X-Subject-Token"):
        await iam_auth(iam, clock).auth_headers()


async def test_answer_without_expires_at_raises_auth_error(iam: FakeIam, clock: FakeClock) -> None:
    iam.failure = HttpResponse(status=201, headers={"X-Subject-Token": "t"}, body=b"{}")
    with pytest.raises(AuthError, match="expires_at"):
        await iam_auth(iam, clock).auth_headers()


async def test_transport_error_reaches_the_caller(iam: FakeIam, clock: FakeClock) -> None:
    iam.failure = TransportError("POST https://iam.example/v3/auth/tokens: timed out")
    with pytest.raises(TransportError):
        await iam_auth(iam, clock).auth_headers()


async def test_repr_reveals_no_password_or_token(iam: FakeIam, clock: FakeClock) -> None:
    auth = iam_auth(iam, clock)
    await auth.auth_headers()
    assert PASSWORD not in repr(auth)
    assert "token-1" not in repr(auth)
    assert "ops-bot" in repr(auth)
    assert "tok-abc" not in repr(StaticTokenAuth("tok-abc"))


async def test_static_token_auth_sends_token_and_cannot_refresh() -> None:
    auth = StaticTokenAuth("tok-abc")
    assert await auth.auth_headers() == {"X-Auth-Token": "tok-abc"}
    assert await auth.refresh() is False


def test_request_repr_hides_headers_and_body() -> None:
    request = HttpRequest(method="POST", url=IAM, headers={"X-Auth-Token": "t0k"}, body=b"pw")
    assert "t0k" not in repr(request)
    assert "pw" not in repr(request)
