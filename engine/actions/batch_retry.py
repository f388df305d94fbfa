"""``drs.batch_retry``: retry failed and resume paused jobs in batches, recording every answer.

batch-retry-task is not idempotent. A batch whose outcome is unknown (connection lost after
sending, 5xx, missing results) is reconciled by querying the jobs' status: jobs that moved on
were retried; only jobs still failed or paused are sent once more, in a request of their own.
A 4xx means the whole request was rejected and nothing applied, so a rejected batch of several
jobs is split and each job sent alone: one bad job (a dual-active parent, say) cannot sink the rest.
Throttled and busy answers (429, DRS.M01503, DRS.M01504) are backed off and re-sent by the client
(engine.api.resilience); if they persist, the batch's jobs are reported rejected, not split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import (
    ActionContext,
    Disposition,
    EventKind,
    JobRecord,
    StepFailedError,
)
from engine.actions.mutation import (
    BatchMutation,
    MutationEvents,
    preview_in_batches,
    send_batch,
    send_in_batches,
    triage,
    watch_status,
)
from engine.api.types import (
    FAILED_STATUSES,
    PAUSED_STATUSES,
    BatchActionResult,
    RetryItem,
)
from engine.errors import DrsApiError, TransportError

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100  # the documented maximum: fewest requests
# An unknown outcome: how long the jobs' status is watched before a job counts as not retried.
RECONCILE_GRACE_S = 15.0
MAX_BATCH_SIZE = 100
_STILL_WAITING = frozenset(FAILED_STATUSES | PAUSED_STATUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRetryParams:
    jobs: tuple[str, ...]
    batch_size: int = DEFAULT_BATCH_SIZE
    is_sync_re_edit: bool = False
    reconcile_grace_s: float = RECONCILE_GRACE_S

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> BatchRetryParams:
        return cls(
            jobs=job_ids(raw.get("jobs")),
            batch_size=fields.whole(raw, "batch_size", DEFAULT_BATCH_SIZE) or 0,
            is_sync_re_edit=fields.flag(raw, "is_sync_re_edit", False),
            reconcile_grace_s=fields.seconds(raw, "reconcile_grace", RECONCILE_GRACE_S),
        )


def job_ids(value: object) -> tuple[str, ...]:
    """The ``jobs`` parameter as unique ids in order; a reference may resolve to anything."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise StepFailedError(f"jobs must be a list of job ids, got {type(value).__name__}")
    return tuple(dict.fromkeys(value))


@dataclass(slots=True)
class _Tally:
    accepted: list[str]
    rejected: list[str]


def _check(ctx: ActionContext, params: BatchRetryParams) -> None:
    if not 1 <= params.batch_size <= MAX_BATCH_SIZE:
        raise StepFailedError(
            f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {params.batch_size}"
        )
    if ctx.max_jobs is not None and len(params.jobs) > ctx.max_jobs:
        raise StepFailedError(
            f"would retry {len(params.jobs)} jobs, more than max_jobs {ctx.max_jobs}; "
            "nothing was sent (narrow the selection or raise max_jobs)"
        )


async def run(ctx: ActionContext, params: BatchRetryParams) -> dict[str, Any]:
    _check(ctx, params)
    earlier = triage(ctx, params.jobs, RETRY_EVENTS)
    tally = _Tally(accepted=earlier.done, rejected=earlier.rejected)
    if earlier.unanswered:
        # Sent earlier in this run (a step attempt that was cut short): learn, don't re-send.
        await _reconcile(
            ctx, earlier.unanswered, params, tally, resend_allowed=True, cause="earlier attempt"
        )

    retrying = _retrying(ctx, params, tally, resend_allowed=True)
    await send_in_batches(ctx, earlier.fresh, params.batch_size, retrying)
    return {"accepted": tally.accepted, "rejected": tally.rejected}


def preview(ctx: ActionContext, params: BatchRetryParams) -> dict[str, Any]:
    """What ``run`` would send, recorded as WOULD_RETRY events; nothing is sent."""
    _check(ctx, params)
    fresh = preview_in_batches(ctx, params.jobs, params.batch_size, RETRY_EVENTS)
    return {"accepted": fresh, "rejected": []}


RETRY_EVENTS = MutationEvents(
    would=EventKind.WOULD_RETRY,
    sent=EventKind.RETRY_SENT,
    acknowledged=EventKind.RETRY_ACKNOWLEDGED,
    rejected=EventKind.RETRY_REJECTED,
    reconciled=EventKind.RETRY_RECONCILED,
    unknown=EventKind.RETRY_UNKNOWN,
)
_earlier_retry = RETRY_EVENTS.last


