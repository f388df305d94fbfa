"""The DRS v3 client: one method per endpoint, every request through ``DrsClient._post``.

The client turns calls into JSON requests and answers into wire types (``engine.api.types``).
It pages, chunks, renews an expired token and, through ``engine.api.resilience``, retries
transient failures: ``replayable`` on ``_post`` says which requests may be re-sent when their
outcome is unknown (reads may; batch-retry/pause only after the service refused them). It does
not rate-limit: wrap the transport in ``ratelimit.RateLimitedTransport`` for that. Errors:

    DrsApiError      a non-2xx answer (or a 2xx one of the wrong shape: ``INVALID_RESPONSE``),
                     after any retries the request was allowed
    AuthError        the credentials were rejected and could not be renewed
    TransportError   no answer; for batch-retry/pause the outcome is unknown (reconcile by status)
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from engine.api.auth import Auth
from engine.api.bounds import MAX_LIST_PAGES
from engine.api.progress import ProgressResult
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse, Transport, error_fields, json_body
from engine.api.types import (
    ERR_TOKEN_EXPIRED,
    ERR_TOKEN_INVALID,
    MAX_IDS_PER_BATCH_DETAIL,
    MAX_IDS_PER_BATCH_STATUS,
    MAX_INSTANCE_IDS,
    MAX_JOBS_PER_ACTION,
    MAX_PER_PAGE,
    BatchActionResult,
    JobInfo,
    JobListing,
    Language,
    RetryItem,
    StatusResult,
    wire_epoch,
)
from engine.errors import AuthError, DrsApiError, first_leaf
from engine.redact import redact, redact_word

if TYPE_CHECKING:
    from engine.telemetry import Telemetry

logger = logging.getLogger(__name__)

INVALID_RESPONSE = "INVALID_RESPONSE"
# The requests that change jobs (the only ones not replayed when their outcome is unknown):
# what a run's stop holds back (engine.run.stop.StopGate).
RETRY_PATH = "/jobs/batch-retry-task"
PAUSE_PATH = "/jobs/batch-pause-task"
MUTATING_PATHS = (RETRY_PATH, PAUSE_PATH)
_RENEWABLE_CODES = frozenset({ERR_TOKEN_INVALID, ERR_TOKEN_EXPIRED})
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDetail:
    """The fields of one ``batch-detail`` result (``QueryJobResp``) the engine reports on.

    Note ``error_message`` here (as in batch-status), where batch-retry results say ``error_msg``.
    """

    id: str
    status: str
    name: str | None = None
    failed_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    parent_id: str | None = None
    # When the job last changed, in epoch seconds of the server's clock; None when the answer
    # has no update_time, or one whose instant is not certain (no time zone: unverified).
    updated_at: float | None = None
    update_time: str | None = None  # as the service wrote it, for the report
    started_at: float | None = None  # actual_start_time, read the same way
    # The server's clock minus ours when the answer came (its Date header; 1 s resolution).
    clock_skew_s: float | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> JobDetail:
        def text(key: str) -> str | None:  # all free texts of the server's: redacted
            value = raw.get(key)
            return None if value is None else redact(str(value))

        return cls(
            id=str(raw["id"]),
            status=redact_word(str(raw.get("status") or "")),
            name=text("name"),
            failed_reason=text("failed_reason"),
            error_code=text("error_code"),
            error_message=text("error_message"),
            parent_id=text("parent_id") or None,
            updated_at=wire_epoch(raw.get("update_time")),
            update_time=text("update_time"),
            started_at=wire_epoch(raw.get("actual_start_time")),
        )


_R = TypeVar("_R", StatusResult, JobDetail)


class DrsClient:
    """DRS v3 calls for one project in one region.

    ``resilience`` is the retry loop (and its counters); pass one object to every client of a run
    to count retries and throttled answers across all of them. ``telemetry``: a span for every
    request sent (``engine.telemetry``); None, as by default, costs one check per request.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        endpoint: str,
        project_id: str,
        auth: Auth,
        language: Language = Language.EN_US,
        resilience: Resilience | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.project_id = project_id
        self.endpoint = endpoint.rstrip("/")
        self.resilience = resilience or Resilience()
        self._transport = transport
        self._auth = auth
        self._language = language
        self._telemetry = telemetry
        # The Date header of the latest answer that had one, and our clock when it came: read
        # into a skew only when asked (rarely: to reconcile), not for every answer.
        self._dated: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"DrsClient(endpoint={self.endpoint!r}, project_id={self.project_id!r})"

    async def list_jobs(
        self,
        *,
        db_use_type: str,
        engine_type: str | None = None,
        status: str | None = None,
        name: str | None = None,
        net_type: str | None = None,
        statuses: Collection[str] | None = None,
        tags: Mapping[str, str] | None = None,
        enterprise_project_id: str | None = None,
        instance_ids: Sequence[str] | None = None,
    ) -> JobListing:
        """Every job matching the filters, all pages fetched, each job once.

        ``engine_type``, ``status``, ``name``, ``net_type``, ``tags`` (key -> value, as the
        SDK's ``QueryJobsReq`` has it), ``enterprise_project_id`` and ``instance_ids`` (at
        most 10) are the API's own filters, sent only when given: the service applies them,
        and the answer does not carry tags, project or instance ids to check them by.

        ``statuses`` is applied here, to each page before it is parsed: the API filters on one
        ``status`` per call, and a large fleet lists many healthy jobs a runbook never looks at.
        A dual-active parent is kept when it or one of its children has one of them.

        ``total_record`` is not trusted either way: paging goes on while pages are full (a
        count too low must not hide jobs) and stops at the first short page (a count too high
        must not page for ever). It is an ``INVALID_RESPONSE`` error when a full page brings no
        job not seen before (the service pages in circles), when the jobs listed exceed the
        count by more than a page, or past ``MAX_LIST_PAGES``. The listing says how the count
        and the jobs seen compare, for the report.
        """
        if instance_ids is not None and not 1 <= len(instance_ids) <= MAX_INSTANCE_IDS:
            raise ValueError(
                f"instance_ids takes 1 to {MAX_INSTANCE_IDS} ids, got {len(instance_ids)}"
            )
        optional: dict[str, object] = {
            "engine_type": engine_type,
            "status": status,
            "name": name,
            "net_type": net_type,
            "tags": dict(tags) if tags else None,
            "enterprise_project_id": enterprise_project_id,
            "instance_ids": list(instance_ids) if instance_ids is not None else None,
        }
        filters = {key: value for key, value in optional.items() if value is not None}
        engines: set[str] = set()
        jobs: dict[str, JobInfo] = {}
        seen: set[str] = set()
        for page in range(1, MAX_LIST_PAGES + 1):
            payload = {"cur_page": page, "per_page": MAX_PER_PAGE, "db_use_type": db_use_type}
            answer = await self._post("list jobs", "/jobs", payload | filters, replayable=True)
            listed = answer.entries("jobs")
            before = len(seen)
            seen.update(answer.ids("jobs", listed))
            engines.update(answer.engine_types(listed))
            wanted = listed if statuses is None else answer.kept("jobs", listed, statuses)
            for job in answer.parsed("jobs", wanted, JobInfo.from_wire):
                jobs.setdefault(job.id, job)  # a job created while paging can shift into view twice
            total = answer.count("total_record")
            if len(listed) < MAX_PER_PAGE:
                return JobListing(
                    jobs=list(jobs.values()),
                    listed=len(seen),
                    total_record=total,
                    engine_types=frozenset(engines),
                )
            if len(seen) == before:
                raise answer.invalid(
                    f"page {page} lists only jobs of earlier pages: the service is paging in "
                    f"circles ({len(seen)} distinct jobs so far, total_record {total})"
                )
            if total is not None and len(seen) > total + MAX_PER_PAGE:
                raise answer.invalid(
                    f"{len(seen)} distinct jobs listed in {page} full pages, but total_record "
                    f"says {total}: the listing does not end where the service says it does"
                )
        raise answer.invalid(f"still full pages after {MAX_LIST_PAGES}: the listing never ends")

    async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
        """The status of each distinct id, in input order; ids the service omits are left out."""
        ids = list(dict.fromkeys(job_ids))

        async def one(chunk: list[str]) -> dict[str, StatusResult]:
            path = "/jobs/batch-status"
            return await self._paged_chunk("batch-status", path, chunk, StatusResult)

        found = await _each_chunk(ids, MAX_IDS_PER_BATCH_STATUS, one)
        return [found[job_id] for job_id in ids if job_id in found]

    async def batch_progress(self, job_ids: Sequence[str]) -> list[ProgressResult]:
        """The replication progress and delay of each distinct id, in input order, one request
        per chunk of 100 (no limit is published: batch-status's); ids the service omits or
        did not ask about are left out."""
        ids = list(dict.fromkeys(job_ids))
        asked = set(ids)

        async def one(chunk: list[str]) -> dict[str, ProgressResult]:
            answer = await self._post(
                "batch-progress", "/jobs/batch-progress", {"jobs": chunk}, replayable=True
            )
            results = answer.items("results", ProgressResult.from_wire)
            return {r.job_id: r for r in results if r.job_id in asked}

        found = await _each_chunk(ids, MAX_IDS_PER_BATCH_STATUS, one)
        return [found[job_id] for job_id in ids if job_id in found]

    async def batch_detail(self, job_ids: Sequence[str]) -> list[JobDetail]:
        """Details of each distinct id (failure reason, parent), in input order, 10 ids a call."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, JobDetail] = {}
        for chunk in chunks(ids, MAX_IDS_PER_BATCH_DETAIL):
            found.update(
                await self._paged_chunk("batch-detail", "/jobs/batch-detail", chunk, JobDetail)
            )
        skew = self.clock_skew_s
        return [dataclasses.replace(found[i], clock_skew_s=skew) for i in ids if i in found]

    async def batch_retry(self, jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        """Retry failed / resume paused jobs in ONE request; per-job failures are results.

        Not idempotent: re-sent only after the service refused it (429, DRS.M01503, DRS.M01504);
        after a 5xx (``DrsApiError``) or a ``TransportError`` the outcome is unknown.
        """
        _check_action_batch([j.job_id for j in jobs], "batch_retry")
        payload = {"jobs": [j.to_wire() for j in jobs]}
        return await self._action("batch-retry", RETRY_PATH, payload)

    async def batch_pause(
        self, job_ids: Sequence[str], *, pause_mode: str
    ) -> list[BatchActionResult]:
        """Pause jobs in ONE request (``pause_mode`` target or all, mandatory: OTC drs_03_0133,
        the SDK's ``PauseInfo``); same rules as ``batch_retry``."""
        _check_action_batch(job_ids, "batch_pause")
        if not pause_mode:
            raise ValueError("batch_pause needs a pause_mode: the API refuses a pause without it")
        payload = {"jobs": [{"job_id": job_id, "pause_mode": pause_mode} for job_id in job_ids]}
        return await self._action("batch-pause", PAUSE_PATH, payload)

    async def _paged_chunk(
        self, operation: str, path: str, chunk: list[str], result: type[_R]
    ) -> dict[str, _R]:
        """One chunk of ids through batch-status or batch-detail (``BatchQueryJobReqPage``)."""
        # page_req.per_page defaults to 5 on the server: always say how many we want.
        found: dict[str, _R] = {}
        for page in range(1, len(chunk) + 1):
            payload = {"jobs": chunk, "page_req": {"cur_page": page, "per_page": len(chunk)}}
            answer = await self._post(operation, path, payload, replayable=True)
            results = answer.items("results", result.from_wire)
            found.update((r.id, r) for r in results)
            count = answer.count("count")
            if not results or count is None or len(found) >= min(count, len(chunk)):
                break
        return found

    async def _action(
        self, operation: str, path: str, payload: dict[str, Any]
    ) -> list[BatchActionResult]:
        answer = await self._post(operation, path, payload, replayable=False)
        return answer.items("results", BatchActionResult.from_wire)

    async def _post(
        self, operation: str, path: str, payload: Mapping[str, Any], *, replayable: bool
    ) -> _Answer:
        """Send one POST and return its 2xx JSON object, or raise; the one path of every request.

        ``replayable`` marks requests that may be re-sent when their outcome is unknown (reads);
        ``self.resilience`` decides what to retry. A 401 token-expired answer is replayed once
        for every request: the gateway refused it, so nothing was applied.
        """
        url = f"{self.endpoint}/v3/{self.project_id}{path}"
        body = orjson.dumps(payload)

        async def send() -> HttpResponse:
            return await self._send(url, path, body, replayable=replayable)

        telemetry = self._telemetry
        sender = send if telemetry is None else _traced(send, telemetry, operation, path)
        response = await self.resilience.call(operation, sender, replayable=replayable)
        if _token_expired(response) and await self._auth.refresh():
            response = await self.resilience.call(operation, sender, replayable=replayable)
        if response.status == 401:
            raise AuthError(_describe(operation, response) + " (credentials rejected)")
        if not response.ok:
            raise _api_error(operation, response)
        if date := response.header("Date"):
            self._dated = (date, time.time())
        return _answer(operation, response)

    @property
    def clock_skew_s(self) -> float | None:
        """The server's clock minus ours, by its latest ``Date`` header; None without one."""
        return None if self._dated is None else _skew_s(*self._dated)

    async def _send(self, url: str, path: str, body: bytes, *, replayable: bool) -> HttpResponse:
        """One attempt: authenticate (sign) the request as it is now, then send it."""
        headers = {"Content-Type": "application/json", "X-Language": self._language.value}
        unsigned = HttpRequest(method="POST", url=url, headers=headers, body=body)
        signed = headers | await self._auth.auth_headers(unsigned)
        response = await self._transport.send(
            HttpRequest(method="POST", url=url, headers=signed, body=body)
        )
        if logger.isEnabledFor(logging.DEBUG):  # the request id is a search of the headers
            request_id = response.request_id
            logger.debug(
                "POST %s -> %d (request id %s, replayable=%s)",
                url,
                response.status,
                request_id,
                replayable,
                extra={
                    "request_id": request_id,
                    "route": "POST " + _ROUTE_PREFIX + path,
                    "status": response.status,
                },
            )
        return response


def is_mutating(url: str) -> bool:
    """Whether a request to ``url`` changes jobs (batch-retry-task, batch-pause-task)."""
    return url.partition("?")[0].endswith(MUTATING_PATHS)


def _traced(
    send: Callable[[], Awaitable[HttpResponse]], telemetry: Telemetry, operation: str, path: str
) -> Callable[[], Awaitable[HttpResponse]]:
    """``send``, each attempt in a span of its own that says which attempt it is."""
    sends = 0

    async def traced() -> HttpResponse:
        nonlocal sends
        sends += 1
        return await telemetry.api_call(
            operation=operation,
            method="POST",
            route=_ROUTE_PREFIX + path,
            resend_count=sends - 1,
            send=send,
        )

    return traced


# Every DRS path is under the project: a route names it as a template (no id, no query).
_ROUTE_PREFIX = "/v3/{project_id}"


def _skew_s(date: str, received: float) -> float | None:
    """The server's clock minus ours, from a ``Date`` header received at ``received``; None
    when it is no date."""
    try:
        server = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if server.tzinfo is None:
        return None
    return server.timestamp() - received


def _token_expired(response: HttpResponse) -> bool:
    return response.status == 401 and error_fields(response)[0] in _RENEWABLE_CODES


def _check_action_batch(job_ids: Sequence[str], method: str) -> None:
    if not job_ids or len(job_ids) > MAX_JOBS_PER_ACTION:
        raise ValueError(f"{method} takes 1 to {MAX_JOBS_PER_ACTION} jobs, got {len(job_ids)}")
    if len(set(job_ids)) != len(job_ids):
        raise ValueError(f"{method} got the same job id twice: the call is not idempotent")


async def _each_chunk(
    ids: list[str], size: int, one: Callable[[list[str]], Coroutine[Any, Any, dict[str, _T]]]
) -> dict[str, _T]:
    """``one(chunk)`` for every chunk of ``ids``, all sent together (the run's limiter decides
    how many are in flight at once), their results merged; the first failure is raised."""
    parts = list(chunks(ids, size))
    if len(parts) <= 1:
        return await one(parts[0]) if parts else {}
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(chunk)) for chunk in parts]
    except ExceptionGroup as failed:
        raise first_leaf(failed) from None  # one error, as a single request would give
    found: dict[str, _T] = {}
    for task in tasks:
        found.update(task.result())
    return found


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of at most ``size``, in order: the one way ids are split into
    requests (batch-status, batch-detail, the name filter, the mutating batches)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _describe(operation: str, response: HttpResponse) -> str:
    code, message = error_fields(response)
    rid = f", request id {response.request_id}" if response.request_id else ""
    return f"{operation}: HTTP {response.status} {code}: {message}{rid}"


