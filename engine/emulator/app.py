"""The emulator's HTTP face: DRS v3 and IAM token routes on aiohttp.web, served on loopback.

One app answers both as the DRS endpoint and as the IAM endpoint. Every answer carries a fresh
``X-Request-Id``. DRS errors have the body ``{"error_code", "error_msg"}``; ``X-Language: zh-cn``
switches ``error_msg`` of DRS codes to Chinese (gateway ``APIGW.*`` messages stay English, as the
gateway does not localise).

IAM (``POST /v3/auth/tokens``) answers errors in the Keystone shape that IAM itself uses,
``{"error": {"code": 401, "message": "...", "title": "Unauthorized"}}`` (400 for a malformed
body), not the DRS shape: a client must cope with both.

A DRS request goes through, in this order:

1. injected faults (``faults``): latency, then a connection reset (nothing processed), then a 500
   ``DRS.M00004`` (nothing processed), then a slow answer;
2. the gateway: credentials, either ``X-Auth-Token`` (401 ``APIGW.0301``; ``APIGW.0307`` once the
   token is older than ``token_ttl_s``) or an AK/SK signature (401 ``APIGW.0303``, see
   ``signing``), then throttling per user per route (429 ``APIGW.0308`` with ``Retry-After``),
   then ``X-Project-Id`` if sent and the path's project id (403 ``DRS.M00261``) and the token's
   scope (403 ``DRS.M00102``);
3. the service: ``Content-Type`` (400 ``DRS.M00200``), the body, the operation;
4. a lost response (injected): the operation is applied, then the connection is closed unanswered.

IAM ``POST /v3/auth/tokens`` gets only latency and injected 500s (in the IAM error shape). Every
credential belongs to the one demo user, so the throttle counts all of them together, per route,
as the gateway counts per user per API.

``GET /_emulator/stats`` and ``GET /_emulator/jobs`` are read-only, need no token and never see a
fault; they are not part of DRS. In the stats, ``requests`` counts every arrival by route (faulted
ones too); ``mutating_requests`` counts batch-retry-task and batch-pause-task arrivals that were
not dropped by an injected reset; ``retry_requests_per_job`` / ``pause_requests_per_job`` count
the job ids of requests that reached the service (not reset, not failed with an injected 500, not
throttled, credentials and body accepted); ``throttled`` counts 429s; ``faults`` counts each
injected fault; ``peak_rate_per_s`` is, per route, the most requests admitted by the throttle in
any one-second window of the fleet clock, ``peak_rate_per_s_all`` the same over every route.
``responses_by_code`` counts every DRS/APIGW error code the emulator emitted, whether as a
whole-request error body or inside a per-job result; IAM rejections are not counted there (they
carry no error code).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from aiohttp import web

from engine.api.types import (
    ACTION_PAUSE,
    ACTION_RETRY,
    ERR_API_NOT_FOUND,
    ERR_INVALID_PROJECT,
    ERR_NO_PERMISSION,
    ERR_ONLY_SUBTASKS,
    ERR_PARAMETER,
    ERR_PARAMETER_EMPTY,
    ERR_PARAMETER_INVALID,
    ERR_SERVICE_ABNORMAL,
    ERR_SIGNATURE_INVALID,
    ERR_STATUS_FORBIDS,
    ERR_TASK_NOT_QUERYABLE,
    ERR_THROTTLED,
    ERR_TOKEN_EXPIRED,
    ERR_TOKEN_INVALID,
    FAILED_STATUSES,
    MAX_IDS_PER_BATCH_STATUS,
    MAX_IDS_PER_NAME_FILTER,
    MAX_PER_PAGE,
    BatchActionResult,
    BatchOutcome,
    DbUseType,
    ErrorBody,
    Language,
    StatusResult,
)
from engine.emulator.faults import FAULT_KINDS, NO_FAULTS, FaultInjector, FaultRoll
from engine.emulator.signing import AkSkVerifier, SignatureError, SignedRequest, is_signed
from engine.emulator.state import (
    ActionVerdict,
    Clock,
    EmulatorConfig,
    Fleet,
    Job,
    RetryVerdict,
    job_info,
)
from engine.emulator.throttle import RateMeter, Throttle

logger = logging.getLogger(__name__)

BATCH_STATUS_DEFAULT_PER_PAGE = 5  # the real service's default, a trap for callers that omit it
ROUTE_LIST = "/v3/{project_id}/jobs"
ROUTE_BATCH_STATUS = "/v3/{project_id}/jobs/batch-status"
ROUTE_BATCH_RETRY = "/v3/{project_id}/jobs/batch-retry-task"
ROUTE_BATCH_PAUSE = "/v3/{project_id}/jobs/batch-pause-task"
ROUTE_BATCH_DETAIL = "/v3/{project_id}/jobs/batch-detail"
ROUTE_TOKENS = "/v3/auth/tokens"
UNKNOWN_ROUTE = "(unknown route)"
DRS_ROUTES = frozenset(
    f"POST {r}"
    for r in (
        ROUTE_LIST,
        ROUTE_BATCH_STATUS,
        ROUTE_BATCH_RETRY,
        ROUTE_BATCH_PAUSE,
        ROUTE_BATCH_DETAIL,
    )
)
IAM_ROUTE = f"POST {ROUTE_TOKENS}"
MUTATING_ROUTES = frozenset({f"POST {ROUTE_BATCH_RETRY}", f"POST {ROUTE_BATCH_PAUSE}"})
PAUSE_MODES = ("target", "all")

# error_code -> (en-us, zh-cn)
_MESSAGES: dict[str, tuple[str, str]] = {
    ERR_PARAMETER: ("Parameter error", "参数错误"),
    ERR_PARAMETER_EMPTY: ("Parameter is empty", "参数为空"),
    ERR_PARAMETER_INVALID: ("Invalid parameter", "参数无效"),
    ERR_TASK_NOT_QUERYABLE: ("Task information cannot be queried", "查询不到任务信息"),
    ERR_STATUS_FORBIDS: (
        "The task status does not allow this operation",
        "任务状态不允许执行此操作",
    ),
    ERR_ONLY_SUBTASKS: ("Only subtasks can invoke this interface", "只有子任务可以调用此接口"),
    ERR_NO_PERMISSION: ("No permission to perform this operation", "没有权限执行此操作"),
    ERR_INVALID_PROJECT: ("Invalid project ID", "项目ID无效"),
    ERR_SERVICE_ABNORMAL: ("Service abnormal", "服务异常"),
}
_GATEWAY_MESSAGES: dict[str, str] = {
    ERR_TOKEN_INVALID: "Incorrect IAM authentication information: decrypt token fail",
    ERR_TOKEN_EXPIRED: "The token must be updated",
    ERR_SIGNATURE_INVALID: "Incorrect IAM authentication information: verify aksk signature fail",
    ERR_API_NOT_FOUND: "The API does not exist or has not been published in the environment",
}


def error_message(code: str, language: Language, detail: str | None = None) -> str:
    """The ``error_msg`` for a code in a language; ``detail`` (English) names what was wrong."""
    if code in _MESSAGES:
        en, zh = _MESSAGES[code]
        text = zh if language is Language.ZH_CN else en
    else:
        text = _GATEWAY_MESSAGES.get(code, code)
    return f"{text}: {detail}" if detail else text


class RequestRejectedError(Exception):
    """The whole request is refused with an error body; the middleware renders it.

    ``message`` replaces the usual ``error_msg`` (text + detail) when the wording is fixed, as
    the gateway's throttling message is.
    """

    def __init__(
        self,
        http_status: int,
        error_code: str,
        detail: str | None = None,
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.detail = detail
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{http_status} {error_code}: {message or detail or ''}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """An issued token; ``project_id`` None means valid for every project."""

    value: str
    project_id: str | None
    issued_at: float  # on the fleet clock
    expires: bool  # False: never expires (the pre-issued token, by default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who a DRS request is from, once its credentials are accepted."""

    identity: str  # the throttle's "user"
    project_id: str | None  # the credential's scope; None: every project


