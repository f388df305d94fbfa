"""Faults, throttling, token expiry, AK/SK and the pause/detail routes of the emulator, on the wire.

A plain aiohttp client on loopback; the fleet clock is a fake one the tests move, so nothing
sleeps to wait for a state. The AK/SK signer here is written from the fact sheet, independently
of the emulator's verifier and of the engine's signer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import aiohttp
import pytest
from fakes import FakeClock

from engine.emulator import Emulator, EmulatorConfig
from engine.emulator.faults import FaultConfig

JSON = {"Content-Type": "application/json"}


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(projects=EmulatorConfig.generate_projects(2, 0), **overrides)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(50.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def sdk_sign(
    method: str, url: str, headers: dict[str, str], body: bytes, *, ak: str, sk: str, date: str
) -> dict[str, str]:
    """SDK-HMAC-SHA256 as /work/shared/drs-api.md describes it; returns the headers to send."""
    parts = urlsplit(url)
    out = {**headers, "X-Sdk-Date": date, "Host": parts.netloc}
    names = sorted(name.lower() for name in out if "_" not in name)
    values = {name.lower(): value.strip() for name, value in out.items()}
    uri = "/".join(quote(seg, safe="~") for seg in unquote(parts.path).split("/"))
    uri = uri if uri.endswith("/") else uri + "/"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(sorted(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs))
    canonical = "\n".join(
        [
            method,
            uri,
            query,
            "".join(f"{name}:{values[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def now_date(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y%m%dT%H%M%SZ")


class Api:
    """POST JSON to the emulator, by token or signed; answers (status, headers, body)."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.pid = emu.config.projects[0].project_id

    async def post(
        self, path: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        sent = {**JSON, "X-Auth-Token": self.emu.token, **(headers or {})}
        async with self.session.post(f"{self.emu.url}{path}", json=body, headers=sent) as resp:
            return resp.status, resp.headers, await resp.json()

    async def post_raw(self, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.session.post(f"{self.emu.url}{path}", data=data, headers=headers) as resp:
            return resp.status, await resp.json()

    async def stats(self) -> Any:
        async with self.session.get(f"{self.emu.url}/_emulator/stats") as resp:
            return await resp.json()

    async def jobs(self) -> dict[str, dict[str, Any]]:
        async with self.session.get(f"{self.emu.url}/_emulator/jobs") as resp:
            jobs = (await resp.json())["jobs"]
        return {j["id"]: j for j in jobs if j["project_id"] == self.pid}

    def status_path(self) -> str:
        return f"/v3/{self.pid}/jobs/batch-status"


def paused_job(jobs: dict[str, dict[str, Any]]) -> str:
    return next(i for i, j in jobs.items() if j["status"] == "PAUSING" and j["fate"] == "recover")


# --------------------------------------------------------------------------- faults


async def test_reset_drops_the_connection_and_applies_nothing(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(faults=FaultConfig(reset_rate=1.0)), clock=clock) as emu:
        api = Api(emu, session)
        job_id = paused_job(await api.jobs())
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post(f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": [{"job_id": job_id}]})
        stats = await api.stats()
        assert (await api.jobs())[job_id]["status"] == "PAUSING"
        assert stats["retry_requests_per_job"] == {}
        assert stats["mutating_requests"] == 0
        assert stats["faults"]["reset"] == 1
        assert stats["requests"]["POST /v3/{project_id}/jobs/batch-retry-task"] == 1


async def test_lost_response_applies_and_counts_then_drops_the_connection(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(faults=FaultConfig(lost_response_rate=1.0)), clock=clock) as emu:
        api = Api(emu, session)
        job_id = paused_job(await api.jobs())
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post(f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": [{"job_id": job_id}]})
        stats = await api.stats()
        assert (await api.jobs())[job_id]["status"] == "STARTJOBING"
        assert stats["retry_requests_per_job"] == {job_id: 1}
        assert stats["mutating_requests"] == 1
        assert stats["faults"]["lost_response"] == 1


async def test_answer_delay_applies_a_change_before_its_answer_and_only_for_changes(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(faults=FaultConfig(answer_delay_s=5.0)), clock=clock) as emu:
        api = Api(emu, session)
        job_id = paused_job(await api.jobs())
        status, _, _ = await api.post(api.status_path(), {"jobs": [job_id]})  # not delayed
        assert status == 200
        retry = api.post(f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": [{"job_id": job_id}]})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await retry  # the client gives up (or dies) before the answer
        assert (await api.jobs())[job_id]["status"] == "STARTJOBING"
        stats = await api.stats()
        assert stats["retry_requests_per_job"] == {job_id: 1}
        assert stats["faults"]["answer_delay"] == 1


@pytest.mark.parametrize("error_status", [500, 422])  # OTC's table, Huawei's pages
async def test_injected_error_is_a_service_abnormal_and_applies_nothing(
    session: aiohttp.ClientSession, clock: FakeClock, error_status: int
) -> None:
    faults = FaultConfig(error_rate=1.0, error_status=error_status)
    async with Emulator(config(faults=faults), clock=clock) as emu:
        api = Api(emu, session)
        job_id = paused_job(await api.jobs())
        status, headers, body = await api.post(
            f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": [{"job_id": job_id}]}
        )
        assert status == error_status
        assert body == {"error_code": "DRS.M00004", "error_msg": "Service abnormal"}
        assert headers["X-Request-Id"]
        assert (await api.jobs())[job_id]["status"] == "PAUSING"
        stats = await api.stats()
        assert stats["retry_requests_per_job"] == {}
        assert stats["faults"]["error"] == 1
        assert stats["responses_by_code"] == {"DRS.M00004": 1}


async def test_iam_gets_injected_errors_in_its_own_shape(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with (
        Emulator(config(faults=FaultConfig(error_rate=1.0)), clock=clock) as emu,
        session.post(f"{emu.url}/v3/auth/tokens", json={}) as resp,
    ):
        assert resp.status == 500
        assert (await resp.json())["error"]["code"] == 500


async def test_latency_and_slow_answers_are_counted(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    faults = FaultConfig(latency_s=0.001, slow_rate=1.0, slow_s=0.001)
    async with Emulator(config(faults=faults), clock=clock) as emu:
        api = Api(emu, session)
        status, _, _ = await api.post(api.status_path(), {"jobs": ["x"]})
        assert status == 200
        assert (await api.stats())["faults"] == {
            "latency": 1,
            "reset": 0,
            "error": 0,
            "slow": 1,
            "lost_response": 0,
            "answer_delay": 0,
        }


async def outcomes(session: aiohttp.ClientSession, seed: int) -> list[int | str]:
    faults = FaultConfig(error_rate=0.3, reset_rate=0.2, lost_response_rate=0.2)
    seen: list[int | str] = []
    async with Emulator(config(seed=seed, faults=faults), clock=FakeClock()) as emu:
        api = Api(emu, session)
        for _ in range(30):  # one at a time: arrival order is the draw order
            try:
                status, _, _ = await api.post(api.status_path(), {"jobs": ["x"]})
                seen.append(status)
            except aiohttp.ServerDisconnectedError:
                seen.append("disconnected")
    return seen


async def test_same_seed_gives_the_same_fault_sequence(session: aiohttp.ClientSession) -> None:
    first = await outcomes(session, 7)
    assert first == await outcomes(session, 7)
    assert {200, 500, "disconnected"} <= set(first)
    assert first != await outcomes(session, 8)


async def test_emulator_routes_never_see_faults(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    faults = FaultConfig(reset_rate=1.0, error_rate=1.0)
    async with Emulator(config(faults=faults), clock=clock) as emu:
        api = Api(emu, session)
        for _ in range(3):
            assert "faults" in await api.stats()


# --------------------------------------------------------------------------- throttling


async def test_throttling_answers_429_with_the_gateway_body_and_retry_after(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(rate_limit_per_s=3.0), clock=clock) as emu:
        api = Api(emu, session)
        job_id = paused_job(await api.jobs())
        answers = [await api.post(api.status_path(), {"jobs": ["x"]}) for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        _, headers, body = answers[3]
        assert body == {
            "error_code": "APIGW.0308",
            "error_msg": "The throttling threshold has been reached: policy user over ratelimit, "
            "limit:3, time:1 second",
        }
        assert headers["Retry-After"] == "1"
        # Another route has its own budget; a throttled retry is not applied.
        retry_path = f"/v3/{api.pid}/jobs/batch-retry-task"
        for _ in range(3):
            await api.post(retry_path, {"jobs": [{"job_id": "missing"}]})
        status, _, _ = await api.post(retry_path, {"jobs": [{"job_id": job_id}]})
        assert status == 429
        assert (await api.jobs())[job_id]["status"] == "PAUSING"
        clock.now += 1.0
        assert (await api.post(api.status_path(), {"jobs": ["x"]}))[0] == 200

        stats = await api.stats()
        assert stats["throttled"] == 2
        assert stats["responses_by_code"]["APIGW.0308"] == 2
        assert stats["retry_requests_per_job"] == {"missing": 3}
        assert stats["peak_rate_per_s"] == {
            "POST /v3/{project_id}/jobs/batch-status": 3,
            "POST /v3/{project_id}/jobs/batch-retry-task": 3,
        }
        assert stats["peak_rate_per_s_all"] == 6


async def test_without_a_rate_limit_nothing_is_throttled_but_peaks_are_measured(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(), clock=clock) as emu:
        api = Api(emu, session)
        for _ in range(5):
            assert (await api.post(api.status_path(), {"jobs": ["x"]}))[0] == 200
        clock.now += 2.0
        await api.post(api.status_path(), {"jobs": ["x"]})
        stats = await api.stats()
        assert stats["throttled"] == 0
        assert stats["peak_rate_per_s"] == {"POST /v3/{project_id}/jobs/batch-status": 5}


# --------------------------------------------------------------------------- tokens


def auth_body(emu: Emulator) -> Any:
    cfg = emu.config
    user = {"name": cfg.user, "password": cfg.password, "domain": {"name": cfg.domain}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": cfg.projects[0].project_id}},
        }
    }


async def test_iam_token_expires_after_the_ttl_on_the_fleet_clock(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(token_ttl_s=600.0), clock=clock) as emu:
        api = Api(emu, session)
        async with session.post(f"{emu.url}/v3/auth/tokens", json=auth_body(emu)) as resp:
            assert resp.status == 201
            token = resp.headers["X-Subject-Token"]
            expires = datetime.strptime(
                (await resp.json())["token"]["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ"
            ).replace(tzinfo=UTC)
        assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
        headers = {"X-Auth-Token": token}
        clock.now += 599.0
        assert (await api.post(api.status_path(), {"jobs": ["x"]}, headers=headers))[0] == 200
        clock.now += 1.0
        status, _, body = await api.post(api.status_path(), {"jobs": ["x"]}, headers=headers)
        assert status == 401
        assert body == {"error_code": "APIGW.0307", "error_msg": "The token must be updated"}
        # The pre-issued token does not expire unless asked to.
        assert (await api.post(api.status_path(), {"jobs": ["x"]}))[0] == 200


async def test_the_pre_issued_token_can_be_made_to_expire(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(token_ttl_s=60.0, expire_static_token=True), clock=clock) as emu:
        api = Api(emu, session)
        assert (await api.post(api.status_path(), {"jobs": ["x"]}))[0] == 200
        clock.now += 60.0
        status, _, body = await api.post(api.status_path(), {"jobs": ["x"]})
        assert (status, body["error_code"]) == (401, "APIGW.0307")


# --------------------------------------------------------------------------- AK/SK


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(config(), clock=clock) as running:
        yield running


def signed(emu: Emulator, path: str, body: bytes, *, date: str | None = None) -> dict[str, str]:
    pid = emu.config.projects[0].project_id
    return sdk_sign(
        "POST",
        f"{emu.url}{path}",
        {**JSON, "X-Project-Id": pid},
        body,
        ak=emu.config.ak,
        sk=emu.config.sk,
        date=date or now_date(),
    )


async def test_a_correctly_signed_request_is_accepted_in_every_project(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    body = b'{"jobs": ["missing-job"], "page_req": {"cur_page": 1, "per_page": 10}}'
    status, answer = await api.post_raw(
        api.status_path(), body, signed(emu, api.status_path(), body)
    )
    assert status == 200
    assert answer["results"][0]["error_code"] == "DRS.K02000"
    other = emu.config.projects[1].project_id
    path = f"/v3/{other}/jobs/batch-status"
    headers = sdk_sign(
        "POST", f"{emu.url}{path}", dict(JSON), body, ak=emu.config.ak, sk=emu.config.sk,
        date=now_date(),
    )  # fmt: skip
    assert (await api.post_raw(path, body, headers))[0] == 200


async def test_tampered_signed_requests_are_401_apigw_0301_and_a_stale_date_0303(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    path = api.status_path()
    body = b'{"jobs": ["missing-job"]}'
    good = signed(emu, path, body)
    tampered = [
        (body.replace(b"missing", b"mizzing"), good, "APIGW.0301"),
        (body, {**good, "Content-Type": "application/json; charset=utf-8"}, "APIGW.0301"),
        (body, signed(emu, path, body, date=now_date(timedelta(minutes=16))), "APIGW.0303"),
        (
            body,
            {**good, "Authorization": good["Authorization"].replace(emu.config.ak, "A" * 20)},
            "APIGW.0301",
        ),
        (body, {k: v for k, v in good.items() if k != "X-Sdk-Date"}, "APIGW.0301"),
    ]
    for data, headers, code in tampered:
        status, answer = await api.post_raw(path, data, headers)
        assert status == 401
        assert answer["error_code"] == code
        assert answer["error_msg"].startswith("Incorrect IAM authentication information")
    assert (await api.post_raw(path, body, good))[0] == 200


async def test_six_failed_signatures_lock_the_ak_for_five_minutes(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    api = Api(emu, session)
    path = api.status_path()
    body = b'{"jobs": ["x"]}'
    bad = signed(emu, path, body + b" ")
    for _ in range(6):
        assert (await api.post_raw(path, body, bad))[0] == 401
    status, answer = await api.post_raw(path, body, signed(emu, path, body))
    assert status == 401
    assert answer["error_code"] == "APIGW.0301"
    assert "locked" in answer["error_msg"]
    clock.now += 300.0
    assert (await api.post_raw(path, body, signed(emu, path, body)))[0] == 200


async def test_x_project_id_must_match_the_path(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    other = emu.config.projects[1].project_id
    status, _, body = await api.post(
        api.status_path(), {"jobs": ["x"]}, headers={"X-Project-Id": other}
    )
    assert status == 403
    assert body["error_code"] == "DRS.M00261"


# --------------------------------------------------------------------------- pause, detail


async def test_batch_pause_task_pauses_running_jobs_and_refuses_the_rest(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    jobs = await api.jobs()
    running = next(i for i, j in jobs.items() if j["status"] == "INCRE_TRANSFER_STARTED")
    paused = next(i for i, j in jobs.items() if j["status"] == "PAUSING" and not j["parent_id"])
    parent = next(
        i for i, j in jobs.items() if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"]
    )
    body = {
        "jobs": [
            {"job_id": running, "pause_mode": "target"},
            {"job_id": paused, "pause_mode": "all"},
            {"job_id": parent, "pause_mode": "target"},
            {"job_id": "missing-job", "pause_mode": "target"},
        ]
    }
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-pause-task", body)
    assert status == 200
    assert answer["count"] == 4
    by_id = {r["id"]: r for r in answer["results"]}
    assert by_id[running] == {"id": running, "status": "success"}
    assert by_id[paused]["error_code"] == "DRS.M00304"
    assert by_id[parent]["error_code"] == "DRS.M00307"
    assert by_id[parent]["error_msg"].startswith("Only subtasks can invoke this interface")
    assert by_id["missing-job"]["error_code"] == "DRS.K02000"

    listed = await api.post(
        f"/v3/{api.pid}/jobs",
        {"db_use_type": jobs[running]["db_use_type"], "cur_page": 1, "per_page": 100},
    )
    shown = next(j for j in listed[2]["jobs"] if j["id"] == running)
    assert shown["status"] == "PAUSING"
    assert "RETRY" in shown["job_action"]["available_actions"]
    stats = await api.stats()
    assert stats["pause_requests_per_job"] == {running: 1, paused: 1, parent: 1, "missing-job": 1}
    assert stats["mutating_requests"] == 1
    # ... and the paused job resumes through batch-retry-task.
    status, _, answer = await api.post(
        f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": [{"job_id": running}]}
    )
    assert answer["results"] == [{"id": running, "status": "success"}]


async def test_batch_pause_task_parent_in_request_mode_is_a_400(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(parent_refusal="request"), clock=clock) as emu:
        api = Api(emu, session)
        jobs = await api.jobs()
        parent = next(
            i
            for i, j in jobs.items()
            if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"]
        )
        status, _, body = await api.post(
            f"/v3/{api.pid}/jobs/batch-pause-task",
            {"jobs": [{"job_id": parent, "pause_mode": "target"}]},
        )
        assert (status, body["error_code"]) == (400, "DRS.M00307")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jobs": []}, "DRS.M00201"),
        ({"jobs": ["bare-id"]}, "DRS.M00202"),
        ({"jobs": [{"job_id": "x", "pause_mode": "some"}]}, "DRS.M00202"),
        ({"jobs": [{"job_id": "x"}]}, "DRS.M00201"),  # pause_mode is mandatory
    ],
)
async def test_batch_pause_task_rejects_malformed_bodies(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], code: str
) -> None:
    api = Api(emu, session)
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-pause-task", body)
    assert (status, answer["error_code"]) == (400, code)


async def test_batch_detail_shows_failure_reasons_and_dual_active_structure(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    api = Api(emu, session)
    jobs = await api.jobs()
    failed = next(
        i
        for i, j in jobs.items()
        if j["status"] == "FULL_TRANSFER_FAILED"
        and not j["parent_id"]
        and j["db_use_type"] != "cloudDataGuard"
    )
    parent = next(
        i for i, j in jobs.items() if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"]
    )
    ids = [failed, parent, "missing-job", *[i for i in jobs if i not in (failed, parent)][:5]]
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-detail", {"jobs": ids})
    assert status == 200
    assert len(answer["results"]) == 5  # per_page defaults to 5, as in batch-status
    assert answer["count"] == 5  # the tasks returned, not the len(ids) asked for
    first, second, third = answer["results"][:3]
    assert first["id"] == failed
    assert first["status"] == "FULL_TRANSFER_FAILED"
    assert first["name"] == jobs[failed]["name"]
    assert first["failed_reason"]
    assert first["error_code"].startswith("DRS.")
    assert first["error_message"] == f"{first['error_code']}: {first['failed_reason']}"
    # batch-detail's children are sub-jobs that failed to bind an EIP (SDK
    # FailedToBindEipChildInfo), not the job's sub-tasks: a child is asked for by its own id.
    # Every key of the SDK's QueryJobResp is sent: empty / null where there is nothing to say.
    assert second["children"] == []
    child_id = next(i for i, j in jobs.items() if j["parent_id"] == parent)
    body = {"jobs": [child_id], "page_req": {"cur_page": 1, "per_page": 1}}
    _, _, of_child = await api.post(f"/v3/{api.pid}/jobs/batch-detail", body)
    child = of_child["results"][0]
    assert child["parent_id"] == parent
    assert child["master_job_id"] == parent
    assert child["node_role"] in {"master", "slave"}
    assert second["failed_reason"] is None  # a parent's failure is its children's
    assert second["parent_id"] is None
    assert third == {
        "id": "missing-job",
        "status": "",
        "error_code": "DRS.K02000",
        "error_message": "Task information cannot be queried: job missing-job",
    }


async def test_stats_and_describe_carry_the_new_keys(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    described = emu.describe()
    assert described["ak"] == emu.config.ak
    assert len(described["ak"]) == 20
    assert len(described["sk"]) == 40
    stats = await Api(emu, session).stats()
    assert set(stats) == {
        "requests",
        "mutating_requests",
        "retry_requests_per_job",
        "pause_requests_per_job",
        "throttled",
        "faults",
        "peak_rate_per_s",
        "peak_rate_per_s_all",
        "responses_by_code",
        "accounts",
    }
