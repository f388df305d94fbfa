"""DrsClient against a fake transport: request shapes, paging, chunking, errors, token renewal.

Retries are covered in test_resilience.py; here the client gets a retry loop on virtual time.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import pytest

from engine.api.auth import AkSkAuth
from engine.api.client import INVALID_RESPONSE, DrsClient, JobDetail
from engine.api.endpoints import drs_endpoint, iam_endpoint
from engine.api.progress import ProgressResult
from engine.api.resilience import Resilience
from engine.api.signer import sign
from engine.api.transport import AiohttpTransport, HttpRequest, HttpResponse
from engine.api.types import BatchOutcome, JobActions, JobInfo, Language, RetryItem
from engine.errors import AuthError, DrsApiError, TransportError

PROJECT = "0123456789abcdef0123456789abcdef"
BASE = "https://drs.cn-north-4.myhuaweicloud.com"

Answer = HttpResponse | Exception | Callable[[HttpRequest], HttpResponse]


def reply(status: int, body: Any, *, request_id: str = "req-1") -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status=status, headers={"x-request-id": request_id}, body=raw)


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

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


class FakeAuth:
    def __init__(self, *, renewable: bool = True) -> None:
        self.token = "token-1"
        self.renewable = renewable
        self.refreshes = 0

    async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    async def refresh(self) -> bool:
        self.refreshes += 1
        self.token = f"token-{self.refreshes + 1}"
        return self.renewable


async def no_sleep(seconds: float) -> None:
    pass


def client(transport: FakeTransport, auth: Any = None, **kw: Any) -> DrsClient:
    return DrsClient(
        transport=transport,
        endpoint=BASE + "/",
        project_id=PROJECT,
        auth=auth or FakeAuth(),
        resilience=Resilience(sleep=no_sleep),
        **kw,
    )


def wire_job(n: int) -> dict[str, Any]:
    return {"id": f"job-{n}", "name": f"name-{n}", "status": "INCRE_TRANSFER_FAILED"}


def jobs_page(first: int, count: int, total: int) -> HttpResponse:
    return reply(200, {"total_record": total, "jobs": [wire_job(first + i) for i in range(count)]})


def status_answer(request: HttpRequest) -> HttpResponse:
    """Answers batch-status like the service: ``page_req`` slices the asked ids."""
    body = json.loads(request.body)
    page, per_page = body["page_req"]["cur_page"], body["page_req"]["per_page"]
    ids = body["jobs"][(page - 1) * per_page : page * per_page]
    results = [{"id": i, "status": "INCRE_TRANSFER_STARTED"} for i in ids]
    return reply(200, {"results": results, "count": len(body["jobs"])})


def retry_ok(ids: Sequence[str]) -> HttpResponse:
    results = [{"id": i, "status": "success"} for i in ids]
    return reply(200, {"results": results, "count": len(ids)})


# --- endpoints ----------------------------------------------------------------------------------


def test_endpoints_for_cn_north_4() -> None:
    assert drs_endpoint("cn-north-4") == "https://drs.cn-north-4.myhuaweicloud.com"
    assert iam_endpoint("cn-north-4") == "https://iam.cn-north-4.myhuaweicloud.com"


def test_endpoints_for_eu_west_101_use_the_eu_site() -> None:
    assert drs_endpoint("eu-west-101") == "https://drs.eu-west-101.myhuaweicloud.eu"
    assert iam_endpoint("eu-west-101") == "https://iam.eu-west-101.myhuaweicloud.eu"


@pytest.mark.parametrize("region", ["", "evil.com/x", "cn-north-4.attacker", "CN-NORTH-4"])
def test_endpoint_refuses_a_region_that_is_not_a_region_name(region: str) -> None:
    with pytest.raises(ValueError, match="region must look like"):
        drs_endpoint(region)


# --- headers and list_jobs ----------------------------------------------------------------------


async def test_every_request_carries_content_type_language_and_token() -> None:
    transport = FakeTransport(jobs_page(0, 1, 1))
    await client(transport, language=Language.ZH_CN).list_jobs(db_use_type="migration")
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == f"{BASE}/v3/{PROJECT}/jobs"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Language"] == "zh-cn"
    assert request.headers["X-Auth-Token"] == "token-1"
    assert b" " not in request.body  # compact JSON


async def test_list_jobs_pages_through_three_pages() -> None:
    transport = FakeTransport(
        jobs_page(0, 100, 250), jobs_page(100, 100, 250), jobs_page(200, 50, 250)
    )
    listing = await client(transport).list_jobs(db_use_type="sync", engine_type="mysql")
    jobs = listing.jobs
    assert (listing.listed, listing.total_record, listing.count_disagrees) == (250, 250, False)
    assert [j.id for j in jobs] == [f"job-{n}" for n in range(250)]
    assert all(isinstance(j, JobInfo) for j in jobs)
    assert [b["cur_page"] for b in transport.bodies()] == [1, 2, 3]
    for body in transport.bodies():
        assert body["per_page"] == 100
        assert body["db_use_type"] == "sync"
        assert body["engine_type"] == "mysql"
        assert "status" not in body  # unset filters are not sent


async def test_a_full_last_page_is_followed_by_one_more_even_when_total_record_is_reached() -> None:
    # total_record may be too low: only a short page ends the listing.
    transport = FakeTransport(
        jobs_page(0, 100, 200), jobs_page(100, 100, 200), jobs_page(0, 0, 200)
    )
    listing = await client(transport).list_jobs(db_use_type="migration")
    assert (len(listing.jobs), listing.count_disagrees) == (200, False)
    assert len(transport.requests) == 3


async def test_a_total_record_too_low_loses_no_job_and_says_so() -> None:
    pages = [jobs_page(0, 100, 200), jobs_page(100, 100, 200), jobs_page(200, 100, 200)]
    transport = FakeTransport(*pages, jobs_page(300, 0, 200))
    listing = await client(transport).list_jobs(db_use_type="migration")
    assert [j.id for j in listing.jobs] == [f"job-{n}" for n in range(300)]
    assert (listing.listed, listing.total_record, listing.count_disagrees) == (300, 200, True)


async def test_jobs_beyond_total_record_by_more_than_a_page_are_an_error() -> None:
    pages = [jobs_page(n * 100, 100, 100) for n in range(3)]
    transport = FakeTransport(*pages)
    with pytest.raises(DrsApiError) as caught:
        await client(transport).list_jobs(db_use_type="migration")
    assert caught.value.error_code == INVALID_RESPONSE
    assert "300 distinct jobs listed in 3 full pages, but total_record says 100" in str(
        caught.value
    )
    assert len(transport.requests) == 3


async def test_a_service_paging_in_circles_is_an_error_not_an_endless_loop() -> None:
    # total_record too high and every page the same: 106,667 requests in 120 s before.
    transport = FakeTransport(*[jobs_page(0, 100, 10**9)] * 3)
    with pytest.raises(DrsApiError, match="page 2 lists only jobs of earlier pages") as caught:
        await client(transport).list_jobs(db_use_type="migration")
    assert caught.value.error_code == INVALID_RESPONSE
    assert len(transport.requests) == 2


async def test_listing_stops_at_the_page_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.api.client as client_module

    monkeypatch.setattr(client_module, "MAX_LIST_PAGES", 3)
    transport = FakeTransport(*[jobs_page(n * 100, 100, 10**9) for n in range(4)])
    with pytest.raises(DrsApiError, match="still full pages after 3"):
        await client(transport).list_jobs(db_use_type="migration")
    assert len(transport.requests) == 3


async def test_list_jobs_stops_on_an_empty_page_when_total_record_lies() -> None:
    transport = FakeTransport(jobs_page(0, 100, 10_000), jobs_page(100, 0, 10_000))
    listing = await client(transport).list_jobs(db_use_type="migration")
    assert (len(listing.jobs), listing.count_disagrees) == (100, True)
    assert len(transport.requests) == 2


async def test_list_jobs_keeps_a_job_seen_on_two_pages_once() -> None:
    transport = FakeTransport(jobs_page(0, 100, 150), jobs_page(99, 51, 150))
    jobs = (await client(transport).list_jobs(db_use_type="migration")).jobs
    assert len(jobs) == 150
    assert len({j.id for j in jobs}) == 150


async def test_list_jobs_statuses_keeps_matching_jobs_and_parents_of_matching_children() -> None:
    healthy, failed = "INCRE_TRANSFER_STARTED", "INCRE_TRANSFER_FAILED"
    page_one = [{"id": f"ok-{n}", "name": "n", "status": healthy} for n in range(98)] + [
        {"id": "bad-1", "name": "n", "status": failed},
        {
            "id": "parent",
            "name": "n",
            "status": healthy,
            "children": [{"id": "child", "name": "n", "status": failed}],
        },
    ]
    page_two = [
        {"id": "bad-2", "name": "n", "status": failed},
        {"id": "ok-x", "name": "n", "status": healthy},
    ]
    transport = FakeTransport(
        reply(200, {"total_record": 102, "jobs": page_one}),
        reply(200, {"total_record": 102, "jobs": page_two}),
    )
    listing = await client(transport).list_jobs(db_use_type="migration", statuses={failed})
    jobs = listing.jobs
    assert listing.listed == 102
    assert [j.id for j in jobs] == ["bad-1", "parent", "bad-2"]
    assert [c.id for c in jobs[1].children] == ["child"]
    # Paging follows what the service listed, not what the filter kept.
    assert [b["cur_page"] for b in transport.bodies()] == [1, 2]
    assert all("status" not in body and "statuses" not in body for body in transport.bodies())


async def test_a_job_named_with_a_lone_surrogate_is_listed_with_a_replacement_character() -> None:
    page = {"total_record": 2, "jobs": [wire_job(1), {**wire_job(2), "name": "\ud800x"}]}
    assert b"\\ud800x" in reply(200, page).body  # json.dumps escapes it: "\ud800x"
    listing = await client(FakeTransport(reply(200, page))).list_jobs(db_use_type="migration")
    assert [job.name for job in listing.jobs] == ["name-1", "\ufffdx"]  # before: INVALID_RESPONSE


async def test_list_jobs_statuses_on_a_malformed_entry_raises_invalid_response() -> None:
    transport = FakeTransport(reply(200, {"total_record": 1, "jobs": ["not a job"]}))
    with pytest.raises(DrsApiError) as info:
        await client(transport).list_jobs(db_use_type="migration", statuses={"FAILED"})
    assert info.value.error_code == INVALID_RESPONSE


async def test_list_jobs_with_a_malformed_answer_raises_invalid_response() -> None:
    transport = FakeTransport(reply(200, {"total_record": 1, "jobs": [{"name": "no id"}]}))
    with pytest.raises(DrsApiError) as info:
        await client(transport).list_jobs(db_use_type="migration")
    assert info.value.error_code == INVALID_RESPONSE
    assert info.value.operation == "list jobs"


async def test_a_2xx_answer_that_is_not_json_raises_invalid_response() -> None:
    transport = FakeTransport(reply(200, b"<html>ok</html>"))
    with pytest.raises(DrsApiError) as info:
        await client(transport).list_jobs(db_use_type="migration")
    assert info.value.error_code == INVALID_RESPONSE


# --- batch_status -------------------------------------------------------------------------------


async def test_batch_status_always_sends_page_req_per_page_equal_to_chunk() -> None:
    transport = FakeTransport(status_answer)
    results = await client(transport).batch_status(["a", "b", "c"])
    assert [r.id for r in results] == ["a", "b", "c"]
    assert transport.bodies() == [
        {"jobs": ["a", "b", "c"], "page_req": {"cur_page": 1, "per_page": 3}}
    ]


async def test_batch_status_chunks_250_ids_into_100_100_50() -> None:
    ids = [f"job-{n}" for n in range(250)]
    transport = FakeTransport(status_answer, status_answer, status_answer)
    results = await client(transport).batch_status(ids)
    assert [r.id for r in results] == ids
    bodies = transport.bodies()
    assert [len(b["jobs"]) for b in bodies] == [100, 100, 50]
    assert [b["page_req"] for b in bodies] == [
        {"cur_page": 1, "per_page": 100},
        {"cur_page": 1, "per_page": 100},
        {"cur_page": 1, "per_page": 50},
    ]


async def test_batch_status_dedupes_ids_and_keeps_their_order() -> None:
    transport = FakeTransport(status_answer)
    results = await client(transport).batch_status(["b", "a", "b"])
    assert [r.id for r in results] == ["b", "a"]
    assert transport.bodies()[0]["jobs"] == ["b", "a"]


async def test_batch_status_fetches_further_pages_when_count_exceeds_results() -> None:
    def capped_at_two(request: HttpRequest) -> HttpResponse:
        body = json.loads(request.body)
        start = (body["page_req"]["cur_page"] - 1) * 2
        results = [{"id": i, "status": "PAUSING"} for i in body["jobs"][start : start + 2]]
        return reply(200, {"results": results, "count": len(body["jobs"])})

    transport = FakeTransport(capped_at_two, capped_at_two, capped_at_two)
    results = await client(transport).batch_status(["a", "b", "c", "d", "e"])
    assert [r.id for r in results] == ["a", "b", "c", "d", "e"]
    assert [b["page_req"]["cur_page"] for b in transport.bodies()] == [1, 2, 3]


async def test_batch_status_with_no_ids_sends_nothing() -> None:
    transport = FakeTransport()
    assert await client(transport).batch_status([]) == []
    assert transport.requests == []


# --- batch_progress -----------------------------------------------------------------------------


def progress_answer(request: HttpRequest) -> HttpResponse:
    """Answers batch-progress like the SDK's QueryProgressResp: keyed job_id, numbers as text."""
    ids = json.loads(request.body)["jobs"]
    results = [
        {
            "job_id": i,
            "incre_trans_delay": "7",
            "incre_trans_delay_millis": "7250",
            "progress": "100",
        }
        for i in ids
    ]
    return reply(200, {"count": len(ids), "results": results})


