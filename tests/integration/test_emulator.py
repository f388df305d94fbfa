"""The emulator over HTTP on loopback, spoken to with a plain aiohttp client (not the engine's)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from fakes import FakeClock

from engine.emulator import Emulator, EmulatorConfig

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(50.0)


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(projects=EmulatorConfig.generate_projects(2, 0), **overrides)


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(config(), clock=clock) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Api:
    """Thin test helper: POST JSON with the emulator's token, return (status, headers, body)."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.pid = emu.config.projects[0].project_id

    async def post(
        self,
        path: str,
        body: Any,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        sent = dict(JSON)
        if token is not None:
            sent["X-Auth-Token"] = self.emu.token if token == "default" else token
        sent.update(headers or {})
        async with self.session.post(f"{self.emu.url}{path}", json=body, headers=sent) as resp:
            return resp.status, resp.headers, await resp.json()

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.emu.url}{path}") as resp:
            assert resp.status == 200
            return await resp.json()

    async def list_jobs(self, **body: Any) -> Any:
        wanted = {"db_use_type": "sync", "cur_page": 1, "per_page": 100, **body}
        status, _, answer = await self.post(f"/v3/{self.pid}/jobs", wanted)
        assert status == 200, answer
        return answer

    async def emulator_jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = (await self.get("/_emulator/jobs"))["jobs"]
        return [j for j in jobs if j["project_id"] == self.pid]

    async def retry(self, *ids: str) -> tuple[int, Any]:
        body = {"jobs": [{"job_id": i} for i in ids]}
        status, _, answer = await self.post(f"/v3/{self.pid}/jobs/batch-retry-task", body)
        return status, answer

    async def statuses(self, *ids: str) -> dict[str, str]:
        body = {"jobs": list(ids), "page_req": {"cur_page": 1, "per_page": 100}}
        status, _, answer = await self.post(f"/v3/{self.pid}/jobs/batch-status", body)
        assert status == 200, answer
        return {r["id"]: r["status"] for r in answer["results"]}


@pytest.fixture
def api(emu: Emulator, session: aiohttp.ClientSession) -> Api:
    return Api(emu, session)


def auth_body(emu: Emulator, *, password: str | None = None, project: dict[str, str]) -> Any:
    cfg = emu.config
    user = {"name": cfg.user, "password": password or cfg.password, "domain": {"name": cfg.domain}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project},
        }
    }


# --------------------------------------------------------------------------- lifecycle, IAM


async def test_emulator_binds_loopback_and_describes_itself() -> None:
    emulator = Emulator(config())
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.url
    async with emulator as running:
        described = running.describe()
        assert described["url"].startswith("http://127.0.0.1:")
        assert not described["url"].endswith(":0")
        assert described["projects"] == [
            {"project_id": p.project_id, "region": p.region} for p in running.config.projects
        ]
        assert described["token"] == running.token
        assert {"user", "password", "domain", "ak", "sk"} <= set(described)


