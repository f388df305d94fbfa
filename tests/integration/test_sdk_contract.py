"""The emulator checked by a client we did not write: the official SDK (issue 15).

``huaweicloudsdkdrs`` (test extra only, never a runtime dependency) drives a standalone emulator
with AK/SK signing, for each operation the product uses, and the raw JSON of every answer is held
against the SDK's models (``attribute_map`` / ``openapi_types``): a key the SDK does not know is
a misspelling (``node_new_framework`` was one, on both sides), and the keys the product reads
must be there. Keys the fact sheet documents beyond the SDK's models are listed, with why.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from harness import serve_emulator

drs = pytest.importorskip("huaweicloudsdkdrs.v3")
credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
sdk_errors = pytest.importorskip("huaweicloudsdkcore.exceptions.exceptions")

# The SDK marks the v3 methods deprecated (v5 is what Huawei promotes); the product targets v3.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Keys ../shared/drs-api.md documents that the SDK's models (3.1.219) lack.
DOCUMENTED_EXTRAS: dict[str, set[str]] = {
    "JobInfo": {"error_msg"},  # "error_msg (also on a failed top-level job)"
}
# What the product reads of each answer: it must be there, spelt as the SDK spells it.
READ_BY_THE_PRODUCT: dict[str, set[str]] = {
    "JobInfo": {"id", "name", "status", "db_use_type", "engine_type", "job_action"},
    "JobActionResp": {"available_actions", "unavailable_actions", "current_action"},
    "QueryJobStatusResp": {"id", "status"},
    "QueryJobResp": {"id", "status", "update_time", "actual_start_time"},
    "RetryTaskResp": {"id", "status"},
    "PauseJobResp": {"id", "status"},
    "QueryProgressResp": {"job_id", "incre_trans_delay", "incre_trans_delay_millis"},
}
PRIMITIVES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool}
# The failed statuses of the fact sheet (written out: the test does not borrow either side's).
FAILED = frozenset(
    {
        "FULL_TRANSFER_FAILED", "INCRE_TRANSFER_FAILED", "START_JOB_FAILED",
        "CHILD_TRANSFER_FAILED", "REBUILD_NODE_FAILED", "CHANGE_JOB_FAILED",
        "NODE_UPGRADE_FAILED", "CREATE_FAILED", "RELEASE_RESOURCE_FAILED",
    }
)  # fmt: skip


def mismatches(raw: Any, model: str, where: str = "$", models: Any = None) -> list[str]:
    """Every key of ``raw`` the SDK model does not know, and every key the product reads that
    is missing, recursively through the model's nested types."""
    models = drs if models is None else models
    cls = getattr(models, model)
    wire_to_attr = {wire: attr for attr, wire in cls.attribute_map.items()}
    if not isinstance(raw, dict):
        return [f"{where}: expected an object for {model}, got {type(raw).__name__}"]
    found = [
        f"{where}.{key}: {model} has no such key (misspelt?)"
        for key in raw
        if key not in wire_to_attr and key not in DOCUMENTED_EXTRAS.get(model, set())
    ]
    found += [
        f"{where}: {model} lacks {key}, which the product reads"
        for key in sorted(READ_BY_THE_PRODUCT.get(model, set()) - set(raw))
    ]
    for key, value in raw.items():
        kind = cls.openapi_types.get(wire_to_attr.get(key, ""), "")
        inner = re.fullmatch(r"list\[(\w+)\]", kind)
        mapped = re.fullmatch(r"dict\(str, (\w+)\)", kind)
        if inner and hasattr(models, inner.group(1)) and isinstance(value, list):
            for i, item in enumerate(value):
                found += mismatches(item, inner.group(1), f"{where}.{key}[{i}]", models)
        elif mapped and hasattr(models, mapped.group(1)) and isinstance(value, dict):
            for name, item in value.items():
                found += mismatches(item, mapped.group(1), f"{where}.{key}.{name}", models)
        elif hasattr(models, kind) and value is not None:
            found += mismatches(value, kind, f"{where}.{key}", models)
        elif kind in PRIMITIVES and value is not None:
            wrong = isinstance(value, bool) and kind != "bool"
            if wrong or not isinstance(value, PRIMITIVES[kind]):
                found.append(f"{where}.{key}: {model} types it {kind}, got {value!r}")
    return found