async def test_batch_progress_sends_only_the_jobs_and_reads_results_keyed_job_id() -> None:
    transport = FakeTransport(progress_answer)
    results = await client(transport).batch_progress(["a", "b", "a"])
    assert transport.bodies() == [{"jobs": ["a", "b"]}]
    assert transport.requests[0].url == f"{BASE}/v3/{PROJECT}/jobs/batch-progress"
    assert [(r.job_id, r.delay_s) for r in results] == [("a", 7.25), ("b", 7.25)]


async def test_batch_progress_chunks_250_ids_into_three_requests() -> None:
    ids = [f"job-{n}" for n in range(250)]
    transport = FakeTransport(progress_answer, progress_answer, progress_answer)
    results = await client(transport).batch_progress(ids)
    assert [len(b["jobs"]) for b in transport.bodies()] == [100, 100, 50]
    assert [r.job_id for r in results] == ids


async def test_batch_progress_leaves_out_ids_it_did_not_ask_about() -> None:
    def strangers(request: HttpRequest) -> HttpResponse:
        results = [
            {"job_id": "a", "incre_trans_delay": "3"},
            {"job_id": "zz", "incre_trans_delay": "1"},
        ]
        return reply(200, {"count": 2, "results": results})

    results = await client(FakeTransport(strangers)).batch_progress(["a", "b"])
    assert [(r.job_id, r.delay_s) for r in results] == [("a", 3.0)]


