"""``drs.pause_jobs``: pause running jobs in batches (a drill's fault), recording every answer.

This is not a pause-and-forget tool: a paused job is left in ``PAUSING`` (paused) with the
disposition ``paused``, which a run does not count as healthy until a later ``drs.batch_retry``
resumes it and a ``drs.verify_status`` sees it running again.

batch-pause-task is not idempotent, and it is answered like batch-retry-task, so the discipline
is the same as ``drs.batch_retry``'s (``engine.actions.mutation``) with one difference: a pause
is never sent twice. After an unknown outcome (5xx, connection lost, missing results) the jobs'
status is watched for a grace period: a job showing ``PAUSING`` was paused; one still running is
recorded as ``pause_unknown``, never re-sent.

A pause the service acknowledged may take a while to take effect (the job keeps its running
status meanwhile). The step waits, polling batch-status, until each acknowledged job shows
``PAUSING`` or ``confirm_within`` (default 60 s) passes, so a drill's resume is not sent to a job
that is not paused yet (the service would refuse it). A job's ``paused_at`` — where a drill's
outage starts — is the first poll that saw it paused. One still not paused by then keeps its
disposition ``paused``, with a reason and a notice saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields, mutation
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.polling import Pace, poll_until, wait_deadline
from engine.actions.spec import Action
from engine.api.types import PAUSED_STATUSES, BatchActionResult, StatusResult
from engine.ledger import PAUSE_EVENTS, Disposition, JobRecord

PAUSE_MODES = ("target", "all")
CONFIRM_WITHIN_S = 60.0
CONFIRM_POLL_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseJobsParams:
    jobs: tuple[str, ...]
    batch_size: int = mutation.DEFAULT_BATCH_SIZE
    pause_mode: str = ""  # required (the schema says so): the API refuses a pause without it
    sample: int | None = None
    reconcile_grace_s: float = mutation.RECONCILE_GRACE_S
    confirm_within_s: float = CONFIRM_WITHIN_S

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> PauseJobsParams:
        return cls(
            jobs=fields.job_ids(raw.get("jobs")),
            batch_size=fields.whole(raw, "batch_size", mutation.DEFAULT_BATCH_SIZE) or 0,
            pause_mode=fields.text(raw, "pause_mode", ""),
            sample=fields.whole(raw, "sample", None),
            confirm_within_s=fields.seconds(raw, "confirm_within", CONFIRM_WITHIN_S),
        )

    @property
    def chosen(self) -> tuple[str, ...]:
        """The jobs to pause: the first ``sample`` of ``jobs`` (all of them without a sample)."""
        return self.jobs if self.sample is None else self.jobs[: self.sample]


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseJobsOutputs:
    paused: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


def _paused(ctx: ActionContext, record: JobRecord, at: float) -> None:
    record.disposition = Disposition.PAUSED
    record.paused_at = at
    record.reason = f"paused by step '{ctx.step_id}' and not resumed"


PAUSE = mutation.Mutation(
    operation="batch-pause-task",
    events=PAUSE_EVENTS,
    took_effect=lambda status: status in PAUSED_STATUSES,
    took=_paused,
    effect_since_sent=True,
    refusal_prefix="pause refused: ",
    unknown_note=" (not re-sent)",
)


def _check(ctx: ActionContext, params: PauseJobsParams) -> None:
    mutation.check_batch_size(params.batch_size)
    if params.pause_mode not in PAUSE_MODES:
        raise StepFailedError(f"pause_mode must be target or all, got {params.pause_mode!r}")
    if params.sample is not None and params.sample < 1:
        raise StepFailedError(f"sample must be >= 1, got {params.sample}")
    chosen = params.chosen
    if ctx.max_jobs is not None and len(chosen) > ctx.max_jobs:
        raise StepFailedError(
            f"would pause {len(chosen)} jobs, more than max_jobs {ctx.max_jobs}; "
            "nothing was sent (pause a smaller sample or raise max_jobs)"
        )


async def run(ctx: ActionContext, params: PauseJobsParams) -> PauseJobsOutputs:
    _check(ctx, params)

    async def send(batch: list[str]) -> Sequence[BatchActionResult]:
        return await ctx.api.batch_pause(batch, pause_mode=params.pause_mode)

    tally = await mutation.carry_out(
        ctx,
        PAUSE,
        params.chosen,
        batch_size=params.batch_size,
        send=send,
        grace_s=params.reconcile_grace_s,
    )
    await _confirm(ctx, tally.done, params.confirm_within_s)
    return PauseJobsOutputs(paused=tuple(tally.done), rejected=tuple(tally.rejected))


async def _confirm(ctx: ActionContext, job_ids: Sequence[str], within_s: float) -> None:
    """Wait until each acknowledged pause shows ``PAUSING``; ``paused_at`` is when it did."""
    waiting = [j for j in job_ids if ctx.jobs.ensure(j).last_status not in PAUSED_STATUSES]
    if not waiting or within_s <= 0:
        return
    started = ctx.now()

    def paused(answer: StatusResult) -> bool:
        record = ctx.jobs.observe(answer.id, answer.status, step=ctx.step_id)
        if answer.status not in PAUSED_STATUSES:
            return False
        record.paused_at = ctx.now()
        return True

    left = await poll_until(
        ctx,
        waiting,
        resolved=paused,
        deadline=wait_deadline(ctx, within_s),  # by the step's deadline: its outputs count
        pace=Pace.fixed(CONFIRM_POLL_S),  # paused_at is late by at most this
        purpose="confirming pauses",
        known={j: ctx.jobs.ensure(j).last_status for j in waiting},
    )
    waited = ctx.now() - started
    for job_id, status in left.items():
        record = ctx.jobs.ensure(job_id)
        record.reason = (
            f"pause acknowledged, but still {status or 'unknown'} after {waited:g}s; "
            "a resume may be refused until it takes effect"
        )
    if left:
        ctx.notice(
            f"{len(left)} acknowledged pause(s) had not taken effect after {waited:g}s "
            f"({', '.join(list(left)[:3])}{', ...' if len(left) > 3 else ''})"
        )
    await ctx.jobs.commit()


def preview(ctx: ActionContext, params: PauseJobsParams) -> PauseJobsOutputs:
    """What ``run`` would send, recorded as WOULD_PAUSE events; nothing is sent."""
    _check(ctx, params)
    fresh = mutation.preview(ctx, PAUSE, params.chosen, batch_size=params.batch_size)
    return PauseJobsOutputs(paused=tuple(fresh))


async def reconcile_unanswered(ctx: ActionContext) -> None:
    """After the step was cut short: learn from status which sent pauses took effect.

    Nothing is sent. A job showing ``PAUSING`` is recorded as paused; the others keep their
    unanswered send (the report calls them ``pause_unknown``), so a resumed run reconciles them
    with the full grace instead of forgetting a pause that may still take effect.
    """
    await mutation.reconcile_unanswered(ctx, PAUSE)


ACTION = Action(
    name="drs.pause_jobs",
    params=PauseJobsParams.from_with,
    outputs=PauseJobsOutputs,
    run=run,
    mutating=True,
    preview=preview,
    after_failure=reconcile_unanswered,
    self_timed=True,  # the confirmation wait ends by the step's deadline, with its outputs
)