class TokenStore:
    """Tokens issued by this emulator; a token expires ``ttl_s`` after it was issued."""

    def __init__(self, clock: Clock, *, ttl_s: float) -> None:
        self._clock = clock
        self.ttl_s = ttl_s
        self._tokens: dict[str, Token] = {}

    def issue(self, project_id: str | None, *, expires: bool = True) -> Token:
        token = Token(
            value="MIIemu" + secrets.token_urlsafe(48),
            project_id=project_id,
            issued_at=self._clock(),
            expires=expires,
        )
        self._tokens[token.value] = token
        return token

    def authenticate(self, value: str | None) -> Token:
        """The token behind an ``X-Auth-Token`` value, or the gateway's 401."""
        if not value:
            raise RequestRejectedError(401, ERR_TOKEN_INVALID, "x-auth-token not found")
        token = self._tokens.get(value)
        if token is None:
            raise RequestRejectedError(401, ERR_TOKEN_INVALID)
        if token.expires and self._clock() - token.issued_at >= self.ttl_s:
            raise RequestRejectedError(401, ERR_TOKEN_EXPIRED)
        return token


class RequestStats:
    """What the emulator has seen, for ``GET /_emulator/stats`` (see the module docstring)."""

    def __init__(self, meter: RateMeter) -> None:
        self.requests: Counter[str] = Counter()
        self.mutating_requests = 0
        self.retry_requests_per_job: Counter[str] = Counter()
        self.pause_requests_per_job: Counter[str] = Counter()
        self.throttled = 0
        self.faults: Counter[str] = Counter()
        self.responses_by_code: Counter[str] = Counter()
        self.meter = meter

    def to_wire(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "mutating_requests": self.mutating_requests,
            "retry_requests_per_job": dict(self.retry_requests_per_job),
            "pause_requests_per_job": dict(self.pause_requests_per_job),
            "throttled": self.throttled,
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
            "peak_rate_per_s": dict(self.meter.peak),
            "peak_rate_per_s_all": self.meter.peak_all,
            "responses_by_code": dict(self.responses_by_code),
        }