async def test_iam_password_auth_issues_a_project_scoped_token(api: Api, emu: Emulator) -> None:
    project = emu.config.projects[0]
    status, headers, body = await api.post(
        "/v3/auth/tokens", auth_body(emu, project={"id": project.project_id}), token=None
    )
    assert status == 201
    token = headers["X-Subject-Token"]
    assert body["token"]["project"] == {
        "id": project.project_id,
        "name": project.region,
        "domain": {"name": emu.config.domain},
    }
    assert body["token"]["methods"] == ["password"]
    expires = datetime.strptime(body["token"]["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    ahead = expires.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < ahead <= timedelta(hours=24)

    own = await api.post(
        f"/v3/{project.project_id}/jobs/batch-status", {"jobs": ["x"]}, token=token
    )
    assert own[0] == 200
    other = emu.config.projects[1].project_id
    status, _, body = await api.post(f"/v3/{other}/jobs/batch-status", {"jobs": ["x"]}, token=token)
    assert status == 403
    assert body["error_code"] == "DRS.M00102"


async def test_iam_scope_by_project_name_is_the_region(api: Api, emu: Emulator) -> None:
    project = emu.config.projects[1]
    status, _, body = await api.post(
        "/v3/auth/tokens", auth_body(emu, project={"name": project.region}), token=None
    )
    assert status == 201
    assert body["token"]["project"]["id"] == project.project_id


async def test_iam_wrong_password_is_a_401_json_body(api: Api, emu: Emulator) -> None:
    pid = emu.config.projects[0].project_id
    status, headers, body = await api.post(
        "/v3/auth/tokens", auth_body(emu, password="wrong", project={"id": pid}), token=None
    )
    assert status == 401
    assert "X-Subject-Token" not in headers
    assert headers["X-Request-Id"]
    assert body == {
        "error": {
            "code": 401,
            "message": "The username or password is wrong.",
            "title": "Unauthorized",
        }
    }


async def test_iam_unknown_project_is_refused(api: Api, emu: Emulator) -> None:
    status, _, body = await api.post(
        "/v3/auth/tokens", auth_body(emu, project={"id": "f" * 32}), token=None
    )
    assert status == 401
    assert body["error"]["code"] == 401


# --------------------------------------------------------------------------- gateway checks


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "APIGW.0301"), ("not-a-token", "APIGW.0301")],
)
async def test_missing_or_unknown_token_is_401_with_body(
    api: Api, token: str | None, code: str
) -> None:
    status, headers, body = await api.post(f"/v3/{api.pid}/jobs", {}, token=token)
    assert status == 401
    assert body["error_code"] == code
    assert body["error_msg"].startswith("Incorrect IAM authentication information")
    assert headers["X-Request-Id"]


@pytest.mark.parametrize("project_id", ["not-hex", "F" * 32, "0" * 32])
async def test_invalid_or_foreign_project_id_is_403_m00261(api: Api, project_id: str) -> None:
    status, _, body = await api.post(f"/v3/{project_id}/jobs", {"db_use_type": "sync"})
    assert status == 403
    assert body["error_code"] == "DRS.M00261"


async def test_content_type_must_be_json(api: Api, session: aiohttp.ClientSession) -> None:
    async with session.post(
        f"{api.emu.url}/v3/{api.pid}/jobs",
        data=b'{"db_use_type": "sync"}',
        headers={"X-Auth-Token": api.emu.token, "Content-Type": "text/plain"},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error_code"] == "DRS.M00200"


async def test_x_language_zh_cn_switches_error_msg_to_chinese(api: Api) -> None:
    path = f"/v3/{api.pid}/jobs"
    _, _, english = await api.post(path, {"cur_page": 1, "per_page": 10})
    _, _, chinese = await api.post(
        path, {"cur_page": 1, "per_page": 10}, headers={"X-Language": "zh-cn"}
    )
    assert english["error_code"] == chinese["error_code"] == "DRS.M00201"
    assert english["error_msg"].startswith("Parameter is empty")
    assert chinese["error_msg"].startswith("参数为空")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v3/{pid}/jobs/no-such-api"), ("GET", "/v3/{pid}/jobs"), ("GET", "/")],
)
async def test_unknown_route_or_method_is_404_apigw_0101(
    api: Api, session: aiohttp.ClientSession, method: str, path: str
) -> None:
    url = api.emu.url + path.format(pid=api.pid)
    async with session.request(method, url, json={}, headers={"X-Auth-Token": api.emu.token}) as r:
        assert r.status == 404
        assert r.headers["X-Request-Id"]
        assert await r.json() == {
            "error_code": "APIGW.0101",
            "error_msg": "The API does not exist or has not been published in the environment",
        }


async def test_every_answer_has_a_unique_request_id(api: Api) -> None:
    seen = set()
    for _ in range(5):
        _, headers, _ = await api.post(f"/v3/{api.pid}/jobs", {"db_use_type": "sync"})
        seen.add(headers["X-Request-Id"])
    assert len(seen) == 5


