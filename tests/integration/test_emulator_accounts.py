"""Several accounts in one emulator (issue 18): their credentials, project discovery, per-account
authorisation, throttling, stats and the log of mutating requests, over HTTP on loopback."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from fakes import FakeClock
from harness import serve_emulator
from test_emulator_faults import now_date, sdk_sign

from engine.emulator import AccountSpec, Emulator, EmulatorConfig, generate_accounts
from engine.emulator.accounts import region_of_name

JSON = {"Content-Type": "application/json"}
LEGACY_KEYS = {"url", "projects", "token", "user", "password", "domain", "ak", "sk"}


def config(accounts: int = 2, projects: int = 2, **settings: Any) -> EmulatorConfig:
    return EmulatorConfig.for_accounts(generate_accounts(accounts, projects, 0), **settings)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Tenant:
    """One account's view of a running emulator: its token, its AK/SK, its projects."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession, name: str) -> None:
        self.emu, self.session = emu, session
        self.account: AccountSpec = next(a for a in emu.config.accounts if a.name == name)
        self.token = emu.tokens[name]

    @property
    def project(self) -> str:
        return self.account.projects[0].project_id

    async def post(
        self, path: str, body: Any, *, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {**JSON, "X-Auth-Token": token or self.token}
        async with self.session.post(f"{self.emu.url}{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def post_signed(self, path: str, body: Any, project: str) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode()
        headers = sdk_sign(
            "POST",
            f"{self.emu.url}{path}",
            {**JSON, "X-Project-Id": project},
            data,
            ak=self.account.ak,
            sk=self.account.sk,
            date=now_date(),
        )
        async with self.session.post(f"{self.emu.url}{path}", data=data, headers=headers) as resp:
            return resp.status, await resp.json()

    async def status(self, project: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        body = {"jobs": ["none"], "page_req": {"cur_page": 1, "per_page": 1}}
        return await self.post(f"/v3/{project}/jobs/batch-status", body, **kwargs)

    async def discover(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        url = f"{self.emu.url}/v3/auth/projects"
        async with self.session.get(url, headers=headers) as resp:
            return resp.status, await resp.json()


async def get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


# --------------------------------------------------------------------------- tenancy


def test_one_account_is_the_emulator_as_it_always_was() -> None:
    (only,) = generate_accounts(1, 3, 7)
    legacy = EmulatorConfig(projects=EmulatorConfig.generate_projects(3, 7), seed=7)
    assert EmulatorConfig.for_accounts((only,), seed=7) == legacy
    assert legacy.accounts == (only,)
    assert (only.user, only.domain, only.ak) == (legacy.user, legacy.domain, legacy.ak)


def test_accounts_are_drawn_from_the_seed_and_spread_over_regions() -> None:
    accounts = generate_accounts(3, 2, 5)
    assert accounts == generate_accounts(3, 2, 5)
    assert accounts != generate_accounts(3, 2, 6)
    ids = [p.project_id for a in accounts for p in a.projects]
    assert len(set(ids)) == len(ids) == 6
    assert len({a.ak for a in accounts}) == len({a.sk for a in accounts}) == 3
    assert len({(a.domain, a.user) for a in accounts}) == len({a.domain_id for a in accounts}) == 3
    assert all(len(a.ak) == 20 and len(a.sk) == 40 for a in accounts)
    one_each = generate_accounts(2, 1, 5)  # one project per account: still two regions
    assert {a.projects[0].region for a in one_each} == {"cn-north-4", "ap-southeast-1"}


def test_a_second_project_in_a_region_is_a_subproject() -> None:
    (account,) = generate_accounts(1, 4, 0)
    names = account.project_names()
    assert [names[p.project_id] for p in account.projects] == [
        "cn-north-4",
        "ap-southeast-1",
        "eu-west-101",
        "cn-north-4_2",
    ]
    assert [region_of_name(n) for n in names.values()] == [p.region for p in account.projects]


def test_a_project_in_two_accounts_is_refused() -> None:
    first, second = generate_accounts(2, 1, 0)
    stolen = AccountSpec(
        name="account-2",
        domain=second.domain,
        domain_id=second.domain_id,
        user=second.user,
        password=second.password,
        ak=second.ak,
        sk=second.sk,
        projects=first.projects,
    )
    with pytest.raises(ValueError, match="is not unique"):
        EmulatorConfig.for_accounts((first, stolen))


def test_the_first_line_lists_every_account_and_keeps_the_single_account_keys() -> None:
    with serve_emulator("--accounts", "2", "--projects", "2", "--seed", "4") as described:
        assert set(described) == LEGACY_KEYS | {"accounts"}
        first, second = described["accounts"]
        assert (first["name"], second["name"]) == ("account-1", "account-2")
        for key in ("token", "user", "password", "domain", "ak", "sk"):
            assert described[key] == first[key]
            assert first[key] != second[key]
        assert described["projects"] == [
            {"project_id": p["project_id"], "region": p["region"]} for p in first["projects"]
        ]
        assert {p["region"] for a in described["accounts"] for p in a["projects"]} >= {
            "cn-north-4",
            "ap-southeast-1",
        }
        # Discovery with the second account's token answers its projects only.
        request = urllib.request.Request(
            f"{described['url']}/v3/auth/projects", headers={"X-Auth-Token": second["token"]}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # loopback only
            found = json.loads(resp.read())["projects"]
        assert [(p["id"], p["name"]) for p in found] == [
            (p["project_id"], p["name"]) for p in second["projects"]
        ]
    with serve_emulator("--projects", "1") as single:
        assert set(single) == LEGACY_KEYS | {"accounts"}
        assert [a["name"] for a in single["accounts"]] == ["account-1"]


# --------------------------------------------------------------------------- authorisation


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(config(), clock=clock) as running:
        yield running


@pytest.fixture
def tenants(emu: Emulator, session: aiohttp.ClientSession) -> tuple[Tenant, Tenant]:
    return Tenant(emu, session, "account-1"), Tenant(emu, session, "account-2")


async def test_each_account_is_served_on_its_own_projects_only(
    emu: Emulator, session: aiohttp.ClientSession, tenants: tuple[Tenant, Tenant]
) -> None:
    one, two = tenants
    for tenant in tenants:
        for project in tenant.account.projects:
            status, _ = await tenant.status(project.project_id)
            assert status == 200
    status, answer = await two.status(one.project)  # the pre-issued token
    assert (status, answer["error_code"]) == (403, "DRS.M00102")
    assert set(answer) == {"error_code", "error_msg"}
    status, answer = await one.post_signed(
        f"/v3/{two.project}/jobs/batch-status",
        {"jobs": ["none"], "page_req": {"cur_page": 1, "per_page": 1}},
        two.project,
    )
    assert (status, answer["error_code"]) == (403, "DRS.M00102")
    status, _ = await one.post_signed(
        f"/v3/{one.project}/jobs/batch-status",
        {"jobs": ["none"], "page_req": {"cur_page": 1, "per_page": 1}},
        one.project,
    )
    assert status == 200
    owners = {
        j["project_id"]: j["account"]
        for j in (await get(session, f"{emu.url}/_emulator/jobs"))["jobs"]
    }
    assert owners == {p.project_id: t.account.name for t in tenants for p in t.account.projects}
    stats = (await get(session, f"{emu.url}/_emulator/stats"))["accounts"]
    route = "POST /v3/{project_id}/jobs/batch-status"
    assert stats["account-1"]["requests_by_route"] == {route: 2 + 2}
    assert stats["account-2"]["requests_by_route"] == {route: 2 + 1}
    assert stats["account-1"]["refused_other_account"] == 1
    assert stats["account-2"]["refused_other_account"] == 1
    assert stats["account-1"]["requests"] == 4


async def test_iam_tokens_are_issued_for_the_users_own_projects(
    tenants: tuple[Tenant, Tenant],
) -> None:
    one, two = tenants

    def login(tenant: Tenant, scope: dict[str, str]) -> dict[str, Any]:
        user = {
            "name": tenant.account.user,
            "password": tenant.account.password,
            "domain": {"name": tenant.account.domain},
        }
        identity = {"methods": ["password"], "password": {"user": user}}
        return {"auth": {"identity": identity, "scope": {"project": scope}}}

    url = f"{two.emu.url}/v3/auth/tokens"
    async with two.session.post(url, json=login(two, {"id": two.project})) as resp:
        assert resp.status == 201
        token = resp.headers["X-Subject-Token"]
        assert (await resp.json())["token"]["user"]["name"] == two.account.user
    assert (await two.status(two.project, token=token))[0] == 200
    status, answer = await two.status(one.project, token=token)
    assert (status, answer["error_code"]) == (403, "DRS.M00102")
    async with two.session.post(url, json=login(two, {"id": one.project})) as resp:
        assert resp.status == 401  # another account's project is not found for this user
        assert (await resp.json())["error"]["title"] == "Unauthorized"
    named = {"name": two.account.project_names()[two.project]}
    async with two.session.post(url, json=login(two, named)) as resp:
        assert resp.status == 201
    wrong = login(two, {"id": two.project})
    wrong["auth"]["identity"]["password"]["user"]["password"] = one.account.password
    async with two.session.post(url, json=wrong) as resp:
        assert resp.status == 401


# --------------------------------------------------------------------------- discovery


async def test_discovery_answers_the_callers_account_by_token_or_signature(
    tenants: tuple[Tenant, Tenant],
) -> None:
    for tenant in tenants:
        names = tenant.account.project_names()
        status, body = await tenant.discover({"X-Auth-Token": tenant.token})
        assert status == 200
        assert body["links"] == {"self": f"{tenant.emu.url}/v3/auth/projects"}
        assert [(p["id"], p["name"]) for p in body["projects"]] == [
            (p.project_id, names[p.project_id]) for p in tenant.account.projects
        ]
        for project in body["projects"]:
            assert project["domain_id"] == project["parent_id"] == tenant.account.domain_id
            assert project["enabled"] is True
            assert project["is_domain"] is False
            assert project["links"]["self"].endswith(f"/v3/projects/{project['id']}")
        url = f"{tenant.emu.url}/v3/auth/projects"
        headers = sdk_sign(
            "GET", url, JSON, b"", ak=tenant.account.ak, sk=tenant.account.sk, date=now_date()
        )
        assert await tenant.discover(headers) == (200, body)


async def test_discovery_without_valid_credentials_is_a_keystone_401(
    tenants: tuple[Tenant, Tenant],
) -> None:
    one, _ = tenants
    for headers in ({}, {"X-Auth-Token": "MIIemu-not-a-token"}):
        status, body = await one.discover(headers)
        assert status == 401
        assert body["error"]["code"] == 401
        assert body["error"]["title"] == "Unauthorized"


async def test_a_subprojects_parent_is_its_regions_project(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    async with Emulator(config(accounts=1, projects=4), clock=clock) as emu:
        status, body = await Tenant(emu, session, "account-1").discover({"X-Auth-Token": emu.token})
    assert status == 200
    by_name = {p["name"]: p for p in body["projects"]}
    assert by_name["cn-north-4_2"]["parent_id"] == by_name["cn-north-4"]["id"]
    assert by_name["cn-north-4"]["parent_id"] == by_name["cn-north-4"]["domain_id"]


# --------------------------------------------------------------------------- throttling


@pytest.fixture
async def throttled(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(config(rate_limit_per_s=5), clock=clock) as running:
        yield running


async def test_two_accounts_at_their_limit_do_not_throttle_each_other(
    throttled: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    one, two = Tenant(throttled, session, "account-1"), Tenant(throttled, session, "account-2")
    answers = [(await tenant.status(tenant.project))[0] for _ in range(5) for tenant in (one, two)]
    assert answers == [200] * 10  # 5 each within one second of the fleet clock: both at limit
    stats = await get(session, f"{throttled.url}/_emulator/stats")
    assert stats["throttled"] == 0
    route = "POST /v3/{project_id}/jobs/batch-status"
    for name in ("account-1", "account-2"):
        assert stats["accounts"][name]["throttled"] == 0
        assert stats["accounts"][name]["peak_rate_per_s"] == {route: 5}
    assert stats["peak_rate_per_s"][route] == 10

    clock.advance(1.0)  # a new window: account 1 goes over its limit, account 2 stays at it
    over = [(await one.status(one.project))[0] for _ in range(8)]
    under = [(await two.status(two.project))[0] for _ in range(5)]
    assert over == [200] * 5 + [429] * 3
    assert under == [200] * 5
    stats = await get(session, f"{throttled.url}/_emulator/stats")
    assert stats["accounts"]["account-1"]["throttled"] == 3
    assert stats["accounts"]["account-2"]["throttled"] == 0
    assert stats["throttled"] == 3
    assert stats["accounts"]["account-1"]["requests"] == 5 + 8  # throttled ones are its too


# --------------------------------------------------------------------------- mutating log


async def test_mutating_requests_are_logged_with_arrival_time_owner_and_caller(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock, tenants: tuple[Tenant, Tenant]
) -> None:
    one, two = tenants
    retry = {"jobs": [{"job_id": "none"}]}
    pause = {"jobs": [{"job_id": "none", "pause_mode": "target"}]}
    assert (await one.post(f"/v3/{one.project}/jobs/batch-retry-task", retry))[0] == 200
    clock.advance(2.0)
    tripped = clock()
    clock.advance(0.5)
    assert (await two.post(f"/v3/{two.project}/jobs/batch-pause-task", pause))[0] == 200
    assert (await two.post(f"/v3/{one.project}/jobs/batch-retry-task", retry))[0] == 403
    assert (await one.status(one.project))[0] == 200  # not a mutating request: not logged

    base = f"{emu.url}/_emulator/requests?kind=mutating"
    everything = await get(session, base)
    assert everything["now"] == clock()
    assert [
        (r["route"].rsplit("/", 1)[1], r["account"], r["caller"], r["status"])
        for r in everything["requests"]
    ] == [
        ("batch-retry-task", "account-1", "account-1", 200),
        ("batch-pause-task", "account-2", "account-2", 200),
        ("batch-retry-task", "account-1", "account-2", 403),
    ]
    assert [r["at"] for r in everything["requests"]] == [100.0, 102.5, 102.5]
    after = await get(session, f"{base}&since={tripped}")
    assert len(after["requests"]) == 2
    owned = await get(session, f"{base}&since={tripped}&account=account-1")
    assert [r["caller"] for r in owned["requests"]] == ["account-2"]
    first_wall = everything["requests"][0]["at_wall"]
    assert len((await get(session, f"{base}&since_wall={first_wall}"))["requests"]) == 2
    stats = (await get(session, f"{emu.url}/_emulator/stats"))["accounts"]
    assert stats["account-1"]["mutating_requests"] == 1
    assert stats["account-2"]["mutating_requests"] == 2
    for query in ("", "?kind=all", "?kind=mutating&since=soon", "?kind=mutating&account=nobody"):
        async with session.get(f"{emu.url}/_emulator/requests{query}") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]
