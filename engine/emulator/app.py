"""The emulator's HTTP face: DRS v3 and IAM token routes on aiohttp.web, served on loopback.

One app answers both as the DRS endpoint and as the IAM endpoint. Every answer carries a fresh
``X-Request-Id``. DRS errors have the body ``{"error_code", "error_msg"}``; ``X-Language: zh-cn``
switches ``error_msg`` of DRS codes to Chinese (gateway ``APIGW.*`` messages stay English, as the
gateway does not localise).

IAM (``POST /v3/auth/tokens``) answers errors in the Keystone shape that IAM itself uses,
``{"error": {"code": 401, "message": "...", "title": "Unauthorized"}}`` (400 for a malformed
body), not the DRS shape: a client must cope with both.

What every request goes through before and after the service (faults, credentials,
throttling) is ``engine.emulator.gateway``; the list is ``engine.emulator.listing``,
batch-progress ``engine.emulator.progress``. batch-retry-task and batch-pause-task may be
refused whole by injected ``DRS.M01503`` / ``DRS.M01504`` answers (``FaultConfig``), after the
body is checked and before anything is applied.

``GET /_emulator/stats``, ``GET /_emulator/jobs`` and ``GET /_emulator/requests`` are read-only,
need no token and never see a fault; they are not part of DRS. In the stats, ``requests`` counts
every arrival by route (faulted ones too); ``mutating_requests`` counts batch-retry-task and
batch-pause-task arrivals that were not dropped by an injected reset; ``retry_requests_per_job``
/ ``pause_requests_per_job`` count the job ids of requests that reached the service (not reset,
not failed with an injected 500, not throttled, credentials and body accepted); ``throttled``
counts 429s; ``faults`` counts each injected fault; ``peak_rate_per_s`` is, per route, the most
requests admitted by the throttle in any one-second window of the fleet clock,
``peak_rate_per_s_all`` the same over every route. ``responses_by_code`` counts every DRS/APIGW
error code the emulator emitted, whether as a whole-request error body or inside a per-job
result; IAM rejections are not counted there (they carry no error code). ``accounts`` holds the
same per account (``engine.emulator.accounting``).

``GET /_emulator/requests?kind=mutating`` lists every batch-retry-task / batch-pause-task
arrival in order: ``{"now", "now_wall", "requests": [{"at", "at_wall", "route", "project_id",
"account", "caller", "status"}]}`` (``engine.emulator.accounting``), optionally only those after
``since=`` (fleet clock) or ``since_wall=`` (epoch seconds), of one ``account=``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from engine.emulator.accounting import RequestStats
from engine.emulator.accounts import Tenancy
from engine.emulator.detail import job_detail
from engine.emulator.faults import BusyInjector, FaultInjector
from engine.emulator.fleet import Fleet
from engine.emulator.gateway import (
    BATCH_STATUS_DEFAULT_PER_PAGE,
    FLEET,
    GATEWAY,
    MUTATING_ROUTES,
    PAUSE_MODES,
    ROUTE_AUTH_PROJECTS,
    ROUTE_BATCH_DETAIL,
    ROUTE_BATCH_PAUSE,
    ROUTE_BATCH_PROGRESS,
    ROUTE_BATCH_RETRY,
    ROUTE_BATCH_STATUS,
    ROUTE_LIST,
    ROUTE_TOKENS,
    STATS,
    TENANCY,
    TOKENS,
    WALL_CLOCK,
    Gateway,
    RequestRejectedError,
    TokenStore,
    drs_body,
    error_message,
    gateway,
    int_field,
    job_id_list,
    language_of,
    page_of,
    refuse_duplicates,
    refuse_if_busy,
)
from engine.emulator.iam import issue_token, list_auth_projects
from engine.emulator.listing import list_jobs
from engine.emulator.progress import batch_progress
from engine.emulator.signing import AkSkVerifier
from engine.emulator.state import (
    ActionVerdict,
    Clock,
    EmulatorConfig,
    Job,
    RetryVerdict,
    WireTimes,
)
from engine.emulator.throttle import Throttle
from engine.emulator.wire import (
    ACTION_PAUSE,
    ACTION_RETRY,
    ERR_ONLY_SUBTASKS,
    ERR_PARAMETER_EMPTY,
    ERR_PARAMETER_INVALID,
    ERR_STATUS_FORBIDS,
    ERR_TASK_NOT_QUERYABLE,
    MAX_IDS_PER_BATCH_STATUS,
    MAX_PER_PAGE,
    action_result_json,
    status_json,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- DRS routes


def _page_req(body: Mapping[str, Any]) -> tuple[int, int]:
    """``page_req`` of batch-status / batch-detail: (cur_page, per_page), per_page default 5."""
    page_req = body.get("page_req") or {}
    if not isinstance(page_req, dict):
        raise RequestRejectedError(400, ERR_PARAMETER_INVALID, "page_req must be an object")
    cur_page = int_field(page_req, "cur_page", default=1, low=1, high=1_000_000)
    per_page = int_field(
        page_req, "per_page", default=BATCH_STATUS_DEFAULT_PER_PAGE, low=0, high=MAX_PER_PAGE
    )
    return cur_page, per_page


async def batch_status(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-status``: one page of the named jobs' statuses."""
    return await _paged_jobs(request, lambda job: status_json(job.id, job.current_status().value))