@dataclass(slots=True, kw_only=True)
class Gateway:
    """The gateway's moving parts: fault draws, AK/SK verification, throttling."""

    faults: FaultInjector
    verifier: AkSkVerifier
    throttle: Throttle | None


FLEET = web.AppKey("fleet", Fleet)
TOKENS = web.AppKey("tokens", TokenStore)
STATS = web.AppKey("stats", RequestStats)
GATEWAY = web.AppKey("gateway", Gateway)
WALL_CLOCK: web.AppKey[Clock] = web.AppKey("wall_clock")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _language(request: web.Request) -> Language:
    wanted = request.headers.get("X-Language", "").strip().lower()
    return Language.ZH_CN if wanted == Language.ZH_CN.value else Language.EN_US


def _route_key(request: web.Request) -> str:
    match = request.match_info
    if match.http_exception is not None:
        return f"{request.method} {UNKNOWN_ROUTE}"
    return f"{request.method} {match.route.resource.canonical if match.route.resource else ''}"


def _error_response(
    request: web.Request,
    status: int,
    code: str,
    detail: str | None,
    *,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    request.app[STATS].responses_by_code[code] += 1
    text = message or error_message(code, _language(request), detail)
    body = ErrorBody(error_code=code, error_msg=text)
    return web.json_response(body.to_wire(), status=status, headers=headers)


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection without an answer; the client sees a server disconnect.

    aiohttp then fails to write the returned (dummy) response and lets it go quietly.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def _apply_faults_before(
    request: web.Request, key: str, roll: FaultRoll
) -> web.StreamResponse | None:
    """Latency, reset, injected 500 and slowness, in that order; a response ends the request."""
    stats, faults = request.app[STATS], request.app[GATEWAY].faults.config
    if roll.latency:
        stats.faults["latency"] += 1
        await asyncio.sleep(faults.latency_s)
    if key == IAM_ROUTE:
        if roll.error:
            stats.faults["error"] += 1
            return _iam_error(
                500, "Internal Server Error", "The service is temporarily unavailable."
            )
        return None
    if roll.reset:
        stats.faults["reset"] += 1
        return _drop_connection(request)
    if roll.error:
        stats.faults["error"] += 1
        return _error_response(request, 500, ERR_SERVICE_ABNORMAL, None)
    if roll.slow:
        stats.faults["slow"] += 1
        await asyncio.sleep(faults.slow_s)
    return None


@web.middleware
async def _gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, inject faults, render rejections and unknown routes, stamp ``X-Request-Id``."""
    stats = request.app[STATS]
    faults = request.app[GATEWAY].faults.config
    key = _route_key(request)
    stats.requests[key] += 1
    faultable = key in DRS_ROUTES or key == IAM_ROUTE
    roll = request.app[GATEWAY].faults.roll() if faultable else NO_FAULTS
    response: web.StreamResponse | None = await _apply_faults_before(request, key, roll)
    if key in MUTATING_ROUTES and not (roll.reset and key in DRS_ROUTES):
        stats.mutating_requests += 1
    if response is None:
        try:
            response = await handler(request)
        except RequestRejectedError as exc:
            response = _error_response(
                request,
                exc.http_status,
                exc.error_code,
                exc.detail,
                message=exc.message,
                headers=exc.headers,
            )
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            response = _error_response(request, 404, ERR_API_NOT_FOUND, None)
        if roll.lost_response and key in DRS_ROUTES:
            stats.faults["lost_response"] += 1
            response = _drop_connection(request)
        elif key in MUTATING_ROUTES and faults.answer_delay_s > 0:
            stats.faults["answer_delay"] += 1
            await asyncio.sleep(faults.answer_delay_s)  # applied already; the answer waits
    response.headers["X-Request-Id"] = uuid.uuid4().hex
    return response


# --------------------------------------------------------------------------- request parsing


def _is_project_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


async def _authenticate(request: web.Request) -> Caller:
    """The caller behind an AK/SK signature or an ``X-Auth-Token``, or the gateway's 401."""
    fleet = request.app[FLEET]
    if is_signed(request.headers.get("Authorization")):
        signed = SignedRequest(
            method=request.method,
            raw_path=request.raw_path,
            headers=request.headers,
            body=await request.read(),
        )
        try:
            request.app[GATEWAY].verifier.verify(signed)
        except SignatureError as exc:
            raise RequestRejectedError(401, ERR_SIGNATURE_INVALID, exc.reason) from None
        return Caller(identity=fleet.config.user, project_id=None)
    token = request.app[TOKENS].authenticate(request.headers.get("X-Auth-Token"))
    return Caller(identity=fleet.config.user, project_id=token.project_id)


def _throttle(request: web.Request, caller: Caller) -> None:
    """429 ``APIGW.0308`` beyond the rate limit; an admitted request is measured."""
    gateway, stats = request.app[GATEWAY], request.app[STATS]
    key = _route_key(request)
    throttle = gateway.throttle
    if throttle is not None and not throttle.admit(caller.identity, key):
        stats.throttled += 1
        window = f"{throttle.window_s:g}"
        raise RequestRejectedError(
            429,
            ERR_THROTTLED,
            message="The throttling threshold has been reached: policy user over ratelimit, "
            f"limit:{throttle.limit}, time:{window} second",
            headers={"Retry-After": str(throttle.retry_after_s)},
        )
    stats.meter.record(key)


async def _drs_body(request: web.Request) -> tuple[str, dict[str, Any]]:
    """Gateway and service checks common to every DRS route; returns (project_id, JSON body)."""
    project_id = request.match_info["project_id"]
    caller = await _authenticate(request)
    _throttle(request, caller)
    header_project = request.headers.get("X-Project-Id")
    if header_project is not None and header_project.strip() != project_id:
        raise RequestRejectedError(
            403, ERR_INVALID_PROJECT, f"X-Project-Id {header_project!r} is not the path's project"
        )
    if not _is_project_id(project_id) or not request.app[FLEET].has_project(project_id):
        raise RequestRejectedError(403, ERR_INVALID_PROJECT, f"project_id {project_id!r}")
    if caller.project_id not in (None, project_id):
        raise RequestRejectedError(403, ERR_NO_PERMISSION, "the token is scoped to another project")
    if request.content_type != "application/json":
        raise RequestRejectedError(
            400, ERR_PARAMETER, f"Content-Type must be application/json, got {request.content_type}"
        )
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError as exc:
        raise RequestRejectedError(400, ERR_PARAMETER, "the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise RequestRejectedError(400, ERR_PARAMETER, "the body must be a JSON object")
    return project_id, body


def _int_field(
    body: Mapping[str, Any], key: str, *, default: int | None, low: int, high: int
) -> int:
    value = body.get(key, default)
    if value is None:
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestRejectedError(
            400, ERR_PARAMETER_INVALID, f"{key} must be an integer in {low}..{high}, got {value!r}"
        )
    return value


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, f"{key} must be a string")
    return value


def _page(items: list[Any], cur_page: int, per_page: int) -> list[Any]:
    if per_page == 0:
        return items
    start = (cur_page - 1) * per_page
    return items[start : start + per_page]


# --------------------------------------------------------------------------- DRS routes


def _name_matches(job: Job, name: str) -> bool:
    if "," in name:
        return job.id in {part.strip() for part in name.split(",")}
    return name in job.name or name == job.id


async def list_jobs(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs``: filter the project's top-level jobs, one page."""
    project_id, body = await _drs_body(request)
    db_use_type = body.get("db_use_type")
    if db_use_type in (None, ""):
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "db_use_type is required")
    if db_use_type not in {u.value for u in DbUseType}:
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, f"db_use_type {db_use_type!r}")
    cur_page = _int_field(body, "cur_page", default=None, low=1, high=1_000_000)
    per_page = _int_field(body, "per_page", default=None, low=0, high=MAX_PER_PAGE)
    engine_type = _optional_str(body, "engine_type")
    name = _optional_str(body, "name")
    status = _optional_str(body, "status")
    net_type = _optional_str(body, "net_type")
    if name and len(name.split(",")) > MAX_IDS_PER_NAME_FILTER:
        raise RequestRejectedError(
            400, ERR_PARAMETER_INVALID, f"name takes at most {MAX_IDS_PER_NAME_FILTER} ids"
        )
    selected = [
        job_info(job)
        for job in request.app[FLEET].top_level_jobs(project_id)
        if job.db_use_type == db_use_type
        and (engine_type is None or job.engine_type == engine_type)
        and (net_type is None or job.net_type == net_type)
        and (name is None or _name_matches(job, name))
        and (status is None or job.current_status() == status)
    ]
    page = _page(selected, cur_page, per_page)
    return web.json_response({"total_record": len(selected), "jobs": [j.to_wire() for j in page]})