# --------------------------------------------------------------------------- list jobs


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"cur_page": 1, "per_page": 10}, "DRS.M00201"),
        ({"db_use_type": "sync", "cur_page": 1, "per_page": 101}, "DRS.M00202"),
        # cur_page 0 is "all" (SDK QueryJobsReq); with per_page 0 only cur_page 0 or 1 may come
        ({"db_use_type": "sync", "cur_page": 2, "per_page": 0}, "DRS.M00202"),
        ({"db_use_type": "nope", "cur_page": 1, "per_page": 10}, "DRS.M00202"),
        ({"db_use_type": "sync", "per_page": 10}, "DRS.M00201"),
    ],
)
async def test_list_rejects_bad_bodies(api: Api, body: dict[str, Any], code: str) -> None:
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs", body)
    assert status == 400
    assert answer["error_code"] == code


async def test_list_pages_are_stable_and_cover_every_top_level_job(api: Api) -> None:
    everything = await api.list_jobs(db_use_type="sync")
    ids = [j["id"] for j in everything["jobs"]]
    assert everything["total_record"] == len(ids) > 3
    paged: list[str] = []
    for page in range(1, len(ids) // 3 + 2):
        answer = await api.list_jobs(db_use_type="sync", cur_page=page, per_page=3)
        assert answer["total_record"] == len(ids)
        paged += [j["id"] for j in answer["jobs"]]
    assert paged == ids


async def test_list_shows_children_only_inside_their_parent(api: Api) -> None:
    answer = await api.list_jobs(db_use_type="cloudDataGuard")
    parent = answer["jobs"][0]
    assert len(parent["children"]) == 2
    child_ids = {c["id"] for c in parent["children"]}
    assert all("error_msg" in c for c in parent["children"])
    assert "RETRY" in parent["job_action"]["available_actions"]
    listed = {
        j["id"]
        for use in ("migration", "sync", "cloudDataGuard")
        for j in (await api.list_jobs(db_use_type=use))["jobs"]
    }
    assert not child_ids & listed
    assert len(listed) == 20


async def test_list_filters_by_status_name_ids_and_engine(api: Api) -> None:
    jobs = (await api.list_jobs(db_use_type="sync"))["jobs"]
    first = jobs[0]
    by_status = await api.list_jobs(status=first["status"])
    assert by_status["jobs"]
    assert {j["status"] for j in by_status["jobs"]} == {first["status"]}
    by_name = await api.list_jobs(name=first["name"][:-3])
    assert first["id"] in {j["id"] for j in by_name["jobs"]}
    assert all(first["name"][:-3] in j["name"] for j in by_name["jobs"])
    by_ids = await api.list_jobs(name=",".join(j["id"] for j in jobs[:2]))
    assert [j["id"] for j in by_ids["jobs"]] == [j["id"] for j in jobs[:2]]
    by_engine = await api.list_jobs(engine_type=first["engine_type"])
    assert {j["engine_type"] for j in by_engine["jobs"]} == {first["engine_type"]}


# --------------------------------------------------------------------------- batch-status


async def test_batch_status_per_page_defaults_to_5(api: Api) -> None:
    ids = [j["id"] for j in (await api.list_jobs())["jobs"]][:8]
    assert len(ids) == 8
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-status", {"jobs": ids})
    assert status == 200
    assert answer["count"] == 5  # the tasks returned, not the 8 asked for (OTC drs_api_0150)
    assert [r["id"] for r in answer["results"]] == ids[:5]
    assert len(await api.statuses(*ids)) == 8


async def test_batch_status_unknown_id_and_child_id(api: Api) -> None:
    parent = (await api.list_jobs(db_use_type="cloudDataGuard"))["jobs"][0]
    child = parent["children"][0]
    body = {"jobs": [child["id"], "missing-job"], "page_req": {"cur_page": 1, "per_page": 10}}
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-status", body)
    assert status == 200
    assert answer["results"][0] == {"id": child["id"], "status": child["status"]}
    unknown = answer["results"][1]
    assert unknown["id"] == "missing-job"
    assert unknown["status"] == ""
    assert unknown["error_code"] == "DRS.K02000"
    assert unknown["error_message"]
    assert "error_msg" not in unknown


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jobs": []}, "DRS.M00201"),
        ({}, "DRS.M00201"),
        ({"jobs": ["a"], "page_req": {"cur_page": 1, "per_page": 101}}, "DRS.M00202"),
        ({"jobs": "a"}, "DRS.M00202"),
    ],
)
async def test_batch_status_rejects_bad_bodies(api: Api, body: dict[str, Any], code: str) -> None:
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-status", body)
    assert status == 400
    assert answer["error_code"] == code