async def _paged_jobs(
    request: web.Request, describe: Callable[[Job], dict[str, Any]]
) -> web.Response:
    """batch-status and batch-detail: one page of the named jobs, an unknown id answered with
    DRS.K02000 in its entry; ``count`` is the number of tasks returned (OTC drs_api_0150; the
    SDK: "the same as the length of results"), not the number asked for."""
    project_id, body = await drs_body(request)
    ids = job_id_list(body, limit=MAX_IDS_PER_BATCH_STATUS)
    cur_page, per_page = _page_req(body)
    fleet, stats, language = request.app[FLEET], request.app[STATS], language_of(request)
    results: list[dict[str, Any]] = []
    for job_id in page_of(ids, cur_page, per_page):
        job = fleet.find(project_id, job_id)
        if job is None:
            stats.responses_by_code[ERR_TASK_NOT_QUERYABLE] += 1
            message = error_message(ERR_TASK_NOT_QUERYABLE, language, f"job {job_id}")
            results.append(
                status_json(job_id, "", error_code=ERR_TASK_NOT_QUERYABLE, error_message=message)
            )
        else:
            results.append(describe(job))
    return web.json_response({"results": results, "count": len(results)})


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
    refuse_duplicates(ids)
    return ids


def _action_results(
    request: web.Request, project_id: str, ids: list[str], act: Callable[[str], ActionVerdict]
) -> list[dict[str, Any]]:
    """Per-job results of a batch action: ``success`` or ``failed`` with ``error_msg``."""
    stats, language = request.app[STATS], language_of(request)
    results: list[dict[str, Any]] = []
    for job_id in ids:
        verdict = act(job_id)
        if verdict is ActionVerdict.ACCEPTED:
            results.append(action_result_json(job_id, success=True))
            continue
        code = _VERDICT_ERRORS[verdict]
        stats.responses_by_code[code] += 1
        message = error_message(code, language, f"job {job_id}")
        results.append(
            action_result_json(job_id, success=False, error_code=code, error_msg=message)
        )
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
    project_id, body = await drs_body(request)
    ids = _retry_job_ids(body)
    refuse_if_busy(request)
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
        if mode is None:
            raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "pause_mode is required")
        if mode not in PAUSE_MODES:
            raise RequestRejectedError(
                400, ERR_PARAMETER_INVALID, f"pause_mode must be target or all, got {mode!r}"
            )
        if not entry["job_id"]:
            raise RequestRejectedError(400, ERR_PARAMETER_EMPTY, "job_id is empty")
        ids.append(entry["job_id"])
    refuse_duplicates(ids)
    return ids


