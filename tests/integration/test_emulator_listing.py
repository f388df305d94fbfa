"""The list's filters (tags, enterprise project, instances) and "all" pages, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from fakes import FakeClock

from engine.emulator import Emulator, EmulatorConfig, Fleet

JSON = {"Content-Type": "application/json"}
USES = ("migration", "sync", "cloudDataGuard")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(projects=EmulatorConfig.generate_projects(1, 0), jobs_per_project=30)
    async with Emulator(config, clock=FakeClock(10.0)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Lister:
    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu, self.session = emu, session
        self.pid = emu.config.projects[0].project_id

    async def post(self, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {**JSON, "X-Auth-Token": self.emu.token}
        url = f"{self.emu.url}/v3/{self.pid}/jobs"
        async with self.session.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def ids(self, **filters: Any) -> set[str]:
        found: set[str] = set()
        for use in USES:
            status, answer = await self.post(
                {"db_use_type": use, "cur_page": 1, "per_page": 100, **filters}
            )
            assert status == 200, answer
            assert answer["total_record"] == len(answer["jobs"])
            found |= {j["id"] for j in answer["jobs"]}
        return found

    async def jobs(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.emu.url}/_emulator/jobs") as resp:
            return [j for j in (await resp.json())["jobs"] if j["parent_id"] is None]


@pytest.fixture
def lister(emu: Emulator, session: aiohttp.ClientSession) -> Lister:
    return Lister(emu, session)


async def test_tags_match_every_given_pair(lister: Lister) -> None:
    jobs = await lister.jobs()
    tagged = next(j for j in jobs if j["tags"])
    env = {"env": tagged["tags"]["env"]}
    assert await lister.ids(tags=env) == {
        j["id"] for j in jobs if j["tags"].get("env") == env["env"]
    }
    both = await lister.ids(tags=tagged["tags"])
    assert tagged["id"] in both
    assert both == {j["id"] for j in jobs if j["tags"] == tagged["tags"]}
    assert both < await lister.ids()  # the filter does filter
    assert await lister.ids(tags={"env": "no-such-env"}) == set()


async def test_enterprise_project_filters_and_most_jobs_are_in_the_default(lister: Lister) -> None:
    jobs = await lister.jobs()
    default = {j["id"] for j in jobs if j["enterprise_project_id"] == "0"}
    others = {j["enterprise_project_id"] for j in jobs} - {"0"}
    assert len(default) > len(jobs) / 2
    assert others  # some jobs live in an enterprise project (a uuid)
    assert await lister.ids(enterprise_project_id="0") == default
    one = sorted(others)[0]
    assert await lister.ids(enterprise_project_id=one) == {
        j["id"] for j in jobs if j["enterprise_project_id"] == one
    }


async def test_instance_ids_match_the_source_or_the_target(lister: Lister) -> None:
    jobs = await lister.jobs()
    a, b = jobs[0], jobs[1]
    wanted = [a["instance_ids"][0], b["instance_ids"][1]]  # a's source, b's target
    assert await lister.ids(instance_ids=wanted) == {a["id"], b["id"]}
    assert await lister.ids(instance_ip=a["instance_ips"][1]) == {a["id"]}


@pytest.mark.parametrize(
    "filters",
    [
        {"instance_ids": [f"{i:032x}in01" for i in range(11)]},
        {"instance_ids": "abc"},
        {"tags": [{"key": "env", "value": "prod"}]},
        {"enterprise_project_id": ""},
        {"cur_page": 2, "per_page": 0},
    ],
)
async def test_bad_filters_are_refused(lister: Lister, filters: dict[str, Any]) -> None:
    body = {"db_use_type": "sync", "cur_page": 1, "per_page": 10, **filters}
    status, answer = await lister.post(body)
    assert (status, answer["error_code"]) == (400, "DRS.M00202")


async def test_cur_page_0_with_per_page_0_lists_everything(lister: Lister) -> None:
    status, answer = await lister.post({"db_use_type": "sync", "cur_page": 0, "per_page": 0})
    assert status == 200
    assert len(answer["jobs"]) == answer["total_record"] > 10


@pytest.mark.parametrize(
    "filters",
    [{}, {"status": "INCRE_TRANSFER_STARTED"}, {"tags": {"env": "prod"}}, {"net_type": "vpc"}],
)
async def test_pages_are_the_slices_of_every_match(lister: Lister, filters: dict[str, Any]) -> None:
    """Only a page's jobs are rendered, but the pages are exactly the slices of the full
    answer, and total_record counts every match (a last short page, then an empty one)."""
    body = {"db_use_type": "sync", **filters}
    status, everything = await lister.post({**body, "cur_page": 0, "per_page": 0})
    assert status == 200
    matched = everything["jobs"]
    assert len(matched) == everything["total_record"] >= 3
    per_page = 2 if len(matched) % 2 else 3 if len(matched) % 3 else 4
    pages = []
    for page in range(1, len(matched) // per_page + 3):  # past the end: one empty page
        status, answer = await lister.post({**body, "cur_page": page, "per_page": per_page})
        assert status == 200
        assert answer["total_record"] == len(matched)
        pages.append(answer["jobs"])
    assert pages[-1] == []
    assert [job for page in pages for job in page] == matched
    assert all(0 < len(page) <= per_page for page in pages[:-1])


async def test_batch_detail_shows_tags_and_endpoints(lister: Lister) -> None:
    job = next(j for j in await lister.jobs() if j["tags"])
    headers = {**JSON, "X-Auth-Token": lister.emu.token}
    url = f"{lister.emu.url}/v3/{lister.pid}/jobs/batch-detail"
    async with lister.session.post(url, json={"jobs": [job["id"]]}, headers=headers) as resp:
        detail = (await resp.json())["results"][0]
    assert {t["key"]: t["value"] for t in detail["tags"]} == job["tags"]
    assert detail["source_endpoint"]["inst_id"] == job["instance_ids"][0]
    assert detail["target_endpoint"]["ip"] == job["instance_ips"][1]


def test_labels_are_drawn_from_the_seed() -> None:
    def labels(seed: int) -> list[object]:
        config = EmulatorConfig(projects=EmulatorConfig.generate_projects(2, 0), seed=seed)
        return [job.labels for job in Fleet(config, clock=FakeClock(0.0)).all_jobs()]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)
    children = [
        job
        for job in Fleet(EmulatorConfig(projects=EmulatorConfig.generate_projects(1, 0))).all_jobs()
        if job.parent_id
    ]
    assert children
    for child in children:  # a dual-active child links its parent's two instances
        ends = {child.labels.source_instance_id, child.labels.target_instance_id}
        assert len(ends) == 2
