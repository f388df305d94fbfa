"""batch-progress, the busy answers and the service's own retries, over HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from fakes import FakeClock

from engine.emulator import Emulator, EmulatorConfig, FaultConfig
from engine.emulator.seeding import FAILED_AGO_S, SELF_RETRY_AFTER_S

JSON = {"Content-Type": "application/json"}
PROGRESS_KEYS = {
    "job_id", "progress", "incre_trans_delay", "incre_trans_delay_millis", "task_mode",
    "transfer_status", "process_time", "remaining_time", "progress_map", "apply_rows_rate",
    "apply_bytes_rate",
}  # fmt: skip


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(projects=EmulatorConfig.generate_projects(2, 0), **overrides)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(50.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Api:
    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu, self.session = emu, session
        self.pid = emu.config.projects[0].project_id

    async def post(self, route: str, body: Any, *, token: bool = True) -> tuple[int, Any]:
        headers = {**JSON, "X-Auth-Token": self.emu.token} if token else dict(JSON)
        url = f"{self.emu.url}/v3/{self.pid}/jobs{route}"
        async with self.session.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def progress(self, *ids: str) -> dict[str, dict[str, Any]]:
        status, answer = await self.post("/batch-progress", {"jobs": list(ids)})
        assert status == 200, answer
        assert answer["count"] == len(answer["results"]) == len(ids)
        return {r["job_id"]: r for r in answer["results"]}

    async def jobs(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.emu.url}/_emulator/jobs") as resp:
            jobs: list[dict[str, Any]] = (await resp.json())["jobs"]
        return [j for j in jobs if j["project_id"] == self.pid]

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.emu.url}/_emulator/stats") as resp:
            stats: dict[str, Any] = await resp.json()
            return stats


@pytest.fixture
async def api(clock: FakeClock, session: aiohttp.ClientSession) -> AsyncIterator[Api]:
    async with Emulator(config(), clock=clock) as emu:
        yield Api(emu, session)


def first(jobs: list[dict[str, Any]], **wanted: Any) -> dict[str, Any]:
    return next(j for j in jobs if all(j[k] == v for k, v in wanted.items()))


# --------------------------------------------------------------------------- batch-progress


async def test_progress_answers_every_field_with_numbers_as_text(api: Api) -> None:
    jobs = await api.jobs()
    running = first(jobs, status="INCRE_TRANSFER_STARTED", fate=None, stays_behind=False)
    result = (await api.progress(running["id"]))[running["id"]]
    assert set(result) == PROGRESS_KEYS  # no error fields on a healthy job
    assert result["transfer_status"] == "INCRE_TRANSFER_STARTED"
    assert result["progress"] == "100"
    assert result["incre_trans_delay"] == str(int(running["delay_s"]))
    assert int(result["incre_trans_delay_millis"]) == int(running["delay_s"] * 1000)
    assert 1 <= int(result["incre_trans_delay"]) <= 8
    assert isinstance(result["apply_rows_rate"], int)  # the SDK types the two rates int
    assert result["apply_rows_rate"] > 0
    assert result["process_time"].isdigit()


async def test_progress_delay_per_phase(api: Api) -> None:
    jobs = await api.jobs()
    full = first(jobs, status="FULL_TRANSFER_STARTED")
    failed = first(jobs, status="INCRE_TRANSFER_FAILED", parent_id=None, service_retry=False)
    never = first(jobs, status="START_JOB_FAILED")
    paused = first(jobs, status="PAUSING", parent_id=None)
    by_id = await api.progress(full["id"], failed["id"], never["id"], paused["id"])
    assert by_id[full["id"]]["incre_trans_delay"] == "0"
    assert by_id[full["id"]]["apply_rows_rate"] == -1
    assert 0 < int(by_id[full["id"]]["progress"]) < 100
    assert by_id[failed["id"]]["incre_trans_delay"] == "120"  # the backlog at the start
    assert by_id[failed["id"]]["error_code"].startswith("DRS.")
    assert by_id[failed["id"]]["apply_rows_rate"] == 0
    assert by_id[never["id"]]["incre_trans_delay"] == ""
    assert by_id[never["id"]]["progress"] == "0"
    assert by_id[paused["id"]]["incre_trans_delay"] == "120"


async def test_progress_of_a_paused_job_rises_with_the_clock(api: Api, clock: FakeClock) -> None:
    paused = first(await api.jobs(), status="PAUSING", parent_id=None)
    before = int((await api.progress(paused["id"]))[paused["id"]]["incre_trans_delay"])
    clock.advance(30.0)
    after = int((await api.progress(paused["id"]))[paused["id"]]["incre_trans_delay"])
    assert after == before + 30


async def test_progress_answers_an_unknown_id_in_its_entry(api: Api) -> None:
    known = (await api.jobs())[0]["id"]
    by_id = await api.progress(known, "missing-job")
    assert by_id["missing-job"]["error_code"] == "DRS.K02000"
    assert by_id["missing-job"]["error_msg"]
    assert "transfer_status" not in by_id["missing-job"]
    assert by_id[known]["job_id"] == known


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jobs": []}, "DRS.M00201"),
        ({}, "DRS.M00201"),
        ({"jobs": "a"}, "DRS.M00202"),
        ({"jobs": [f"job-{i}" for i in range(101)]}, "DRS.M00202"),
        ({"jobs": ["a", "b", "a"]}, "DRS.M00301"),
    ],
)
async def test_progress_rejects_bad_bodies_like_batch_status(
    api: Api, body: dict[str, Any], code: str
) -> None:
    status, answer = await api.post("/batch-progress", body)
    assert (status, answer["error_code"]) == (400, code)


async def test_duplicate_ids_are_refused_by_every_batch_endpoint(api: Api) -> None:
    job = (await api.jobs())[0]["id"]
    for route, body in (
        ("/batch-status", {"jobs": [job, job]}),
        ("/batch-detail", {"jobs": [job, job]}),
        ("/batch-retry-task", {"jobs": [{"job_id": job}, {"job_id": job}]}),
        ("/batch-pause-task", {"jobs": [{"job_id": job, "pause_mode": "all"}] * 2}),
    ):
        status, answer = await api.post(route, body)
        assert (status, answer["error_code"]) == (400, "DRS.M00301"), route


async def test_progress_goes_through_the_gateway(clock: FakeClock, session: Any) -> None:
    async with Emulator(config(rate_limit_per_s=2.0), clock=clock) as emu:
        api = Api(emu, session)
        status, answer = await api.post("/batch-progress", {"jobs": ["x"]}, token=False)
        assert (status, answer["error_code"]) == (401, "APIGW.0301")
        statuses = [(await api.post("/batch-progress", {"jobs": ["x"]}))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        stats = await api.stats()
        assert stats["requests"]["POST /v3/{project_id}/jobs/batch-progress"] == 4


async def test_a_lag_spike_shows_in_progress(clock: FakeClock, session: Any) -> None:
    faults = FaultConfig(lag_spike_rate=1.0, lag_spike_s=600.0)
    async with Emulator(config(faults=faults), clock=clock) as emu:
        api = Api(emu, session)
        running = first(await api.jobs(), status="INCRE_TRANSFER_STARTED", fate=None)
        delay = int((await api.progress(running["id"]))[running["id"]]["incre_trans_delay"])
        assert 600 <= delay <= 608


# --------------------------------------------------------------------------- busy answers


@pytest.mark.parametrize(
    ("faults", "http", "code"),
    [
        (FaultConfig(too_frequent_rate=1.0), 400, "DRS.M01503"),
        (FaultConfig(busy_rate=1.0), 202, "DRS.M01504"),
    ],
)
async def test_busy_answers_refuse_retry_and_pause_and_change_nothing(
    clock: FakeClock, session: Any, faults: FaultConfig, http: int, code: str
) -> None:
    async with Emulator(config(faults=faults), clock=clock) as emu:
        api = Api(emu, session)
        jobs = await api.jobs()
        paused = first(jobs, status="PAUSING", parent_id=None)
        running = first(jobs, status="INCRE_TRANSFER_STARTED", fate=None)
        status, answer = await api.post("/batch-retry-task", {"jobs": [{"job_id": paused["id"]}]})
        assert (status, answer["error_code"]) == (http, code)
        assert answer["error_msg"]
        body = {"jobs": [{"job_id": running["id"], "pause_mode": "target"}]}
        status, answer = await api.post("/batch-pause-task", body)
        assert (status, answer["error_code"]) == (http, code)
        after = {j["id"]: j for j in await api.jobs()}
        assert after[paused["id"]]["status"] == "PAUSING"
        assert after[paused["id"]]["retries_accepted"] == 0
        assert after[running["id"]]["status"] == "INCRE_TRANSFER_STARTED"
        stats = await api.stats()
        assert stats["retry_requests_per_job"] == {}  # refused, so not counted as reaching it
        assert stats["responses_by_code"][code] == 2
        # A bad body is still a 400 for the body, not a busy answer.
        status, answer = await api.post("/batch-retry-task", {"jobs": []})
        assert (status, answer["error_code"]) == (400, "DRS.M00201")


async def test_busy_answers_are_drawn_from_the_seed(clock: FakeClock, session: Any) -> None:
    async def codes(seed: int) -> list[int]:
        faults = FaultConfig(busy_rate=0.5)
        async with Emulator(config(seed=seed, faults=faults), clock=clock) as emu:
            api = Api(emu, session)
            body = {"jobs": [{"job_id": "missing-job"}]}
            return [(await api.post("/batch-retry-task", body))[0] for _ in range(12)]

    assert await codes(1) == await codes(1)
    assert set(await codes(1)) == {200, 202}


# --------------------------------------------------------------------------- service retries


async def test_a_service_retry_shows_in_status_list_and_detail_without_our_retry(
    clock: FakeClock, session: Any
) -> None:
    third = EmulatorConfig.generate_projects(3, 0)[2:]  # the default fleet's project with one
    async with Emulator(EmulatorConfig(projects=third), clock=clock) as emu:
        api = Api(emu, session)
        job = first(await api.jobs(), service_retry=True)
        _, detail = await api.post("/batch-detail", {"jobs": [job["id"]]})
        failed_at = int(detail["results"][0]["update_time"])
        clock.advance(SELF_RETRY_AFTER_S - FAILED_AGO_S[1] - 0.1)  # before it can begin
        seen = []
        for _ in range(60):  # 0.1 s steps until the service's retry shows (bounded)
            _, answer = await api.post("/batch-status", {"jobs": [job["id"]]})
            seen.append(answer["results"][0]["status"])
            if seen[-1] != job["status"]:
                break
            clock.advance(0.1)
        assert seen[0] == job["status"]
        assert seen[-1] == "STARTJOBING"
        listing = {"db_use_type": job["db_use_type"], "cur_page": 1, "per_page": 100}
        _, listed = await api.post("", listing)
        wire = next(j for j in listed["jobs"] if j["id"] == job["id"])
        assert wire["job_action"]["current_action"] == "RETRY"
        _, answer = await api.post("/batch-retry-task", {"jobs": [{"job_id": job["id"]}]})
        assert answer["results"][0]["error_code"] == "DRS.M00304"
        clock.advance(5.0)
        _, answer = await api.post("/batch-status", {"jobs": [job["id"]]})
        assert answer["results"][0]["status"] == "INCRE_TRANSFER_STARTED"
        _, detail = await api.post("/batch-detail", {"jobs": [job["id"]]})
        assert int(detail["results"][0]["update_time"]) > failed_at
        after = first(await api.jobs(), id=job["id"])
        assert after["retries_accepted"] == 0  # nobody's retry but the service's
