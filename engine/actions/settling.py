"""Leaving the service's own retries alone: ``drs.select_jobs``'s ``settle`` option.

The service retries a failed task by itself (3 times for non-network causes; after a network
fault it resumes on its own: ../shared/drs-api.md), so a job seen failed may be recovering
without us, and a retry sent now would race the service's. With ``settle``, a selected job
that failed less than ``settle`` ago, or whose ``job_action.current_action`` says an action is
under way, is not acted on until it has been failed for ``settle``:

- batch-detail's ``update_time`` (on the server's clock, set against ours by its ``Date``
  header) says when it failed; a job whose time tells no instant, or without a ``Date``
  header, is taken to have failed just now (it waits the whole ``settle``, and a notice says so);
- its status is then polled until its ``settle`` has passed. A job the service brings back
  meanwhile ends ``recovered_by_service`` (good: nothing was sent); one still failed stays
  selected; one still in progress when the last job's ``settle`` is over (the service is at it)
  is skipped with that reason, as a selection skips every job in progress.

The wait is bounded by the step's deadline. A plan does not wait: it says which jobs a run
would wait for, and how long at most.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.actions.context import ActionContext
from engine.actions.polling import Pace, poll_until
from engine.api.types import JobInfo, StatusGroup, StatusResult, status_group
from engine.errors import DrsApiError, TransportError
from engine.ledger import Disposition, EventKind

# The settle wait ends this long before the step's deadline, so the step returns in time.
DEADLINE_RESERVE_S = 5.0
# Polls during the wait: at least this often, at most every quarter of the settle.
MAX_POLL_S = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Young:
    """A selected job the service may still be retrying: ``ready_at`` (run clock) is when it
    will have been failed for ``settle``."""

    job_id: str
    ready_at: float
    why: str


async def settle(
    ctx: ActionContext, settle_s: float, jobs: Sequence[JobInfo], *, planning: bool
) -> set[str]:
    """Wait for the failed ``jobs`` the service may still be retrying; returns the ids that
    must not be acted on (recovered by the service, or still in its hands)."""
    young = await _young(ctx, settle_s, [j for j in jobs if _failed_or_acting(j)])
    if not young:
        return set()
    longest = max(y.ready_at for y in young.values()) - ctx.now()
    if planning:
        ctx.notice(
            f"{len(young)} selected job(s) failed less than settle {settle_s:g}s ago or have an "
            f"action under way: a run waits up to {longest:.0f}s for the service's own retries "
            "before it acts on them"
        )
        return set()
    for item in young.values():
        detail = f"{item.why}: the service may be retrying it; left alone up to {longest:.0f}s"
        ctx.jobs.record(item.job_id, EventKind.SETTLING, step=ctx.step_id, detail=detail)
    await ctx.jobs.commit()
    deadline = ctx.now() + longest
    if ctx.deadline is not None:
        deadline = min(deadline, ctx.deadline - DEADLINE_RESERVE_S)
    started = ctx.now()
    dropped: set[str] = set()

    def settled(answer: StatusResult) -> bool:
        group = status_group(answer.status)
        if group is StatusGroup.HEALTHY:
            reason = (
                f"the service's own retry brought it back ({answer.status}) "
                f"{ctx.now() - started:.0f}s into the settle wait, before the runbook sent anything"
            )
            ctx.jobs.conclude(
                answer.id,
                Disposition.RECOVERED_BY_SERVICE,
                EventKind.RECOVERED_BY_SERVICE,
                step=ctx.step_id,
                reason=reason,
                status=answer.status,
            )
            dropped.add(answer.id)
            return True
        if group is StatusGroup.FAILED:
            return ctx.now() >= young[answer.id].ready_at
        return False

    every = min(MAX_POLL_S, max(1.0, settle_s / 4))
    left = await poll_until(
        ctx,
        list(young),
        resolved=settled,
        deadline=deadline,
        pace=Pace.fixed(every),
        purpose="settling",
        known={j: ctx.jobs.ensure(j).last_status for j in young},
    )
    for job_id, status in left.items():
        if status is None or status_group(status) is StatusGroup.FAILED:
            continue  # failed all along (or never answered): acted on as selected
        reason = f"still {status} after settling: the service is retrying it itself; left alone"
        ctx.jobs.conclude(
            job_id,
            Disposition.SKIPPED,
            EventKind.SKIPPED,
            step=ctx.step_id,
            reason=reason,
            status=status,
        )
        dropped.add(job_id)
    await ctx.jobs.commit()
    return dropped


def _failed_or_acting(job: JobInfo) -> bool:
    return status_group(job.status) is StatusGroup.FAILED or bool(job.job_action.current_action)


async def _young(ctx: ActionContext, settle_s: float, jobs: Sequence[JobInfo]) -> dict[str, Young]:
    """The jobs that failed less than ``settle_s`` ago (or whose failure has no readable time,
    or that have an action under way), each with when it will be ready."""
    if not jobs:
        return {}
    try:
        details = {d.id: d for d in await ctx.api.batch_detail([j.id for j in jobs])}
    except (DrsApiError, TransportError) as exc:
        ctx.notice(f"batch-detail failed, so every failed job waits the whole settle ({exc})")
        details = {}
    wall_now, now = time.time(), ctx.now()
    young: dict[str, Young] = {}
    unknown = 0
    for job in jobs:
        detail = details.get(job.id)
        if acting := job.job_action.current_action:
            why = f"job_action.current_action is {acting}"
            young[job.id] = Young(job_id=job.id, ready_at=now + settle_s, why=why)
        elif detail is None or detail.updated_at is None or detail.clock_skew_s is None:
            unknown += 1
            why = "failed at a time batch-detail does not tell"
            young[job.id] = Young(job_id=job.id, ready_at=now + settle_s, why=why)
        elif (age := wall_now + detail.clock_skew_s - detail.updated_at) < settle_s:
            ready_at = now + settle_s - max(age, 0.0)
            young[job.id] = Young(job_id=job.id, ready_at=ready_at, why=f"failed {age:.0f}s ago")
    if unknown:
        ctx.notice(
            f"{unknown} failed job(s) have no readable update_time (or no Date header came): "
            f"each waits the whole settle {settle_s:g}s"
        )
    return young