def _api_error(operation: str, response: HttpResponse) -> DrsApiError:
    code, message = error_fields(response)
    return DrsApiError(
        http_status=response.status,
        error_code=code,
        error_msg=message,
        request_id=response.request_id,
        operation=operation,
    )


@dataclass(frozen=True, slots=True)
class _Answer:
    """The JSON object of a 2xx answer, with what an ``INVALID_RESPONSE`` error must name."""

    operation: str
    response: HttpResponse
    body: dict[str, Any]

    def items(self, key: str, parse: Callable[[Mapping[str, Any]], _T]) -> list[_T]:
        return self.parsed(key, self.entries(key), parse)

    def entries(self, key: str) -> list[Any]:
        raw = self.body.get(key)
        if not isinstance(raw, list):
            raise self.invalid(f"expected a list in {key!r}, got {type(raw).__name__}")
        return raw

    def parsed(
        self, key: str, raw: list[Any], parse: Callable[[Mapping[str, Any]], _T]
    ) -> list[_T]:
        try:
            return [parse(item) for item in raw]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.invalid(f"malformed entry in {key!r}: {exc!r}") from exc

    def kept(self, key: str, raw: list[Any], statuses: Collection[str]) -> list[Any]:
        """The jobs of ``raw`` that have one of ``statuses``, or a child that has one."""
        try:
            return [
                job
                for job in raw
                if job.get("status") in statuses
                or (
                    (children := job.get("children"))  # most jobs have none: no any() for them
                    and any(child.get("status") in statuses for child in children)
                )
            ]
        except (TypeError, AttributeError) as exc:
            raise self.invalid(f"malformed entry in {key!r}: {exc!r}") from exc

    def ids(self, key: str, raw: list[Any]) -> list[str]:
        """The ``id`` of every entry of ``raw``, which must be an object with a text id."""
        try:
            found = [entry["id"] for entry in raw]
        except (KeyError, TypeError) as exc:
            raise self.invalid(f"malformed entry in {key!r}: {exc!r}") from exc
        if not all(isinstance(i, str) and i for i in found):
            raise self.invalid(f"an entry in {key!r} has no text id")
        return found

    def engine_types(self, raw: list[Any]) -> set[str]:
        """The engine types the entries of ``raw`` (checked objects: see ``ids``) name."""
        return {e for job in raw if isinstance(e := job.get("engine_type"), str) and e}

    def count(self, key: str) -> int | None:
        raw = self.body.get(key)
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise self.invalid(f"expected an integer {key!r}, got {redact(repr(raw))[:40]}")
        return raw

    def invalid(self, problem: str) -> DrsApiError:
        return DrsApiError(
            http_status=self.response.status,
            error_code=INVALID_RESPONSE,
            error_msg=problem,
            request_id=self.response.request_id,
            operation=self.operation,
        )


def _answer(operation: str, response: HttpResponse) -> _Answer:
    try:
        raw = json_body(response.body)
    except ValueError:
        raw = None
    answer = _Answer(operation, response, raw if isinstance(raw, dict) else {})
    if not isinstance(raw, dict):
        raise answer.invalid("expected a JSON object in the answer body")
    if raw.get("error_code"):
        # DRS.M01504 ("another operation is running") arrives as a 202 with an error body.
        raise _api_error(operation, response)
    return answer