# --------------------------------------------------------------------------- batch-retry-task


async def test_retry_per_job_results_and_transition_driven_by_the_clock(
    api: Api, clock: FakeClock
) -> None:
    jobs = await api.emulator_jobs()
    parent = next(j for j in jobs if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"])
    recover = next(j for j in jobs if j["fate"] == "recover" and j["status"] == "PAUSING")
    running = next(j for j in jobs if j["status"] == "INCRE_TRANSFER_STARTED" and not j["fate"])

    status, answer = await api.retry(parent["id"], recover["id"], running["id"], "missing-job")

    assert status == 200
    assert answer["count"] == 4
    by_id = {r["id"]: r for r in answer["results"]}
    assert by_id[recover["id"]] == {"id": recover["id"], "status": "success"}
    assert by_id[parent["id"]]["status"] == "failed"
    assert by_id[parent["id"]]["error_code"] == "DRS.M00307"
    assert by_id[parent["id"]]["error_msg"].startswith("Only subtasks can invoke this interface")
    assert by_id[running["id"]]["error_code"] == "DRS.M00304"
    assert by_id["missing-job"]["error_code"] == "DRS.K02000"

    assert await api.statuses(recover["id"]) == {recover["id"]: "STARTJOBING"}
    _, again = await api.retry(recover["id"])
    assert again["results"][0]["error_code"] == "DRS.M00304"  # still starting
    clock.now += 4.0
    assert await api.statuses(recover["id"]) == {recover["id"]: "INCRE_TRANSFER_STARTED"}
    after = {j["id"]: j for j in await api.emulator_jobs()}
    assert after[recover["id"]]["retries_accepted"] == 1
    assert after[parent["id"]]["retries_accepted"] == 0


async def test_batch_detail_update_time_is_when_the_job_last_changed(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(fail_again_rate=1.0), clock=clock) as emu:
        await _update_time_follows_a_retry_that_fails_again(Api(emu, session), clock)


async def _update_time_follows_a_retry_that_fails_again(api: Api, clock: FakeClock) -> None:
    jobs = await api.emulator_jobs()
    job = next(
        j
        for j in jobs
        if j["fate"] == "fail_again" and j["status"].endswith("_FAILED") and not j["parent_id"]
    )
    body = {"jobs": [job["id"]], "page_req": {"cur_page": 1, "per_page": 10}}
    route = f"/v3/{api.pid}/jobs/batch-detail"

    status, headers, before = await api.post(route, body)
    assert status == 200
    server_now = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    assert abs(server_now - time.time()) < 5  # the Date header is the emulator's wall clock
    detail = before["results"][0]
    assert int(detail["update_time"]) / 1000 < time.time() - 600  # failed before it started

    assert (await api.retry(job["id"]))[1]["results"][0]["status"] == "success"
    clock.now += 10.0  # it has failed again by now
    assert (await api.statuses(job["id"]))[job["id"]] == job["status"]
    _, _, after = await api.post(route, body)
    detail = after["results"][0]
    changed, started = int(detail["update_time"]) / 1000, int(detail["actual_start_time"]) / 1000
    # The fleet's clock moved 10 s since the retry (the wall clock hardly): times are wall-clock
    # readings of fleet moments, so the retry reads as 10 s ago.
    assert abs(started - (time.time() - 10.0)) < 1.5  # the retry started it
    assert started < changed <= started + 10.0 + 0.5  # then it failed again


async def test_child_of_a_dual_active_parent_can_be_retried(api: Api, clock: FakeClock) -> None:
    jobs = await api.emulator_jobs()
    child = next(j for j in jobs if j["parent_id"] and j["fate"] == "recover")
    status, answer = await api.retry(child["id"])
    assert status == 200
    assert answer["results"] == [{"id": child["id"], "status": "success"}]
    clock.now += 4.0
    # A DR child runs through the ordinary statuses (CHILD_TRANSFER_* are re-edit statuses).
    assert await api.statuses(child["id"]) == {child["id"]: "INCRE_TRANSFER_STARTED"}


async def test_parent_refusal_request_mode_rejects_the_whole_request(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with Emulator(config(parent_refusal="request"), clock=clock) as emu:
        api = Api(emu, session)
        jobs = await api.emulator_jobs()
        parent = next(
            j for j in jobs if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"]
        )
        child = next(j for j in jobs if j["parent_id"] == parent["id"] and j["fate"])

        status, answer = await api.retry(child["id"], parent["id"])

        assert status == 400
        assert answer["error_code"] == "DRS.M00307"
        after = {j["id"]: j for j in await api.emulator_jobs()}
        assert after[child["id"]]["status"] == child["status"]
        assert after[child["id"]]["retries_accepted"] == 0
        status, answer = await api.retry(child["id"])
        assert status == 200
        assert answer["results"][0]["status"] == "success"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jobs": []}, "DRS.M00201"),
        ({}, "DRS.M00201"),
        ({"jobs": ["bare-id"]}, "DRS.M00202"),
        ({"jobs": [{"job_id": 5}]}, "DRS.M00202"),
        ({"jobs": [{"job_id": "x", "is_sync_re_edit": "yes"}]}, "DRS.M00202"),
    ],
)
async def test_retry_rejects_empty_or_malformed_bodies(
    api: Api, body: dict[str, Any], code: str
) -> None:
    status, _, answer = await api.post(f"/v3/{api.pid}/jobs/batch-retry-task", body)
    assert status == 400
    assert answer["error_code"] == code


