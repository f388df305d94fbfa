"""The emulator's gateway: what every request goes through before and after the service.

A DRS request goes through, in this order:

1. injected faults (``faults``): latency, then a connection reset (nothing processed), then a 500
   (or 422: ``error_status``) ``DRS.M00004`` (nothing processed), then a slow answer;
2. the gateway: credentials, either ``X-Auth-Token`` (401 ``APIGW.0301``; ``APIGW.0307`` once the
   token is older than ``token_ttl_s``) or an AK/SK signature (401 ``APIGW.0301``; ``APIGW.0303``
   for an ``X-Sdk-Date`` more than 15 minutes off; see ``signing``),
   then throttling per account per route (429 ``APIGW.0308`` with ``Retry-After``),
   then ``X-Project-Id`` if sent and the path's project id (403 ``DRS.M00261``), the project's
   account (403 ``DRS.M00102`` for another account's credentials) and the token's scope (403
   ``DRS.M00102``);
3. the service (``engine.emulator.app``): ``Content-Type`` (400 ``DRS.M00200``), the body, the
   operation;
4. a lost response (injected): the operation is applied, then the connection is closed unanswered.

The IAM routes (``POST /v3/auth/tokens``, ``GET /v3/auth/projects``) get only latency and
injected 500s (in the IAM error shape), and no throttling. Every credential belongs to one
account (``engine.emulator.accounts``): its user's tokens and its AK; the throttle counts all of
an account's credentials together, per route, as the gateway counts per user per API, so two
accounts never share a budget. Every answer carries a fresh ``X-Request-Id``. What is counted is
``engine.emulator.accounting``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.emulator.accounting import MutatingRequest, RequestStats
from engine.emulator.accounts import Tenancy
from engine.emulator.faults import (
    NO_FAULTS,
    BusyInjector,
    FaultInjector,
    FaultRoll,
)
from engine.emulator.fleet import Fleet
from engine.emulator.signing import AkSkVerifier, SignatureError, SignedRequest, is_signed
from engine.emulator.state import (
    Clock,
)
from engine.emulator.throttle import Throttle
from engine.emulator.wire import (
    ERR_API_NOT_FOUND,
    ERR_DUPLICATE_IDS,
    ERR_INVALID_PROJECT,
    ERR_NO_PERMISSION,
    ERR_ONLY_SUBTASKS,
    ERR_OPERATION_RUNNING,
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
    ERR_TOO_FREQUENT,
    Language,
    error_json,
)

logger = logging.getLogger(__name__)

BATCH_STATUS_DEFAULT_PER_PAGE = 5  # the real service's default, a trap for callers that omit it
ROUTE_LIST = "/v3/{project_id}/jobs"
ROUTE_BATCH_STATUS = "/v3/{project_id}/jobs/batch-status"
ROUTE_BATCH_RETRY = "/v3/{project_id}/jobs/batch-retry-task"
ROUTE_BATCH_PAUSE = "/v3/{project_id}/jobs/batch-pause-task"
ROUTE_BATCH_DETAIL = "/v3/{project_id}/jobs/batch-detail"
ROUTE_BATCH_PROGRESS = "/v3/{project_id}/jobs/batch-progress"
ROUTE_TOKENS = "/v3/auth/tokens"
ROUTE_AUTH_PROJECTS = "/v3/auth/projects"
UNKNOWN_ROUTE = "(unknown route)"
DRS_ROUTES = frozenset(
    f"POST {r}"
    for r in (
        ROUTE_LIST,
        ROUTE_BATCH_STATUS,
        ROUTE_BATCH_RETRY,
        ROUTE_BATCH_PAUSE,
        ROUTE_BATCH_DETAIL,
        ROUTE_BATCH_PROGRESS,
    )
)
IAM_ROUTE = f"POST {ROUTE_TOKENS}"
IAM_ROUTES = frozenset({IAM_ROUTE, f"GET {ROUTE_AUTH_PROJECTS}"})
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
    ERR_DUPLICATE_IDS: ("Duplicate job IDs in the request", "请求中存在重复的任务ID"),
    ERR_TOO_FREQUENT: ("The operation is too frequent", "操作过于频繁"),
    ERR_OPERATION_RUNNING: (
        "Another operation is running on the task, try again later",
        "任务正在执行其他操作, 请稍后重试",
    ),
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
    account: str  # the account whose user it was issued to
    project_id: str | None
    issued_at: float  # on the fleet clock
    expires: bool  # False: never expires (the pre-issued token, by default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who a request is from, once its credentials are accepted."""

    account: str  # the throttle's "user": every credential of an account counts together
    project_id: str | None  # the credential's scope; None: every project of the account