def missing(raw: Any, model: str, where: str = "$", models: Any = None) -> list[str]:
    """Every key of the SDK model that ``raw`` lacks, recursively through every nested object
    (and every item of a list of objects) it sends; a nested ``null`` is a value, not a gap."""
    models = drs if models is None else models
    cls = getattr(models, model)
    if not isinstance(raw, dict):
        return [f"{where}: expected an object for {model}, got {type(raw).__name__}"]
    found = [
        f"{where}: {model} lacks {wire}" for wire in cls.attribute_map.values() if wire not in raw
    ]
    for attr, kind in cls.openapi_types.items():
        key = cls.attribute_map[attr]
        value = raw.get(key)
        inner = re.fullmatch(r"list\[(\w+)\]", kind)
        if inner and hasattr(models, inner.group(1)) and isinstance(value, list):
            for i, item in enumerate(value):
                found += missing(item, inner.group(1), f"{where}.{key}[{i}]", models)
        elif hasattr(models, kind) and isinstance(value, dict):
            found += missing(value, kind, f"{where}.{key}", models)
    return found


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict[str, Any]]:
    with serve_emulator("--projects", "1", "--jobs", "30", "--seed", "3") as described:
        yield described


@pytest.fixture(scope="module")
def client(emulator: dict[str, Any]) -> Any:
    project = emulator["projects"][0]["project_id"]
    auth = credentials.BasicCredentials(emulator["ak"], emulator["sk"], project)
    return drs.DrsClient.new_builder().with_credentials(auth).with_endpoint(emulator["url"]).build()


def raw_of(response: Any) -> Any:
    return json.loads(response.raw_content)


def listed(client: Any, db_use_type: str) -> Any:
    query = drs.QueryJobsReq(cur_page=1, per_page=100, db_use_type=db_use_type)
    return client.show_job_list(drs.ShowJobListRequest(body=query))


def all_jobs(client: Any) -> list[Any]:
    return [
        job
        for use in ("migration", "sync", "cloudDataGuard")
        for top in listed(client, use).jobs
        for job in (top, *(top.children or []))
    ]


@pytest.mark.parametrize("db_use_type", ["migration", "sync", "cloudDataGuard"])
def test_list_answers_are_what_the_sdk_reads(client: Any, db_use_type: str) -> None:
    response = listed(client, db_use_type)
    raw = raw_of(response)
    assert raw["jobs"], "nothing listed: the check proves nothing"
    problems = [
        p for i, job in enumerate(raw["jobs"]) for p in mismatches(job, "JobInfo", f"[{i}]")
    ]
    assert problems == []
    # Read through the SDK's own models: no field it expects comes back empty.
    for job in response.jobs:
        assert job.node_new_framework is not None  # None on every job while it was misspelt
        assert job.job_action is not None


def test_a_misspelt_key_is_caught() -> None:
    """The mutation the checker exists for: the key both sides used to spell wrong."""
    actions: dict[str, Any] = {"available_actions": [], "unavailable_actions": []}
    actions["current_action"] = None
    job: dict[str, Any] = {
        "id": "j",
        "name": "n",
        "status": "INCRE_TRANSFER_FAILED",
        "db_use_type": "migration",
        "engine_type": "mysql",
        "job_action": actions,
        "node_new_framework": True,
    }
    assert mismatches(job, "JobInfo") == [
        "$.node_new_framework: JobInfo has no such key (misspelt?)"
    ]
    job["node_newFramework"] = job.pop("node_new_framework")
    assert mismatches(job, "JobInfo") == []
    del actions["current_action"]
    assert mismatches(job, "JobInfo") == [
        "$.job_action: JobActionResp lacks current_action, which the product reads"
    ]


def test_batch_status_and_detail_answers_are_what_the_sdk_reads(client: Any) -> None:
    ids = [job.id for job in all_jobs(client)][:10]
    page = drs.BatchQueryJobReqPage(jobs=ids, page_req=drs.PageReq(cur_page=1, per_page=10))
    status = client.batch_list_job_status(drs.BatchListJobStatusRequest(body=page))
    raw = raw_of(status)
    assert len(raw["results"]) == len(ids)
    assert mismatches(raw, "BatchListJobStatusResponse") == []
    detail = client.batch_list_job_details(drs.BatchListJobDetailsRequest(body=page))
    raw = raw_of(detail)
    assert len(raw["results"]) == len(ids)
    assert mismatches(raw, "BatchListJobDetailsResponse") == []
    assert all(result.update_time for result in detail.results)