async def batch_pause_task(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-pause-task``: pause running jobs (they show PAUSING)."""
    project_id, body = await drs_body(request)
    ids = _pause_job_ids(body)
    refuse_if_busy(request)
    fleet = request.app[FLEET]
    request.app[STATS].pause_requests_per_job.update(ids)
    _refuse_parents(fleet, project_id, ids, ACTION_PAUSE)
    results = _action_results(request, project_id, ids, lambda i: fleet.pause(project_id, i))
    logger.debug("batch-pause-task %s: %s", project_id, results)
    return web.json_response({"results": results, "count": len(results)})


async def batch_detail(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-detail``: one page of the named jobs' details."""
    fleet = request.app[FLEET]
    times = WireTimes(request.app[WALL_CLOCK]() - fleet.clock(), fleet.started)
    regions = {p.project_id: p.region for p in fleet.projects.values()}
    return await _paged_jobs(
        request, lambda job: job_detail(job, times, region=regions[job.project_id])
    )


# --------------------------------------------------------------------------- emulator-only


async def emulator_stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``: request counters (not a DRS API)."""
    return web.json_response(request.app[STATS].to_wire())


async def emulator_jobs(request: web.Request) -> web.Response:
    """``GET /_emulator/jobs``: every job incl. children, with its project's account, its hidden
    fate, whether it stays behind or the service retries it itself, and its delay now,
    spike-free (not a DRS API)."""
    fleet, tenancy = request.app[FLEET], request.app[TENANCY]
    jobs = [
        {
            "project_id": job.project_id,
            "account": owner.name if (owner := tenancy.owner(job.project_id)) else None,
            "id": job.id,
            "name": job.name,
            "status": job.current_status().value,
            "db_use_type": job.db_use_type.value,
            "parent_id": job.parent_id,
            "fate": job.fate.value if job.fate else None,
            "retries_accepted": job.retries_accepted,
            "stays_behind": job.stays_behind,
            "service_retry": job.service_retry_at is not None,
            "service_tries": job.service_tries_begun(fleet.clock()),
            "delay_s": None if job.lag is None else round(job.lag.delay(fleet.clock()), 3),
            "tags": dict(job.labels.tags),
            "enterprise_project_id": job.labels.enterprise_project_id,
            "instance_ids": [job.labels.source_instance_id, job.labels.target_instance_id],
            "instance_ips": [job.labels.source_ip, job.labels.target_ip],
        }
        for job in fleet.all_jobs()
    ]
    return web.json_response({"jobs": jobs})


async def emulator_requests(request: web.Request) -> web.Response:
    """``GET /_emulator/requests?kind=mutating[&since=S][&since_wall=S][&account=NAME]``: the
    mutating arrivals, in order (not a DRS API; see the module docstring)."""
    query = request.query
    if query.get("kind") != "mutating":
        return _emulator_usage("kind must be mutating (the only requests the emulator logs)")
    bounds: dict[str, float | None] = {}
    for name in ("since", "since_wall"):
        text = query.get(name)
        try:
            bounds[name] = None if text is None else float(text)
        except ValueError:
            return _emulator_usage(f"{name} must be a number of seconds, got {text!r}")
    account = query.get("account")
    if account is not None and account not in request.app[TENANCY].accounts:
        return _emulator_usage(f"no account named {account!r}")
    entries = request.app[STATS].mutating_since(
        since=bounds["since"], since_wall=bounds["since_wall"], account=account
    )
    return web.json_response(
        {
            "now": request.app[FLEET].clock(),
            "now_wall": request.app[WALL_CLOCK](),
            "requests": [entry.to_wire() for entry in entries],
        }
    )


def _emulator_usage(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def build_app(fleet: Fleet, *, wall_clock: Clock = time.time) -> web.Application:
    """The aiohttp application serving ``fleet`` (DRS + IAM + ``/_emulator/*``).

    ``fleet.clock`` drives transitions, token expiry, throttling windows and AK lockouts;
    ``wall_clock`` (epoch seconds) is what ``X-Sdk-Date`` and IAM's ``expires_at`` are read
    against.
    """
    config = fleet.config
    tenancy = Tenancy(config.accounts)
    app = web.Application(middlewares=[gateway])
    app[FLEET] = fleet
    app[TENANCY] = tenancy
    app[TOKENS] = TokenStore(fleet.clock, ttl_s=config.token_ttl_s)
    app[STATS] = RequestStats(
        fleet.clock, accounts=tenancy.accounts, mutating_routes=MUTATING_ROUTES
    )
    app[WALL_CLOCK] = wall_clock
    app[GATEWAY] = Gateway(
        faults=FaultInjector(config.faults, config.seed),
        busy=BusyInjector(config.faults, config.seed),
        verifier=AkSkVerifier(keys=tenancy.keys, clock=fleet.clock, wall_clock=wall_clock),
        throttle=(
            None
            if config.rate_limit_per_s is None
            else Throttle(config.rate_limit_per_s, fleet.clock)
        ),
    )
    app.router.add_post(ROUTE_TOKENS, issue_token)
    app.router.add_get(ROUTE_AUTH_PROJECTS, list_auth_projects)
    app.router.add_post(ROUTE_LIST, list_jobs)
    app.router.add_post(ROUTE_BATCH_STATUS, batch_status)
    app.router.add_post(ROUTE_BATCH_RETRY, batch_retry_task)
    app.router.add_post(ROUTE_BATCH_PAUSE, batch_pause_task)
    app.router.add_post(ROUTE_BATCH_DETAIL, batch_detail)
    app.router.add_post(ROUTE_BATCH_PROGRESS, batch_progress)
    app.router.add_get("/_emulator/stats", emulator_stats)
    app.router.add_get("/_emulator/jobs", emulator_jobs)
    app.router.add_get("/_emulator/requests", emulator_requests)
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
        # One per account, valid for every project of its account; it expires like an IAM
        # token only if the config says so.
        self.tokens = {
            account.name: self.app[TOKENS]
            .issue(account.name, None, expires=config.expire_static_token)
            .value
            for account in config.accounts
        }
        self.token = self.tokens[config.accounts[0].name]
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

        Keys: url, then the first account's projects, token, user, password, domain, ak, sk
        (what a single-account client reads, unchanged), then ``accounts``: every account,
        the first too, as name, domain, domain_id, user, password, ak, sk, token and
        projects (project_id, name, region).
        """
        accounts = [
            {
                "name": account.name,
                "domain": account.domain,
                "domain_id": account.domain_id,
                "user": account.user,
                "password": account.password,
                "ak": account.ak,
                "sk": account.sk,
                "token": self.tokens[account.name],
                "projects": [
                    {"project_id": p.project_id, "name": names[p.project_id], "region": p.region}
                    for p in account.projects
                ],
            }
            for account in self.config.accounts
            for names in (account.project_names(),)
        ]
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
            "accounts": accounts,
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