async def test_batch_progress_results_keyed_id_are_an_invalid_response() -> None:
    answer = reply(200, {"count": 1, "results": [{"id": "a", "incre_trans_delay": "3"}]})
    with pytest.raises(DrsApiError) as caught:
        await client(FakeTransport(answer)).batch_progress(["a"])
    assert caught.value.error_code == "INVALID_RESPONSE"


@pytest.mark.parametrize(
    ("wire", "delay"),
    [
        ({"incre_trans_delay": "12"}, 12.0),
        ({"incre_trans_delay": 12}, 12.0),
        ({"incre_trans_delay": "12", "incre_trans_delay_millis": "12900"}, 12.9),
        ({"incre_trans_delay": "", "incre_trans_delay_millis": ""}, None),
        ({"incre_trans_delay": "-"}, None),
        ({"incre_trans_delay": "-5"}, None),
        ({"incre_trans_delay": "nan"}, None),
        ({"incre_trans_delay": "1e400"}, None),
        ({"incre_trans_delay": "1e12"}, None),
        ({"incre_trans_delay": True}, None),
        ({}, None),
    ],
)
def test_a_delay_is_a_finite_non_negative_number_or_none(
    wire: dict[str, Any], delay: float | None
) -> None:
    assert ProgressResult.from_wire({"job_id": "a", **wire}).delay_s == delay