class TokenStore:
    """Tokens issued by this emulator; a token expires ``ttl_s`` after it was issued."""

    def __init__(self, clock: Clock, *, ttl_s: float) -> None:
        self._clock = clock
        self.ttl_s = ttl_s
        self._tokens: dict[str, Token] = {}

    def issue(self, account: str, project_id: str | None, *, expires: bool = True) -> Token:
        token = Token(
            value="MIIemu" + secrets.token_urlsafe(48),
            account=account,
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


@dataclass(slots=True, kw_only=True)
class Gateway:
    """The gateway's moving parts: fault draws, AK/SK verification, throttling."""

    faults: FaultInjector
    busy: BusyInjector
    verifier: AkSkVerifier
    throttle: Throttle | None


FLEET = web.AppKey("fleet", Fleet)
TENANCY = web.AppKey("tenancy", Tenancy)
TOKENS = web.AppKey("tokens", TokenStore)
STATS = web.AppKey("stats", RequestStats)
GATEWAY = web.AppKey("gateway", Gateway)
WALL_CLOCK: web.AppKey[Clock] = web.AppKey("wall_clock")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MUTATING_ENTRY = web.RequestKey("mutating_request", MutatingRequest)  # if logged


def language_of(request: web.Request) -> Language:
    wanted = request.headers.get("X-Language", "").strip().lower()
    return Language.ZH_CN if wanted == Language.ZH_CN.value else Language.EN_US


def route_key(request: web.Request) -> str:
    match = request.match_info
    if match.http_exception is not None:
        return f"{request.method} {UNKNOWN_ROUTE}"
    return f"{request.method} {match.route.resource.canonical if match.route.resource else ''}"


def error_response(
    request: web.Request,
    status: int,
    code: str,
    detail: str | None,
    *,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    request.app[STATS].responses_by_code[code] += 1
    text = message or error_message(code, language_of(request), detail)
    return web.json_response(error_json(code, text), status=status, headers=headers)


def drop_connection(request: web.Request) -> web.Response:
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
    if key in IAM_ROUTES:
        if roll.error:
            stats.faults["error"] += 1
            return iam_error(
                500, "Internal Server Error", "The service is temporarily unavailable."
            )
        return None
    if roll.reset:
        stats.faults["reset"] += 1
        return drop_connection(request)
    if roll.error:
        stats.faults["error"] += 1
        return error_response(request, faults.error_status, ERR_SERVICE_ABNORMAL, None)
    if roll.slow:
        stats.faults["slow"] += 1
        await asyncio.sleep(faults.slow_s)
    return None


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, inject faults, render rejections and unknown routes, stamp ``X-Request-Id``."""
    stats = request.app[STATS]
    faults = request.app[GATEWAY].faults.config
    key = route_key(request)
    stats.requests[key] += 1
    entry = _log_mutating(request, key)
    faultable = key in DRS_ROUTES or key in IAM_ROUTES
    roll = request.app[GATEWAY].faults.roll() if faultable else NO_FAULTS
    response: web.StreamResponse | None = await _apply_faults_before(request, key, roll)
    if key in MUTATING_ROUTES and not (roll.reset and key in DRS_ROUTES):
        stats.mutating_requests += 1
    if response is None:
        try:
            response = await handler(request)
        except RequestRejectedError as exc:
            response = error_response(
                request,
                exc.http_status,
                exc.error_code,
                exc.detail,
                message=exc.message,
                headers=exc.headers,
            )
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            response = error_response(request, 404, ERR_API_NOT_FOUND, None)
        if roll.lost_response and key in DRS_ROUTES:
            stats.faults["lost_response"] += 1
            response = drop_connection(request)
        elif key in MUTATING_ROUTES and faults.answer_delay_s > 0:
            stats.faults["answer_delay"] += 1
            await asyncio.sleep(faults.answer_delay_s)  # applied already; the answer waits
    if entry is not None and not (roll.reset or (roll.lost_response and key in DRS_ROUTES)):
        entry.status = response.status
    response.headers["X-Request-Id"] = uuid.uuid4().hex
    # The server's time as its wall clock reads it (a test may set it off ours): the client
    # measures clock skew against it.
    response.headers["Date"] = email.utils.formatdate(request.app[WALL_CLOCK](), usegmt=True)
    return response


def _log_mutating(request: web.Request, key: str) -> MutatingRequest | None:
    """Log a mutating arrival (``engine.emulator.accounting``) before anything can refuse it."""
    if key not in MUTATING_ROUTES:
        return None
    project_id = request.match_info.get("project_id", "")
    owner = request.app[TENANCY].owner(project_id)
    entry = MutatingRequest(
        at=request.app[FLEET].clock(),
        at_wall=request.app[WALL_CLOCK](),
        route=key,
        project_id=project_id,
        account=None if owner is None else owner.name,
    )
    request.app[STATS].mutating_log.append(entry)
    request[_MUTATING_ENTRY] = entry
    return entry


def _is_project_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


async def authenticate(request: web.Request) -> Caller:
    """The caller behind an AK/SK signature or an ``X-Auth-Token``, or the gateway's 401; an
    accepted request is counted for its account."""
    caller = await _credentials(request)
    request.app[STATS].accounts[caller.account].requests_by_route[route_key(request)] += 1
    entry = request.get(_MUTATING_ENTRY)
    if entry is not None:
        entry.caller = caller.account
    return caller


async def _credentials(request: web.Request) -> Caller:
    if is_signed(request.headers.get("Authorization")):
        signed = SignedRequest(
            method=request.method,
            raw_path=request.raw_path,
            headers=request.headers,
            body=await request.read(),
        )
        try:
            ak = request.app[GATEWAY].verifier.verify(signed)
        except SignatureError as exc:
            if exc.clock_skew:
                raise RequestRejectedError(401, ERR_SIGNATURE_INVALID, exc.reason) from None
            # APIGW.0301 as for a bad token, in the gateway's words for a bad signature.
            said = f"{error_message(ERR_SIGNATURE_INVALID, language_of(request))}: {exc.reason}"
            raise RequestRejectedError(401, ERR_TOKEN_INVALID, message=said) from None
        account = request.app[TENANCY].by_ak(ak)
        if account is None:  # the verifier knows only the accounts' AKs
            raise RuntimeError(f"verified an AK no account holds: {ak}")
        return Caller(account=account.name, project_id=None)
    token = request.app[TOKENS].authenticate(request.headers.get("X-Auth-Token"))
    return Caller(account=token.account, project_id=token.project_id)


def _throttle(request: web.Request, caller: Caller) -> None:
    """429 ``APIGW.0308`` beyond the rate limit; an admitted request is measured."""
    gateway, stats = request.app[GATEWAY], request.app[STATS]
    key = route_key(request)
    throttle = gateway.throttle
    account = stats.accounts[caller.account]
    if throttle is not None and not throttle.admit(caller.account, key):
        stats.throttled += 1
        account.throttled += 1
        window = f"{throttle.window_s:g}"
        raise RequestRejectedError(
            429,
            ERR_THROTTLED,
            message="The throttling threshold has been reached: policy user over ratelimit, "
            f"limit:{throttle.limit}, time:{window} second",
            headers={"Retry-After": str(throttle.retry_after_s)},
        )
    stats.meter.record(key)
    account.meter.record(key)


async def drs_body(request: web.Request) -> tuple[str, dict[str, Any]]:
    """Gateway and service checks common to every DRS route; returns (project_id, JSON body)."""
    project_id = request.match_info["project_id"]
    caller = await authenticate(request)
    _throttle(request, caller)
    header_project = request.headers.get("X-Project-Id")
    if header_project is not None and header_project.strip() != project_id:
        raise RequestRejectedError(
            403, ERR_INVALID_PROJECT, f"X-Project-Id {header_project!r} is not the path's project"
        )
    if not _is_project_id(project_id) or not request.app[FLEET].has_project(project_id):
        raise RequestRejectedError(403, ERR_INVALID_PROJECT, f"project_id {project_id!r}")
    owner = request.app[TENANCY].owner(project_id)
    if owner is None or owner.name != caller.account:
        request.app[STATS].accounts[caller.account].refused_other_account += 1
        raise RequestRejectedError(
            403, ERR_NO_PERMISSION, "the project belongs to another account than the credentials"
        )
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


def iam_error(status: int, title: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "title": title}}
    return web.json_response(body, status=status)


def job_id_list(body: Mapping[str, Any], *, limit: int) -> list[str]:
    """The ``jobs`` id list of batch-status, batch-detail and batch-progress: missing or empty
    400 ``DRS.M00201``; not a list of ids, or more than ``limit``, 400 ``DRS.M00202``; an id
    named twice 400 ``DRS.M00301``."""
    ids = body.get("jobs")
    if not ids:
        raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "jobs is required")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "jobs must be a list of job ids")
    if len(ids) > limit:
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, f"jobs takes at most {limit} ids")
    refuse_duplicates(ids)
    return ids


def refuse_duplicates(ids: list[str]) -> None:
    """400 ``DRS.M00301`` when a request names a job twice."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            raise RequestRejectedError(400, ERR_DUPLICATE_IDS, f"job {job_id} is named twice")
        seen.add(job_id)


def refuse_if_busy(request: web.Request) -> None:
    """The injected whole-request refusals of a mutating request (``FaultConfig.busy_rate``,
    ``too_frequent_rate``): 400 ``DRS.M01503`` or 202 ``DRS.M01504``, nothing applied."""
    refusal = request.app[GATEWAY].busy.roll()
    if refusal is not None:
        status, code = refusal
        raise RequestRejectedError(status, code, "injected by the emulator")


def int_field(
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


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, f"{key} must be a string")
    return value


def page_of(items: list[Any], cur_page: int, per_page: int) -> list[Any]:
    """One page of ``items``; ``per_page`` 0 or ``cur_page`` 0 is every item ("all")."""
    if per_page == 0 or cur_page == 0:
        return items
    start = (cur_page - 1) * per_page
    return items[start : start + per_page]