# --------------------------------------------------------------------------- stats


async def test_stats_count_requests_by_route_including_rejected_ones(api: Api) -> None:
    jobs = await api.emulator_jobs()
    parent = next(j for j in jobs if j["db_use_type"] == "cloudDataGuard" and not j["parent_id"])
    paused = next(j for j in jobs if j["status"] == "PAUSING")
    await api.list_jobs()
    await api.post(f"/v3/{api.pid}/jobs", {"db_use_type": "sync"}, token=None)  # 401
    await api.statuses(paused["id"])
    await api.retry(parent["id"], paused["id"])
    await api.retry(paused["id"])
    await api.post(f"/v3/{api.pid}/jobs/batch-retry-task", {"jobs": []})  # 400

    stats = await api.get("/_emulator/stats")

    assert stats["requests"]["POST /v3/{project_id}/jobs"] == 2
    assert stats["requests"]["POST /v3/{project_id}/jobs/batch-status"] == 1
    assert stats["requests"]["POST /v3/{project_id}/jobs/batch-retry-task"] == 3
    assert stats["requests"]["GET /_emulator/jobs"] == 1
    assert stats["mutating_requests"] == 3
    assert stats["retry_requests_per_job"] == {parent["id"]: 1, paused["id"]: 2}
    assert stats["throttled"] == 0
    assert stats["responses_by_code"] == {
        "APIGW.0301": 1,
        "DRS.M00307": 1,
        "DRS.M00304": 1,
        "DRS.M00201": 1,
    }


async def test_stats_count_iam_requests(api: Api, emu: Emulator) -> None:
    pid = emu.config.projects[0].project_id
    await api.post("/v3/auth/tokens", auth_body(emu, project={"id": pid}), token=None)
    await api.post("/v3/auth/tokens", auth_body(emu, password="x", project={"id": pid}), token=None)
    stats = await api.get("/_emulator/stats")
    assert stats["requests"]["POST /v3/auth/tokens"] == 2
