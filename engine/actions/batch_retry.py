"""``drs.batch_retry``: retry failed and resume paused jobs in batches, recording every answer.

batch-retry-task is not idempotent. A batch whose outcome is unknown (connection lost after
sending, 5xx, missing results) is reconciled by querying the jobs' status: jobs that moved on
were retried; only jobs still failed or paused are sent once more, in a request of their own.
A 4xx means the whole request was rejected and nothing applied, so a rejected batch of several
jobs is split and each job sent alone: one bad job (a dual-active parent, say) cannot sink the rest.
Throttled and busy answers (429, DRS.M01503, DRS.M01504) are backed off and re-sent by the client
(engine.api.resilience); if they persist, the batch's jobs are reported rejected, not split.
The discipline is ``engine.actions.mutation``'s, shared with ``drs.pause_jobs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields, mutation
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import Action
from engine.api.types import (
    ACTION_RETRY,
    FAILED_STATUSES,
    PAUSED_STATUSES,
    BatchActionResult,
    RetryItem,
)
from engine.ledger import RETRY_EVENTS, Disposition, JobRecord

_STILL_WAITING = frozenset(FAILED_STATUSES | PAUSED_STATUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRetryParams:
    jobs: tuple[str, ...]
    batch_size: int = mutation.DEFAULT_BATCH_SIZE
    is_sync_re_edit: bool = False
    reconcile_grace_s: float = mutation.RECONCILE_GRACE_S

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> BatchRetryParams:
        return cls(
            jobs=fields.job_ids(raw.get("jobs")),
            batch_size=fields.whole(raw, "batch_size", mutation.DEFAULT_BATCH_SIZE) or 0,
            is_sync_re_edit=fields.flag(raw, "is_sync_re_edit", False),
            reconcile_grace_s=fields.seconds(raw, "reconcile_grace", mutation.RECONCILE_GRACE_S),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRetryOutputs:
    accepted: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


def _retried(ctx: ActionContext, record: JobRecord, at: float) -> None:
    record.disposition = Disposition.RETRY_ACCEPTED
    record.retry_acknowledged_at = at


RETRY = mutation.Mutation(
    operation="batch-retry-task",
    events=RETRY_EVENTS,
    took_effect=lambda status: status not in _STILL_WAITING,
    took=_retried,
    resend_once=True,
    current_action=ACTION_RETRY,
)


def _check(ctx: ActionContext, params: BatchRetryParams) -> None:
    mutation.check_batch_size(params.batch_size)
    if ctx.max_jobs is not None and len(params.jobs) > ctx.max_jobs:
        raise StepFailedError(
            f"would retry {len(params.jobs)} jobs, more than max_jobs {ctx.max_jobs}; "
            "nothing was sent (narrow the selection or raise max_jobs)"
        )


async def run(ctx: ActionContext, params: BatchRetryParams) -> BatchRetryOutputs:
    _check(ctx, params)

    async def send(batch: list[str]) -> Sequence[BatchActionResult]:
        items = [RetryItem(job_id=j, is_sync_re_edit=params.is_sync_re_edit) for j in batch]
        return await ctx.api.batch_retry(items)

    tally = await mutation.carry_out(
        ctx,
        RETRY,
        params.jobs,
        batch_size=params.batch_size,
        send=send,
        grace_s=params.reconcile_grace_s,
    )
    return BatchRetryOutputs(accepted=tuple(tally.done), rejected=tuple(tally.rejected))


def preview(ctx: ActionContext, params: BatchRetryParams) -> BatchRetryOutputs:
    """What ``run`` would send, recorded as WOULD_RETRY events; nothing is sent."""
    _check(ctx, params)
    fresh = mutation.preview(ctx, RETRY, params.jobs, batch_size=params.batch_size)
    return BatchRetryOutputs(accepted=tuple(fresh))


async def reconcile_unanswered(ctx: ActionContext) -> None:
    """After the step was cut short: learn from status which sent retries took effect.

    Nothing is sent. A job whose status moved on is recorded as retried; the others keep
    their unanswered send and end as ``retry_unknown``.
    """
    await mutation.reconcile_unanswered(ctx, RETRY)


ACTION = Action(
    name="drs.batch_retry",
    params=BatchRetryParams.from_with,
    outputs=BatchRetryOutputs,
    run=run,
    mutating=True,
    preview=preview,
    after_failure=reconcile_unanswered,
)
