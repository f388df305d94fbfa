"""``drs.pause_jobs``: pause running jobs in batches (a drill's fault), recording every answer.

This is not a pause-and-forget tool: a paused job is left in ``PAUSING`` (paused) with the
disposition ``paused``, which a run does not count as healthy until a later ``drs.batch_retry``
resumes it and a ``drs.verify_status`` sees it running again.

batch-pause-task is not idempotent, and it is answered like batch-retry-task, so the discipline
is the same as ``drs.batch_retry``'s with one difference: a pause is never sent twice. A 4xx means
nothing was applied, so a rejected batch of several jobs is split and each job sent alone. After
an unknown outcome (5xx, connection lost, missing results) the jobs' status is watched for a
grace period: a job showing ``PAUSING`` was paused; one still running is recorded as
``pause_unknown``, never re-sent. Throttled and busy answers (429, DRS.M01503, DRS.M01504) are
backed off and re-sent by the client; if they persist the batch's jobs are rejected, not split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.batch_retry import job_ids
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
    send_in_batches,
    triage,
    watch_status,
)
from engine.api.types import (
    PAUSED_STATUSES,
    BatchActionResult,
)
from engine.errors import DrsApiError, TransportError

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100  # the documented maximum: fewest requests
MAX_BATCH_SIZE = 100
PAUSE_MODES = ("target", "all")
# An unknown outcome: how long the jobs' status is watched before a pause counts as unknown.
RECONCILE_GRACE_S = 15.0

PAUSE_EVENTS = MutationEvents(
    would=EventKind.WOULD_PAUSE,
    sent=EventKind.PAUSE_SENT,
    acknowledged=EventKind.PAUSE_ACKNOWLEDGED,
    rejected=EventKind.PAUSE_REJECTED,
    reconciled=EventKind.PAUSE_RECONCILED,
    unknown=EventKind.PAUSE_UNKNOWN,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseJobsParams:
    jobs: tuple[str, ...]
    batch_size: int = DEFAULT_BATCH_SIZE
    pause_mode: str | None = None
    sample: int | None = None
    reconcile_grace_s: float = RECONCILE_GRACE_S

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> PauseJobsParams:
        return cls(
            jobs=job_ids(raw.get("jobs")),
            batch_size=fields.whole(raw, "batch_size", DEFAULT_BATCH_SIZE) or 0,
            pause_mode=fields.text(raw, "pause_mode", "") or None,
            sample=fields.whole(raw, "sample", None),
        )

    @property
    def chosen(self) -> tuple[str, ...]:
        """The jobs to pause: the first ``sample`` of ``jobs`` (all of them without a sample)."""
        return self.jobs if self.sample is None else self.jobs[: self.sample]


@dataclass(slots=True)
class _Tally:
    paused: list[str]
    rejected: list[str]


def _check(ctx: ActionContext, params: PauseJobsParams) -> None:
    if not 1 <= params.batch_size <= MAX_BATCH_SIZE:
        raise StepFailedError(
            f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {params.batch_size}"
        )
    if params.pause_mode is not None and params.pause_mode not in PAUSE_MODES:
        raise StepFailedError(f"pause_mode must be target or all, got {params.pause_mode!r}")
    if params.sample is not None and params.sample < 1:
        raise StepFailedError(f"sample must be >= 1, got {params.sample}")
    chosen = params.chosen
    if ctx.max_jobs is not None and len(chosen) > ctx.max_jobs:
        raise StepFailedError(
            f"would pause {len(chosen)} jobs, more than max_jobs {ctx.max_jobs}; "
            "nothing was sent (pause a smaller sample or raise max_jobs)"
        )


earlier_pause = PAUSE_EVENTS.last


async def run(ctx: ActionContext, params: PauseJobsParams) -> dict[str, Any]:
    _check(ctx, params)
    earlier = triage(ctx, params.chosen, PAUSE_EVENTS)
    tally = _Tally(paused=earlier.done, rejected=earlier.rejected)
    if earlier.unanswered:
        # Sent by an attempt that was cut short: learn what it did, never send again.
        await _reconcile(ctx, earlier.unanswered, params, tally, "earlier attempt")

    await send_in_batches(ctx, earlier.fresh, params.batch_size, _pausing(ctx, params, tally))
    return {"paused": tally.paused, "rejected": tally.rejected}


def preview(ctx: ActionContext, params: PauseJobsParams) -> dict[str, Any]:
    """What ``run`` would send, recorded as WOULD_PAUSE events; nothing is sent."""
    _check(ctx, params)
    fresh = preview_in_batches(ctx, params.chosen, params.batch_size, PAUSE_EVENTS)
    return {"paused": fresh, "rejected": []}


def _pausing(ctx: ActionContext, params: PauseJobsParams, tally: _Tally) -> BatchMutation:
    """batch-pause-task for ``send_batch``; an unknown outcome is reconciled, never re-sent."""

    async def call(batch: list[str]) -> Sequence[BatchActionResult]:
        return await ctx.api.batch_pause(batch, pause_mode=params.pause_mode)

    async def unanswered(batch: list[str], cause: str) -> None:
        await _reconcile(ctx, batch, params, tally, cause)

    return BatchMutation(
        operation="batch-pause-task",
        events=PAUSE_EVENTS,
        call=call,
        acknowledged=lambda record: _paused(ctx, record, ctx.now(), tally),
        rejected=lambda job_id, code, message: _reject(ctx, job_id, code, message, tally),
        unanswered=unanswered,
    )


def _paused(ctx: ActionContext, record: JobRecord, at: float, tally: _Tally) -> None:
    record.disposition = Disposition.PAUSED
    record.paused_at = at
    record.reason = f"paused by step '{ctx.step_id}' and not resumed"
    tally.paused.append(record.job_id)


def _reject(
    ctx: ActionContext, job_id: str, code: str | None, message: str | None, tally: _Tally
) -> None:
    record = ctx.jobs.record(
        job_id, EventKind.PAUSE_REJECTED, step=ctx.step_id, error_code=code, detail=message
    )
    record.disposition = Disposition.PAUSE_REJECTED
    record.error_code = code
    record.reason = f"pause refused: {code or 'unknown error'}: {message or 'rejected'}"
    tally.rejected.append(job_id)
    ctx.errors.fail()


async def _reconcile(
    ctx: ActionContext, batch: list[str], params: PauseJobsParams, tally: _Tally, cause: str
) -> None:
    """Learn from the jobs' status whether an unanswered pause took effect; never re-send.

    A job not paused after ``reconcile_grace`` of polling is ``pause_unknown``.
    """
    remaining = await watch_status(
        ctx,
        batch,
        took_effect=lambda status: status in PAUSED_STATUSES,
        on_effect=lambda job_id, status: _reconciled(ctx, job_id, status, cause, tally),
        grace_s=params.reconcile_grace_s,
    )
    for job_id in remaining:
        _unknown(ctx, job_id, cause)


def _reconciled(ctx: ActionContext, job_id: str, status: str, cause: str, tally: _Tally) -> None:
    record = ctx.jobs.ensure(job_id)
    # The pause took effect at some point after it was sent: count from the send, so the
    # drill's recovery time is overstated rather than flattered.
    sent = next(e.t for e in reversed(record.events) if e.kind is EventKind.PAUSE_SENT)
    ctx.jobs.record(
        job_id,
        EventKind.PAUSE_RECONCILED,
        step=ctx.step_id,
        status=status,
        detail=f"pause took effect ({cause})",
    )
    _paused(ctx, record, sent, tally)


def _unknown(ctx: ActionContext, job_id: str, cause: str) -> None:
    record = ctx.jobs.record(job_id, EventKind.PAUSE_UNKNOWN, step=ctx.step_id, detail=cause)
    record.disposition = Disposition.PAUSE_UNKNOWN
    record.reason = f"pause outcome unknown (not re-sent): {cause}"


async def reconcile_unanswered(ctx: ActionContext) -> None:
    """After the step was cut short: learn from status which sent pauses took effect.

    Nothing is sent. A job showing ``PAUSING`` is recorded as paused; the others keep their
    unanswered send (the report calls them ``pause_unknown``), so a resumed run reconciles them
    with the full grace instead of forgetting a pause that may still take effect.
    """
    unanswered = [r.job_id for r in ctx.jobs if earlier_pause(r) is EventKind.PAUSE_SENT]
    if not unanswered:
        return
    cause = "the step was cut short"
    try:
        results = await ctx.api.batch_status(unanswered)
    except (DrsApiError, TransportError) as exc:
        logger.warning("could not reconcile %d unanswered pauses: %s", len(unanswered), exc)
        results = []
    tally = _Tally(paused=[], rejected=[])
    for result in results:
        if result.id in unanswered and result.status in PAUSED_STATUSES:
            _reconciled(ctx, result.id, result.status, cause, tally)