def _id_list(body: Mapping[str, Any], *, limit: int | None) -> list[str]:
    ids = body.get("jobs")
    if not ids:
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "jobs is required")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "jobs must be a list of job ids")
    if limit is not None and len(ids) > limit:
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, f"jobs takes at most {limit} ids")
    return ids


def _page_req(body: Mapping[str, Any]) -> tuple[int, int]:
    """``page_req`` of batch-status / batch-detail: (cur_page, per_page), per_page default 5."""
    page_req = body.get("page_req") or {}
    if not isinstance(page_req, dict):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "page_req must be an object")
    cur_page = _int_field(page_req, "cur_page", default=1, low=1, high=1_000_000)
    per_page = _int_field(
        page_req, "per_page", default=BATCH_STATUS_DEFAULT_PER_PAGE, low=0, high=MAX_PER_PAGE
    )
    return cur_page, per_page


async def batch_status(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-status``: one page of the named jobs' statuses."""
    return await _paged_jobs(
        request, lambda job: StatusResult(id=job.id, status=job.current_status().value).to_wire()
    )


async def _paged_jobs(
    request: web.Request, describe: Callable[[Job], dict[str, Any]]
) -> web.Response:
    """batch-status and batch-detail: one page of the named jobs, an unknown id answered with
    DRS.K02000 in its entry; ``count`` is the number of ids asked for."""
    project_id, body = await _drs_body(request)
    ids = _id_list(body, limit=MAX_IDS_PER_BATCH_STATUS)
    cur_page, per_page = _page_req(body)
    fleet, stats, language = request.app[FLEET], request.app[STATS], _language(request)
    results: list[dict[str, Any]] = []
    for job_id in _page(ids, cur_page, per_page):
        job = fleet.find(project_id, job_id)
        if job is None:
            stats.responses_by_code[ERR_TASK_NOT_QUERYABLE] += 1
            message = error_message(ERR_TASK_NOT_QUERYABLE, language, f"job {job_id}")
            unknown = StatusResult(
                id=job_id, status="", error_code=ERR_TASK_NOT_QUERYABLE, error_message=message
            )
            results.append(unknown.to_wire())
        else:
            results.append(describe(job))
    return web.json_response({"results": results, "count": len(ids)})


_VERDICT_ERRORS = {
    RetryVerdict.UNKNOWN_JOB: ERR_TASK_NOT_QUERYABLE,
    RetryVerdict.DUAL_ACTIVE_PARENT: ERR_ONLY_SUBTASKS,
    RetryVerdict.STATUS_FORBIDS: ERR_STATUS_FORBIDS,
}


def _retry_job_ids(body: Mapping[str, Any]) -> list[str]:
    entries = body.get("jobs")
    if not entries:
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "jobs is required")
    if not isinstance(entries, list):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "jobs must be a list")
    ids: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("job_id"), str):
            raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "each job needs a job_id string")
        if not isinstance(entry.get("is_sync_re_edit", False), bool):
            raise RequestRejectedError(
                400, ERR_PARAMETER_INVALID, "is_sync_re_edit must be a boolean"
            )
        if not entry["job_id"]:
            raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "job_id is empty")
        ids.append(entry["job_id"])
    return ids