def test_batch_detail_answers_every_field_of_the_sdks_query_job_resp(client: Any) -> None:
    jobs = all_jobs(client)
    ids = [job.id for job in jobs]
    results: list[Any] = []
    raw_results: list[dict[str, Any]] = []
    for start in range(0, len(ids), 10):  # the docs recommend at most 10 ids per call
        chunk = ids[start : start + 10]
        page = drs.BatchQueryJobReqPage(jobs=chunk, page_req=drs.PageReq(cur_page=1, per_page=10))
        answer = client.batch_list_job_details(drs.BatchListJobDetailsRequest(body=page))
        raw = raw_of(answer)
        assert mismatches(raw, "BatchListJobDetailsResponse") == []  # no extra, misspelt key
        raw_results += raw["results"]
        results += answer.results
    assert len(raw_results) == len(ids) > 10
    assert len(drs.QueryJobResp.attribute_map) == 63  # the SDK version the emulator follows
    problems = [p for i, r in enumerate(raw_results) for p in missing(r, "QueryJobResp", f"[{i}]")]
    assert problems == []
    # What the emulator knows reaches the SDK's model, typed as the SDK types it.
    by_id = {job.id: job for job in jobs}
    for result in results:
        listed_job = by_id[result.id]
        assert (result.net_type, result.description) == (
            listed_job.net_type,
            listed_job.description,
        )
        assert result.source_endpoint.db_port in (3306, 5432, 8000)
        assert result.target_endpoint.region == result.source_endpoint.region
        assert result.inst_info.engine_type == listed_job.engine_type
        assert result.source_endpoint.db_password is None  # never a secret
        assert (result.failed_reason is not None) == (
            result.status in FAILED and not getattr(listed_job, "children", None)
        )
    assert {r.multi_write for r in results} == {True, False}
    assert any(r.parent_id for r in results)
    assert any(r.parent_id is None for r in results)


def test_a_dropped_detail_field_is_caught() -> None:
    """The mutation the completeness check exists for, at the top and inside an endpoint."""
    endpoint = dict.fromkeys(drs.Endpoint.attribute_map.values())
    result: dict[str, Any] = dict.fromkeys(drs.QueryJobResp.attribute_map.values())
    result["source_endpoint"] = endpoint
    result["tags"] = [{"key": "env"}]
    assert missing(result, "QueryJobResp") == ["$.tags[0]: Tag lacks value"]
    result["tags"] = []
    assert missing(result, "QueryJobResp") == []
    del result["net_type"], endpoint["db_port"]
    assert missing(result, "QueryJobResp") == [
        "$: QueryJobResp lacks net_type",
        "$.source_endpoint: Endpoint lacks db_port",
    ]


def test_retry_and_pause_answers_are_what_the_sdk_reads(client: Any) -> None:
    jobs = all_jobs(client)
    failed = next(j for j in jobs if "RETRY" in j.job_action.available_actions)
    running = next(j for j in jobs if "PAUSE" in j.job_action.available_actions)
    retry = client.batch_restore_task(
        drs.BatchRestoreTaskRequest(body=drs.BatchRetryReq(jobs=[drs.RetryInfo(job_id=failed.id)]))
    )
    assert mismatches(raw_of(retry), "BatchRestoreTaskResponse") == []
    assert retry.results[0].status == "success"
    pause = drs.BatchPauseJobReq(jobs=[drs.PauseInfo(job_id=running.id, pause_mode="target")])
    paused = client.batch_stop_jobs(drs.BatchStopJobsRequest(body=pause))
    assert mismatches(raw_of(paused), "BatchStopJobsResponse") == []
    assert paused.results[0].status == "success"


def test_error_answers_reach_the_sdk_as_its_own_errors(client: Any) -> None:
    page = drs.BatchQueryJobReqPage(jobs=[], page_req=drs.PageReq(cur_page=1, per_page=10))
    with pytest.raises(sdk_errors.ClientRequestException) as caught:
        client.batch_list_job_status(drs.BatchListJobStatusRequest(body=page))
    assert caught.value.status_code == 400
    assert caught.value.error_code == "DRS.M00201"
    assert caught.value.request_id  # X-Request-Id, as every answer carries


