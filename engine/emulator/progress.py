"""``POST /v3/{project_id}/jobs/batch-progress``: each named job's progress and replication delay.

The body is ``{"jobs": ["<id>", ...]}`` (SDK ``BatchQueryProgressReq``, no ``page_req``),
validated like batch-status: ``jobs`` missing or empty is 400 ``DRS.M00201``, not a list of ids
or more than ``MAX_IDS_PER_BATCH_STATUS`` ids 400 ``DRS.M00202``, an id named twice 400
``DRS.M00301``. The answer is ``{"count": N, "results": [QueryProgressResp...]}`` with ``count``
the number of results (the SDK: "the same as the length of results"), one per id, in order.

Each result, typed as the SDK's ``openapi_types`` say: ``job_id``; ``progress`` (percent, text);
``incre_trans_delay`` (whole seconds, text) and ``incre_trans_delay_millis`` (ms, text);
``task_mode`` (the task_type); ``transfer_status`` (the status); ``process_time`` (epoch ms,
text: now for a running job, else when it last changed); ``remaining_time`` (seconds, text);
``progress_map`` (``structure`` / ``data`` / ``index`` → ``{"completed": "94%",
"remaining_time"}``; the key names are unverified); ``apply_rows_rate`` / ``apply_bytes_rate``
(integers; -1 before the incremental phase, as the SDK documents); ``error_code`` /
``error_msg`` only for a failed job. What the delay holds depends on the phase (the emulator's
choices; no source shows a non-incremental answer):

- incremental (``INCRE_TRANSFER_*``, ``CHILD_TRANSFER_*``, the node/change statuses, and a
  paused or restarting job that resumes into incremental): the lag model's delay
  (``engine.emulator.lag``) — rising while the job does not run, draining once it does.
  Rates are 0 while it does not run.
- full transfer (``FULL_TRANSFER_*``, or paused/restarting back into it): delay ``"0"``.
- never started (``CREATING``, ``CONFIGURATION``, ``CREATE_FAILED``, ``START_JOB_FAILED``) or
  ended (``RELEASE_*``, ``DELETED``, ``NODE_UPGRADE_COMPLETE``): delay ``""`` (empty).

A dual-active parent answers its worst child's delay. An unknown id gets ``{"job_id",
"error_code": "DRS.K02000", "error_msg"}`` in its place, as batch-status answers one.
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import Any

from aiohttp import web

from engine.emulator.fleet import Fleet
from engine.emulator.gateway import (
    FLEET,
    STATS,
    WALL_CLOCK,
    drs_body,
    error_message,
    job_id_list,
    language_of,
)
from engine.emulator.state import Job, WireTimes, resume_status
from engine.emulator.wire import (
    ERR_TASK_NOT_QUERYABLE,
    FAILED_STATUSES,
    HEALTHY_STATUSES,
    MAX_IDS_PER_BATCH_STATUS,
    JobStatus,
)

_S = JobStatus


class Phase(StrEnum):
    NOT_STARTED = "not_started"
    FULL = "full"
    INCREMENTAL = "incremental"
    ENDED = "ended"


_PHASE_OF: dict[JobStatus, Phase] = {
    **dict.fromkeys(
        (_S.CREATING, _S.CONFIGURATION, _S.CREATE_FAILED, _S.START_JOB_FAILED), Phase.NOT_STARTED
    ),
    **dict.fromkeys(
        (_S.FULL_TRANSFER_STARTED, _S.FULL_TRANSFER_FAILED, _S.FULL_TRANSFER_COMPLETE), Phase.FULL
    ),
    **dict.fromkeys(
        (
            _S.RELEASE_RESOURCE_STARTED, _S.RELEASE_RESOURCE_FAILED, _S.RELEASE_RESOURCE_COMPLETE,
            _S.RELEASE_CHILD_TRANSFER_STARTED, _S.RELEASE_CHILD_TRANSFER_COMPLETE, _S.DELETED,
            _S.NODE_UPGRADE_COMPLETE,
        ),
        Phase.ENDED,
    ),
}  # fmt: skip
_BETWEEN = (_S.PAUSING, _S.STARTJOBING, _S.WAITING_FOR_START)  # the phase is the resume's


def phase_of(job: Job, status: JobStatus) -> Phase:
    """Which phase of its transfer a job (in ``status``) is in, for batch-progress."""
    if status in _BETWEEN:
        target = job.schedule[-1][1] if job.schedule else resume_status(job, status)
        return Phase.FULL if _PHASE_OF.get(target) is Phase.FULL else Phase.INCREMENTAL
    return _PHASE_OF.get(status, Phase.INCREMENTAL)


def _full_percent(job: Job) -> int:
    """How far a job's full transfer got: 5-94 %, fixed per job (the emulator does not move it)."""
    return 5 + zlib.crc32(f"{job.id}:full".encode()) % 90