def _retrying(
    ctx: ActionContext, params: BatchRetryParams, tally: _Tally, *, resend_allowed: bool
) -> BatchMutation:
    """batch-retry-task for ``send_batch``; unknown outcomes are reconciled (and with
    ``resend_allowed``, a job still failed after the grace is sent once more)."""

    async def call(batch: list[str]) -> Sequence[BatchActionResult]:
        items = [RetryItem(job_id=j, is_sync_re_edit=params.is_sync_re_edit) for j in batch]
        return await ctx.api.batch_retry(items)

    def acknowledged(record: JobRecord) -> None:
        record.disposition = Disposition.RETRY_ACCEPTED
        record.retry_acknowledged_at = ctx.now()
        tally.accepted.append(record.job_id)

    async def unanswered(batch: list[str], cause: str) -> None:
        await _reconcile(ctx, batch, params, tally, resend_allowed, cause)

    return BatchMutation(
        operation="batch-retry-task",
        events=RETRY_EVENTS,
        call=call,
        acknowledged=acknowledged,
        rejected=lambda job_id, code, message: _reject(ctx, job_id, code, message, tally),
        unanswered=unanswered,
    )


def _reject(
    ctx: ActionContext, job_id: str, code: str | None, message: str | None, tally: _Tally
) -> None:
    record = ctx.jobs.record(
        job_id, EventKind.RETRY_REJECTED, step=ctx.step_id, error_code=code, detail=message
    )
    record.disposition = Disposition.RETRY_REJECTED
    record.error_code = code
    record.reason = f"{code or 'unknown error'}: {message or 'rejected'}"
    tally.rejected.append(job_id)
    ctx.errors.fail()


async def _reconcile(
    ctx: ActionContext,
    batch: list[str],
    params: BatchRetryParams,
    tally: _Tally,
    resend_allowed: bool,
    cause: str,
) -> None:
    """Learn from the jobs' status whether an unanswered retry took effect.

    A job counts as "still failed" only after ``reconcile_grace`` of polling; only then is it
    sent once more, and never a third time.
    """
    remaining = await watch_status(
        ctx,
        batch,
        took_effect=lambda status: status not in _STILL_WAITING,
        on_effect=lambda job_id, status: _reconciled(ctx, job_id, status, cause, tally),
        grace_s=params.reconcile_grace_s,
    )
    # A job is sent at most twice in a run: once, and once more after status showed the first
    # did not take. Counting the sends (not only the flag) also covers step attempts.
    resend = [
        job_id
        for job_id, status in remaining.items()
        if status is not None and resend_allowed and _sends(ctx, job_id) == 1
    ]
    for job_id in remaining:
        if job_id not in resend:
            _unknown(ctx, job_id, cause)
    if resend:
        await send_batch(ctx, resend, _retrying(ctx, params, tally, resend_allowed=False))


def _sends(ctx: ActionContext, job_id: str) -> int:
    record = ctx.jobs.ensure(job_id)
    return sum(1 for event in record.events if event.kind is EventKind.RETRY_SENT)


def _reconciled(ctx: ActionContext, job_id: str, status: str, cause: str, tally: _Tally) -> None:
    record = ctx.jobs.record(
        job_id,
        EventKind.RETRY_RECONCILED,
        step=ctx.step_id,
        status=status,
        detail=f"retry took effect ({cause})",
    )
    record.disposition = Disposition.RETRY_ACCEPTED
    record.retry_acknowledged_at = ctx.now()
    tally.accepted.append(job_id)


def _unknown(ctx: ActionContext, job_id: str, cause: str) -> None:
    record = ctx.jobs.record(job_id, EventKind.RETRY_UNKNOWN, step=ctx.step_id, detail=cause)
    record.disposition = Disposition.RETRY_UNKNOWN
    record.reason = f"retry outcome unknown: {cause}"


async def reconcile_unanswered(ctx: ActionContext) -> None:
    """After the step was cut short: learn from status which sent retries took effect.

    Nothing is sent. A job whose status moved on is recorded as retried; the others keep
    their unanswered send and end as ``retry_unknown``.
    """
    unanswered = [r.job_id for r in ctx.jobs if _earlier_retry(r) is EventKind.RETRY_SENT]
    if not unanswered:
        return
    try:
        results = await ctx.api.batch_status(unanswered)
    except (DrsApiError, TransportError) as exc:
        logger.warning("could not reconcile %d unanswered retries: %s", len(unanswered), exc)
        return
    tally = _Tally(accepted=[], rejected=[])
    for result in results:
        if result.id in unanswered and result.status and result.status not in _STILL_WAITING:
            _reconciled(ctx, result.id, result.status, "the step was cut short", tally)