def test_batch_progress_answers_are_what_the_sdk_reads(client: Any) -> None:
    jobs = all_jobs(client)
    ids = [*(job.id for job in jobs[:40]), "missing-job"]
    body = drs.BatchQueryProgressReq(jobs=ids)
    answer = client.batch_list_progresses(drs.BatchListProgressesRequest(body=body))
    raw = raw_of(answer)
    assert raw["count"] == len(raw["results"]) == len(ids)
    problems = [
        p
        for i, result in enumerate(raw["results"][:-1])
        for p in mismatches(result, "QueryProgressResp", f"[{i}]")
    ]
    assert problems == []
    assert mismatches(raw["results"][-1], "QueryProgressResp") == [
        f"$: QueryProgressResp lacks {key}, which the product reads"
        for key in ("incre_trans_delay", "incre_trans_delay_millis")
    ]  # an unknown id carries job_id and its error only
    running = [r for r in answer.results if r.transfer_status == "INCRE_TRANSFER_STARTED"]
    assert running
    for result in running:  # read through the SDK's own model
        assert result.incre_trans_delay.isdigit()
        assert int(result.incre_trans_delay_millis) // 1000 == int(result.incre_trans_delay)
    assert all(isinstance(r.progress_map, dict) for r in answer.results[:-1])


def test_a_delay_sent_as_a_number_is_caught() -> None:
    """The SDK types every delay as text (and the two rates as integers)."""
    result = {"job_id": "j", "incre_trans_delay": "3", "incre_trans_delay_millis": "3000"}
    assert mismatches(result, "QueryProgressResp") == []
    result["incre_trans_delay"] = 3  # type: ignore[assignment]
    result["apply_rows_rate"] = "10"
    assert mismatches(result, "QueryProgressResp") == [
        "$.incre_trans_delay: QueryProgressResp types it str, got 3",
        "$.apply_rows_rate: QueryProgressResp types it int, got '10'",
    ]


def test_list_with_every_filter_through_the_sdk(client: Any, emulator: dict[str, Any]) -> None:
    listed_all = listed(client, "sync")
    job = next(j for j in listed_all.jobs if j.status)
    page = drs.BatchQueryJobReqPage(jobs=[job.id], page_req=drs.PageReq(cur_page=1, per_page=1))
    detail = raw_of(client.batch_list_job_details(drs.BatchListJobDetailsRequest(body=page)))
    found = detail["results"][0]
    assert mismatches(found, "QueryJobResp") == []  # tags (list[Tag]) and the two endpoints
    query = drs.QueryJobsReq(
        cur_page=1,
        per_page=100,
        db_use_type="sync",
        engine_type=job.engine_type,
        net_type=job.net_type,
        status=job.status,
        name=job.id,
        tags={t["key"]: t["value"] for t in found["tags"]},
        enterprise_project_id=_enterprise_project(emulator, job.id),
        instance_ids=[found["source_endpoint"]["inst_id"]],
        instance_ip=found["target_endpoint"]["ip"],
    )
    answer = client.show_job_list(drs.ShowJobListRequest(body=query))
    assert [j.id for j in answer.jobs] == [job.id]
    assert mismatches(raw_of(answer), "ShowJobListResponse") == []
    query.instance_ids = ["0" * 32 + "in01"]  # one filter that does not match: nothing
    assert client.show_job_list(drs.ShowJobListRequest(body=query)).jobs == []
    everything = drs.QueryJobsReq(cur_page=0, per_page=0, db_use_type="sync")
    assert len(client.show_job_list(drs.ShowJobListRequest(body=everything)).jobs) == len(
        listed_all.jobs
    )


def _enterprise_project(emulator: dict[str, Any], job_id: str) -> str:
    """The job's enterprise project, as the emulator's own (non-DRS, loopback) listing says."""
    with urllib.request.urlopen(f"{emulator['url']}/_emulator/jobs", timeout=10) as resp:
        jobs = json.loads(resp.read())["jobs"]
    project: str = next(j["enterprise_project_id"] for j in jobs if j["id"] == job_id)
    return project