def progress_json(job: Job, *, delay_s: float, now_ms: str, changed_ms: str) -> dict[str, Any]:
    """One batch-progress result (SDK ``QueryProgressResp``) for a job already advanced."""
    status = job.current_status()
    phase = phase_of(job, status)
    running = status in HEALTHY_STATUSES
    if phase is Phase.INCREMENTAL:
        percent, delay, remaining = 100, str(int(delay_s)), "0"
        millis = str(int(delay_s * 1000))
        rows = 200 + zlib.crc32(f"{job.id}:rows".encode()) % 4800 if running else 0
    elif phase is Phase.FULL:
        full_done = status is _S.FULL_TRANSFER_COMPLETE
        percent = 100 if full_done else _full_percent(job)
        delay = millis = "0"
        remaining = str((100 - percent) * 36)
        rows = -1
    else:
        percent = 100 if phase is Phase.ENDED else 0
        delay = millis = remaining = ""
        rows = -1
    wire: dict[str, Any] = {
        "job_id": job.id,
        "progress": str(percent),
        "incre_trans_delay": delay,
        "incre_trans_delay_millis": millis,
        "task_mode": job.task_type,
        "transfer_status": status.value,
        "process_time": now_ms if running else changed_ms,
        "remaining_time": remaining,
        "progress_map": _progress_map(percent, remaining) if phase is not Phase.NOT_STARTED else {},
        "apply_rows_rate": rows,
        "apply_bytes_rate": rows * 180 if rows > 0 else rows,
    }
    if status in FAILED_STATUSES:
        wire["error_code"] = job.failure_code
        wire["error_msg"] = job.failure_message
    return wire


def _progress_map(percent: int, remaining: str) -> dict[str, dict[str, str]]:
    done = {"completed": "100%", "remaining_time": "0"}
    data = {"completed": f"{percent}%", "remaining_time": remaining or "0"}
    return {"structure": done, "data": data, "index": data if percent < 100 else done}


def _result(fleet: Fleet, job: Job, times: WireTimes) -> dict[str, Any]:
    now = fleet.clock()
    changed = times.before_start(job) if job.changed_at is None else job.changed_at
    return progress_json(
        job, delay_s=fleet.delay_of(job), now_ms=times.wire(now), changed_ms=times.wire(changed)
    )


async def batch_progress(request: web.Request) -> web.Response:
    """``POST /v3/{project_id}/jobs/batch-progress``: progress and delay of the named jobs."""
    project_id, body = await drs_body(request)
    ids = job_id_list(body, limit=MAX_IDS_PER_BATCH_STATUS)
    fleet, stats, language = request.app[FLEET], request.app[STATS], language_of(request)
    times = WireTimes(request.app[WALL_CLOCK]() - fleet.clock(), fleet.started)
    results: list[dict[str, Any]] = []
    for job_id in ids:
        job = fleet.find(project_id, job_id)
        if job is None:
            stats.responses_by_code[ERR_TASK_NOT_QUERYABLE] += 1
            message = error_message(ERR_TASK_NOT_QUERYABLE, language, f"job {job_id}")
            results.append(
                {"job_id": job_id, "error_code": ERR_TASK_NOT_QUERYABLE, "error_msg": message}
            )
        else:
            results.append(_result(fleet, job, times))
    return web.json_response({"count": len(results), "results": results})