# --- batch_detail -------------------------------------------------------------------------------


def detail_answer(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    results = [
        {
            "id": i,
            "status": "INCRE_TRANSFER_FAILED",
            "name": f"name-{i}",
            "failed_reason": "source unreachable",
            "error_code": "DRS.X1",
            "error_message": "boom",
            "parent_id": "" if i != "child" else "parent",
            "master_job_id": "ignored",
        }
        for i in body["jobs"]
    ]
    return reply(200, {"results": results, "count": len(results)})


async def test_batch_detail_sends_at_most_ten_ids_and_per_page_every_time() -> None:
    ids = [f"job-{n}" for n in range(23)]
    transport = FakeTransport(detail_answer, detail_answer, detail_answer)
    details = await client(transport).batch_detail(ids)
    assert [d.id for d in details] == ids
    assert [r.url for r in transport.requests] == [f"{BASE}/v3/{PROJECT}/jobs/batch-detail"] * 3
    assert [(len(b["jobs"]), b["page_req"]) for b in transport.bodies()] == [
        (10, {"cur_page": 1, "per_page": 10}),
        (10, {"cur_page": 1, "per_page": 10}),
        (3, {"cur_page": 1, "per_page": 3}),
    ]


async def test_batch_detail_parses_the_fields_the_engine_reports() -> None:
    transport = FakeTransport(detail_answer)
    child, other = await client(transport).batch_detail(["child", "other", "child"])
    assert child == JobDetail(
        id="child",
        status="INCRE_TRANSFER_FAILED",
        name="name-child",
        failed_reason="source unreachable",
        error_code="DRS.X1",
        error_message="boom",
        parent_id="parent",
    )
    assert other.parent_id is None  # the service sends "" for a job without a parent
    assert transport.bodies()[0]["jobs"] == ["child", "other"]


async def test_batch_detail_with_no_ids_sends_nothing() -> None:
    transport = FakeTransport()
    assert await client(transport).batch_detail([]) == []
    assert transport.requests == []


# --- batch_retry / batch_pause ------------------------------------------------------------------


async def test_batch_retry_body_is_exactly_jobs_with_job_id() -> None:
    transport = FakeTransport(retry_ok(["a", "b"]))
    results = await client(transport).batch_retry(
        [RetryItem(job_id="a"), RetryItem(job_id="b", is_sync_re_edit=True)]
    )
    assert transport.bodies() == [
        {"jobs": [{"job_id": "a"}, {"job_id": "b", "is_sync_re_edit": True}]}
    ]
    assert transport.requests[0].url == f"{BASE}/v3/{PROJECT}/jobs/batch-retry-task"
    assert [(r.id, r.status) for r in results] == [
        ("a", BatchOutcome.SUCCESS),
        ("b", BatchOutcome.SUCCESS),
    ]


async def test_batch_retry_200_with_per_job_failures_returns_them_as_results() -> None:
    answer = {
        "results": [
            {"id": "child", "status": "success"},
            {"id": "parent", "status": "failed", "error_code": "DRS.M00307", "error_msg": "no"},
        ],
        "count": 2,
    }
    transport = FakeTransport(reply(200, answer))
    results = await client(transport).batch_retry(
        [RetryItem(job_id="child"), RetryItem(job_id="parent")]
    )
    assert results[1].status is BatchOutcome.FAILED
    assert (results[1].error_code, results[1].error_msg) == ("DRS.M00307", "no")


async def test_batch_retry_400_raises_drs_api_error_with_all_fields() -> None:
    body = {"error_code": "DRS.M00307", "error_msg": "Only subtasks can invoke this interface"}
    transport = FakeTransport(reply(400, body, request_id="rid-42"))
    with pytest.raises(DrsApiError) as info:
        await client(transport).batch_retry([RetryItem(job_id="parent")])
    error = info.value
    assert (error.http_status, error.error_code) == (400, "DRS.M00307")
    assert error.error_msg == "Only subtasks can invoke this interface"
    assert (error.request_id, error.operation) == ("rid-42", "batch-retry")
    assert "rid-42" in str(error)


async def test_non_json_502_raises_drs_api_error_with_fallback_code() -> None:
    transport = FakeTransport(reply(502, b"<html>Bad Gateway</html>"))
    with pytest.raises(DrsApiError) as info:
        await client(transport).batch_retry([RetryItem(job_id="a")])
    assert (info.value.http_status, info.value.error_code) == (502, "HTTP_502")
    assert "Bad Gateway" in info.value.error_msg


async def test_iam_shaped_error_body_is_understood() -> None:
    body = {"error": {"code": "IAM.0001", "message": "bad things"}}
    transport = FakeTransport(reply(403, body))
    with pytest.raises(DrsApiError) as info:
        await client(transport).batch_status(["a"])
    assert (info.value.error_code, info.value.error_msg) == ("IAM.0001", "bad things")


async def test_keystone_numeric_error_code_is_labelled_as_iam() -> None:
    body = {"error": {"code": 401, "message": "The username or password is wrong.", "title": "x"}}
    transport = FakeTransport(reply(403, body))
    with pytest.raises(DrsApiError) as info:
        await client(transport).batch_status(["a"])
    assert info.value.error_code == "IAM.401"
    assert "403 IAM.401: The username or password is wrong." in str(info.value)


async def test_202_with_an_error_body_raises_drs_api_error_once_retries_run_out() -> None:
    body = {"error_code": "DRS.M01504", "error_msg": "another operation is running"}
    transport = FakeTransport(*(reply(202, body) for _ in range(5)))
    with pytest.raises(DrsApiError) as info:
        await client(transport).batch_retry([RetryItem(job_id="a")])
    assert (info.value.http_status, info.value.error_code) == (202, "DRS.M01504")
    assert len(transport.requests) == 5  # refused before applying: safe to re-send


async def test_transport_error_from_batch_retry_is_not_retried() -> None:
    transport = FakeTransport(TransportError("connection reset"), retry_ok(["a"]))
    with pytest.raises(TransportError):
        await client(transport).batch_retry([RetryItem(job_id="a")])
    assert len(transport.requests) == 1


async def test_5xx_on_a_read_is_retried_by_the_resilience_layer() -> None:
    transport = FakeTransport(
        reply(500, {"error_code": "DRS.M00004", "error_msg": "x"}), status_answer
    )
    assert [r.id for r in await client(transport).batch_status(["a"])] == ["a"]
    assert len(transport.requests) == 2


def test_client_without_a_resilience_gets_its_own_counters() -> None:
    first = DrsClient(transport=FakeTransport(), endpoint=BASE, project_id=PROJECT, auth=FakeAuth())
    second = DrsClient(
        transport=FakeTransport(), endpoint=BASE, project_id=PROJECT, auth=FakeAuth()
    )
    assert first.resilience.stats is not second.resilience.stats


@pytest.mark.parametrize("count", [0, 101])
async def test_batch_retry_refuses_an_empty_or_oversized_batch(count: int) -> None:
    transport = FakeTransport()
    with pytest.raises(ValueError, match="1 to 100 jobs"):
        await client(transport).batch_retry([RetryItem(job_id=f"j{n}") for n in range(count)])
    assert transport.requests == []


async def test_batch_retry_refuses_a_job_twice() -> None:
    with pytest.raises(ValueError, match="same job id twice"):
        await client(FakeTransport()).batch_retry([RetryItem(job_id="a"), RetryItem(job_id="a")])


async def test_batch_pause_always_carries_its_mandatory_pause_mode() -> None:
    transport = FakeTransport(retry_ok(["a"]))
    await client(transport).batch_pause(["a"], pause_mode="target")
    with pytest.raises(ValueError, match="needs a pause_mode"):
        await client(transport).batch_pause(["a"], pause_mode="")
    assert transport.bodies() == [{"jobs": [{"job_id": "a", "pause_mode": "target"}]}]
    assert transport.requests[0].url.endswith("/jobs/batch-pause-task")


# --- 401 and token renewal ----------------------------------------------------------------------


def expired(code: str = "APIGW.0307") -> HttpResponse:
    return reply(401, {"error_code": code, "error_msg": "The token must be updated."})


async def test_401_token_expired_refreshes_and_replays_once_with_new_token() -> None:
    auth = FakeAuth()
    transport = FakeTransport(expired(), retry_ok(["a"]))
    results = await client(transport, auth).batch_retry([RetryItem(job_id="a")])
    assert [r.status for r in results] == [BatchOutcome.SUCCESS]
    assert auth.refreshes == 1
    assert [r.headers["X-Auth-Token"] for r in transport.requests] == ["token-1", "token-2"]
    assert transport.requests[0].body == transport.requests[1].body


async def test_second_401_after_refresh_raises_auth_error() -> None:
    auth = FakeAuth()
    transport = FakeTransport(expired("APIGW.0301"), expired("APIGW.0301"))
    with pytest.raises(AuthError, match=r"HTTP 401 APIGW\.0301"):
        await client(transport, auth).list_jobs(db_use_type="migration")
    assert auth.refreshes == 1
    assert len(transport.requests) == 2


async def test_401_with_a_token_that_cannot_be_renewed_raises_auth_error_without_replay() -> None:
    auth = FakeAuth(renewable=False)
    transport = FakeTransport(expired())
    with pytest.raises(AuthError):
        await client(transport, auth).batch_status(["a"])
    assert len(transport.requests) == 1


async def test_401_signature_invalid_is_not_refreshed() -> None:
    auth = FakeAuth()
    transport = FakeTransport(expired("APIGW.0303"))
    with pytest.raises(AuthError, match=r"APIGW\.0303"):
        await client(transport, auth).batch_status(["a"])
    assert auth.refreshes == 0


async def test_ak_sk_auth_signs_the_request_as_sent() -> None:
    auth = AkSkAuth("AKEXAMPLE0001", "sk-EXAMPLE", PROJECT)
    transport = FakeTransport(status_answer)
    await client(transport, auth).batch_status(["a"])
    (sent,) = transport.requests
    assert sent.headers["X-Project-Id"] == PROJECT
    assert sent.headers["Host"] == "drs.cn-north-4.myhuaweicloud.com"
    assert "X-Auth-Token" not in sent.headers
    # Re-signing what was sent (its X-Sdk-Date kept) reproduces the Authorization header.
    unsigned = {k: v for k, v in sent.headers.items() if k != "Authorization"}
    again = sign(
        HttpRequest(method=sent.method, url=sent.url, headers=unsigned, body=sent.body),
        ak="AKEXAMPLE0001",
        sk="sk-EXAMPLE",
    )
    assert again.headers["Authorization"] == sent.headers["Authorization"]
    assert (
        "SignedHeaders=content-type;host;x-language;x-project-id;x-sdk-date,"
        in (sent.headers["Authorization"])
    )


def test_retry_item_omits_is_sync_re_edit_unless_true() -> None:
    assert RetryItem(job_id="a").to_wire() == {"job_id": "a"}
    assert RetryItem(job_id="a", is_sync_re_edit=True).to_wire() == {
        "job_id": "a",
        "is_sync_re_edit": True,
    }


def test_a_listed_job_read_from_the_wire_equals_the_one_its_constructor_makes() -> None:
    # from_wire fills the frozen instance's dict directly (the hot path of every listing): a
    # field added to JobInfo but not to from_wire shows up here, as does a field read wrongly.
    child = JobInfo(id="c1", name="orders-child", status="CHILD_TRANSFER_FAILED")
    job = JobInfo(
        id="p1",
        name="orders",
        status="INCRE_TRANSFER_FAILED",
        create_time="1700000000000",
        description="dual-active",
        engine_type="mysql",
        net_type="eip",
        billing_tag=False,
        job_direction="up",
        db_use_type="cloudDataGuard",
        task_type="FULL_INCR_TRANS",
        node_new_framework=True,
        error_msg="broken",
        job_action=JobActions(available_actions=("RETRY",), current_action="RETRY"),
        children=(child,),
    )
    read = JobInfo.from_wire(json.loads(json.dumps(job.to_wire())))

    assert read == job
    assert set(vars(read)) == {f.name for f in dataclasses.fields(JobInfo)}
    assert set(vars(read.children[0])) == set(vars(read))
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.name = "renamed"  # type: ignore[misc]


# --- AiohttpTransport error mapping (no sockets: the session's request is replaced) -------------


@pytest.mark.parametrize(
    "failure", [aiohttp.ServerDisconnectedError(), TimeoutError(), ConnectionResetError()]
)
async def test_aiohttp_transport_maps_failures_to_transport_error(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(aiohttp.ClientSession, "request", fail)
    request = HttpRequest(
        method="POST", url=f"{BASE}/v3/p/jobs?secret=1", headers={"X-Auth-Token": "t0k"}, body=b"{}"
    )
    async with AiohttpTransport() as transport:
        with pytest.raises(TransportError) as info:
            await transport.send(request)
    assert info.value.__cause__ is failure
    assert str(info.value).startswith(f"POST {BASE}/v3/p/jobs: ")
    assert "t0k" not in str(info.value)
    assert "secret" not in str(info.value)


async def test_aiohttp_transport_refuses_send_outside_async_with() -> None:
    request = HttpRequest(method="POST", url=BASE, headers={}, body=b"")
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await AiohttpTransport().send(request)


def test_response_header_lookup_is_case_insensitive() -> None:
    response = HttpResponse(status=201, headers={"x-subject-token": "abc", "X-REQUEST-ID": "r"})
    assert response.header("X-Subject-Token") == "abc"
    assert response.request_id == "r"
    assert response.header("X-Missing") is None


@pytest.mark.parametrize(("ahead", "expected"), [(3600, 3600.0), (-90, -90.0)])
async def test_the_servers_clock_is_measured_from_its_date_header(
    ahead: int, expected: float
) -> None:
    date = email.utils.formatdate(time.time() + ahead, usegmt=True)
    answer = reply(200, {"results": [{"id": "j1", "status": "FAILED"}], "count": 1})
    dated = dataclasses.replace(answer, headers={**answer.headers, "Date": date})
    drs = client(FakeTransport(dated))
    assert drs.clock_skew_s is None
    [detail] = await drs.batch_detail(["j1"])
    assert detail.clock_skew_s is not None
    assert abs(detail.clock_skew_s - expected) < 2  # the header's one-second resolution


async def test_a_date_header_that_is_no_date_leaves_the_skew_unknown() -> None:
    answer = reply(200, {"results": [{"id": "j1", "status": "FAILED"}], "count": 1})
    bad = dataclasses.replace(answer, headers={**answer.headers, "Date": "yesterday-ish"})
    [detail] = await client(FakeTransport(bad)).batch_detail(["j1"])
    assert detail.clock_skew_s is None