def test_iam_tokens_reach_the_sdk_as_its_own_token_result(emulator: dict[str, Any]) -> None:
    """The emulator's ``POST /v3/auth/tokens`` driven by the official IAM SDK: the token in the
    ``X-Subject-Token`` header, the body as its ``TokenResult`` spells it."""
    iam = pytest.importorskip("huaweicloudsdkiam.v3")
    global_credentials = credentials.GlobalCredentials(emulator["ak"], emulator["sk"], "domain")
    client = (
        iam.IamClient.new_builder()
        .with_credentials(global_credentials)
        .with_endpoint(emulator["url"])
        .build()
    )
    project = emulator["projects"][0]["project_id"]
    user = iam.PwdPasswordUser(
        domain=iam.PwdPasswordUserDomain(name=emulator["domain"]),
        name=emulator["user"],
        password=emulator["password"],
    )
    body = iam.KeystoneCreateUserTokenByPasswordRequestBody(
        auth=iam.PwdAuth(
            identity=iam.PwdIdentity(methods=["password"], password=iam.PwdPassword(user=user)),
            scope=iam.AuthScope(project=iam.AuthScopeProject(id=project)),
        )
    )

    answer = client.keystone_create_user_token_by_password(
        iam.KeystoneCreateUserTokenByPasswordRequest(body=body)
    )

    assert answer.x_subject_token  # the token itself, in the header the SDK reads
    assert answer.token.expires_at
    raw = raw_of(answer)
    assert mismatches(raw, "KeystoneCreateUserTokenByPasswordResponse", models=iam) == []
    assert set(raw["token"]) >= {"expires_at"}
    wrong = iam.PwdPasswordUser(
        domain=iam.PwdPasswordUserDomain(name=emulator["domain"]),
        name=emulator["user"],
        password="not-the-password",
    )
    body.auth.identity.password.user = wrong
    with pytest.raises(sdk_errors.ClientRequestException) as refused:
        client.keystone_create_user_token_by_password(
            iam.KeystoneCreateUserTokenByPasswordRequest(body=body)
        )
    assert refused.value.status_code == 401


@pytest.fixture(scope="module")
def two_accounts() -> Iterator[dict[str, Any]]:
    with serve_emulator("--accounts", "2", "--projects", "4", "--jobs", "5") as described:
        yield described


def test_project_discovery_reaches_the_sdk_as_its_own_project_list(
    two_accounts: dict[str, Any],
) -> None:
    """``GET /v3/auth/projects`` (KeystoneListAuthProjects) driven by the official IAM SDK with
    each account's AK/SK: that account's projects only, every key as ``AuthProjectResult``
    spells it, the region readable from the name."""
    iam = pytest.importorskip("huaweicloudsdkiam.v3")
    for account in two_accounts["accounts"]:
        global_credentials = credentials.GlobalCredentials(
            account["ak"], account["sk"], account["domain_id"]
        )
        client = (
            iam.IamClient.new_builder()
            .with_credentials(global_credentials)
            .with_endpoint(two_accounts["url"])
            .build()
        )

        answer = client.keystone_list_auth_projects(iam.KeystoneListAuthProjectsRequest())

        raw = raw_of(answer)
        assert mismatches(raw, "KeystoneListAuthProjectsResponse", models=iam) == []
        for i, project in enumerate(raw["projects"]):
            # Every key of the SDK's model is there: a discovery client may read any of them.
            assert set(project) == set(iam.AuthProjectResult.attribute_map.values()), i
        assert [(p.id, p.name) for p in answer.projects] == [
            (p["project_id"], p["name"]) for p in account["projects"]
        ]
        assert {p.name.split("_")[0] for p in answer.projects} == {
            p["region"] for p in account["projects"]
        }
        assert all(p.domain_id == account["domain_id"] and p.enabled for p in answer.projects)
        assert answer.links.to_dict() == {"_self": f"{two_accounts['url']}/v3/auth/projects"}


def test_a_misspelt_project_key_is_caught() -> None:
    iam = pytest.importorskip("huaweicloudsdkiam.v3")
    project = {"id": "p", "name": "cn-north-4", "domain_id": "d", "enabled": True}
    assert mismatches(project, "AuthProjectResult", models=iam) == []
    project["domainId"] = project.pop("domain_id")
    assert mismatches(project, "AuthProjectResult", models=iam) == [
        "$.domainId: AuthProjectResult has no such key (misspelt?)"
    ]