def _action_results(
    request: web.Request, project_id: str, ids: list[str], act: Callable[[str], ActionVerdict]
) -> list[dict[str, Any]]:
    """Per-job results of a batch action: ``success`` or ``failed`` with ``error_msg``."""
    stats, language = request.app[STATS], _language(request)
    results: list[dict[str, Any]] = []
    for job_id in ids:
        verdict = act(job_id)
        if verdict is ActionVerdict.ACCEPTED:
            result = BatchActionResult(id=job_id, status=BatchOutcome.SUCCESS)
        else:
            code = _VERDICT_ERRORS[verdict]
            stats.responses_by_code[code] += 1
            result = BatchActionResult(
                id=job_id,
                status=BatchOutcome.FAILED,
                error_code=code,
                error_msg=error_message(code, language, f"job {job_id}"),
            )
        results.append(result.to_wire())
    return results


def _refuse_parents(fleet: Fleet, project_id: str, ids: list[str], action: str) -> None:
    """With ``parent_refusal="request"``, a dual-active parent makes the whole request a 400."""
    if fleet.config.parent_refusal != "request":
        return
    parents = [
        i
        for i in ids
        if fleet.action_verdict(project_id, i, action) is ActionVerdict.DUAL_ACTIVE_PARENT
    ]
    if parents:
        raise RequestRejectedError(400, ERR_ONLY_SUBTASKS, f"job {parents[0]} is a parent task")


async def batch_retry_task(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-retry-task``: retry failed / resume paused jobs."""
    project_id, body = await _drs_body(request)
    ids = _retry_job_ids(body)
    fleet = request.app[FLEET]
    request.app[STATS].retry_requests_per_job.update(ids)
    _refuse_parents(fleet, project_id, ids, ACTION_RETRY)
    results = _action_results(request, project_id, ids, lambda i: fleet.retry(project_id, i))
    logger.debug("batch-retry-task %s: %s", project_id, results)
    return web.json_response({"results": results, "count": len(results)})


def _pause_job_ids(body: Mapping[str, Any]) -> list[str]:
    entries = body.get("jobs")
    if not entries:
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "jobs is required")
    if not isinstance(entries, list):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "jobs must be a list")
    ids: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("job_id"), str):
            raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "each job needs a job_id string")
        mode = entry.get("pause_mode")
        if mode is not None and mode not in PAUSE_MODES:
            raise RequestRejectedError(
                400, ERR_PARAMETER_INVALID, f"pause_mode must be target or all, got {mode!r}"
            )
        if not entry["job_id"]:
            raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "job_id is empty")
        ids.append(entry["job_id"])
    return ids


async def batch_pause_task(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-pause-task``: pause running jobs (they show PAUSING)."""
    project_id, body = await _drs_body(request)
    ids = _pause_job_ids(body)
    fleet = request.app[FLEET]
    request.app[STATS].pause_requests_per_job.update(ids)
    _refuse_parents(fleet, project_id, ids, ACTION_PAUSE)
    results = _action_results(request, project_id, ids, lambda i: fleet.pause(project_id, i))
    logger.debug("batch-pause-task %s: %s", project_id, results)
    return web.json_response({"results": results, "count": len(results)})


def _job_detail(job: Job) -> dict[str, Any]:
    """One ``batch-detail`` result (a small part of the real QueryJobResp)."""
    status = job.current_status()
    detail: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "status": status.value,
        "create_time": job.create_time,
        "engine_type": job.engine_type,
        "db_use_type": job.db_use_type.value,
        "task_type": job.task_type,
        "job_direction": job.job_direction,
    }
    if status in FAILED_STATUSES and not job.is_dual_active_parent:
        detail["failed_reason"] = job.failure_reason
        detail["error_code"] = job.failure_code
        detail["error_message"] = job.failure_message
    if job.parent_id is not None:
        detail["parent_id"] = job.parent_id
        detail["master_job_id"] = job.parent_id
        detail["node_role"] = "master" if job.job_direction == "up" else "slave"
    if job.children:
        detail["children"] = [_job_detail(child) for child in job.children]
    return detail


async def batch_detail(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-detail``: one page of the named jobs' details."""
    return await _paged_jobs(request, _job_detail)


# --------------------------------------------------------------------------- IAM


def _iam_error(status: int, title: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "title": title}}
    return web.json_response(body, status=status)


def _dig(body: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _iso_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def issue_token(request: web.Request) -> web.Response:
    """``POST /v3/auth/tokens``: password auth scoped to a fleet project; token in a header."""
    fleet = request.app[FLEET]
    config = fleet.config
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        return _iam_error(400, "Bad Request", "The request body is not valid JSON.")
    identity = _dig(body, "auth", "identity")
    user = _dig(identity, "password", "user")
    scope = _dig(body, "auth", "scope", "project")
    methods = _dig(identity, "methods")
    if not isinstance(methods, list) or "password" not in methods or not isinstance(scope, dict):
        return _iam_error(400, "Bad Request", "The request you have made requires password auth.")
    if (
        _dig(user, "name") != config.user
        or _dig(user, "password") != config.password
        or _dig(user, "domain", "name") != config.domain
    ):
        return _iam_error(401, "Unauthorized", "The username or password is wrong.")
    project = next(
        (
            p
            for p in config.projects
            if p.project_id == scope.get("id")
            or ("id" not in scope and p.region == scope.get("name"))
        ),
        None,
    )
    if project is None:
        return _iam_error(401, "Unauthorized", "The project in the scope is not found.")
    tokens = request.app[TOKENS]
    token = tokens.issue(project.project_id)
    issued = datetime.fromtimestamp(request.app[WALL_CLOCK](), UTC)
    body = {
        "token": {
            "expires_at": _iso_z(issued + timedelta(seconds=tokens.ttl_s)),
            "issued_at": _iso_z(issued),
            "methods": ["password"],
            "project": {
                "id": project.project_id,
                "name": project.region,
                "domain": {"name": config.domain},
            },
            "user": {"name": config.user, "domain": {"name": config.domain}},
            "catalog": [],
        }
    }
    return web.json_response(body, status=201, headers={"X-Subject-Token": token.value})


# --------------------------------------------------------------------------- emulator-only


async def emulator_stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``: request counters (not a DRS API)."""
    return web.json_response(request.app[STATS].to_wire())


async def emulator_jobs(request: web.Request) -> web.Response:
    """``GET /_emulator/jobs``: every job incl. children, with its hidden fate (not a DRS API)."""
    jobs = [
        {
            "project_id": job.project_id,
            "id": job.id,
            "name": job.name,
            "status": job.current_status().value,
            "db_use_type": job.db_use_type.value,
            "parent_id": job.parent_id,
            "fate": job.fate.value if job.fate else None,
            "retries_accepted": job.retries_accepted,
        }
        for job in request.app[FLEET].all_jobs()
    ]
    return web.json_response({"jobs": jobs})


def build_app(fleet: Fleet, *, wall_clock: Clock = time.time) -> web.Application:
    """The aiohttp application serving ``fleet`` (DRS + IAM + ``/_emulator/*``).

    ``fleet.clock`` drives transitions, token expiry, throttling windows and AK lockouts;
    ``wall_clock`` (epoch seconds) is what ``X-Sdk-Date`` and IAM's ``expires_at`` are read
    against.
    """
    config = fleet.config
    app = web.Application(middlewares=[_gateway])
    app[FLEET] = fleet
    app[TOKENS] = TokenStore(fleet.clock, ttl_s=config.token_ttl_s)
    app[STATS] = RequestStats(RateMeter(fleet.clock))
    app[WALL_CLOCK] = wall_clock
    app[GATEWAY] = Gateway(
        faults=FaultInjector(config.faults, config.seed),
        verifier=AkSkVerifier(ak=config.ak, sk=config.sk, clock=fleet.clock, wall_clock=wall_clock),
        throttle=(
            None
            if config.rate_limit_per_s is None
            else Throttle(config.rate_limit_per_s, fleet.clock)
        ),
    )
    app.router.add_post(ROUTE_TOKENS, issue_token)
    app.router.add_post(ROUTE_LIST, list_jobs)
    app.router.add_post(ROUTE_BATCH_STATUS, batch_status)
    app.router.add_post(ROUTE_BATCH_RETRY, batch_retry_task)
    app.router.add_post(ROUTE_BATCH_PAUSE, batch_pause_task)
    app.router.add_post(ROUTE_BATCH_DETAIL, batch_detail)
    app.router.add_get("/_emulator/stats", emulator_stats)
    app.router.add_get("/_emulator/jobs", emulator_jobs)
    return app


class Emulator:
    """The emulator served on a loopback port for the duration of an ``async with`` block."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.fleet = Fleet(config, clock=clock)
        self.app = build_app(self.fleet, wall_clock=wall_clock)
        # Valid for every project; it expires like an IAM token only if the config says so.
        self.token = self.app[TOKENS].issue(None, expires=config.expire_static_token).value
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://<host>:<bound port>``; only while running."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use 'async with Emulator(...)'")
        return self._url

    def describe(self) -> dict[str, Any]:
        """What a user needs to point a client at this emulator (its demo credentials too).

        Keys: url, projects, token, user, password, domain, ak, sk.
        """
        return {
            "url": self.url,
            "projects": [
                {"project_id": p.project_id, "region": p.region} for p in self.config.projects
            ],
            "token": self.token,
            "user": self.config.user,
            "password": self.config.password,
            "domain": self.config.domain,
            "ak": self.config.ak,
            "sk": self.config.sk,
        }

    async def __aenter__(self) -> Emulator:
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        logger.info("emulator listening on %s", self._url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
