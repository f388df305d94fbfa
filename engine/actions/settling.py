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
  meanwhile ends ``recovered_by_service`` (good: nothing was sent); one that fails again after
  the service's retry waits a whole ``settle`` more (also when the retry fell between two polls:
  before a job is acted on, batch-detail is asked once more, and an ``update_time`` later than
  the failure it waited out starts its wait again, at most ``SERVICE_TRIES`` times); one still
  failed when its ``settle`` is over stays selected; one in progress then (the service is at
  it), or gone (ended), is skipped with that reason, as a selection skips every job in progress.

The wait ends by the step's deadline (less a reserve to return in time). A job still failed for
less than ``settle`` then is left alone too (skipped, with a notice): the runbook asked not to
race the service, so a timeout shorter than ``settle`` must not make it. A plan does not wait:
it says which jobs a run would wait for, and how long at most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.actions.context import ActionContext
from engine.actions.polling import Pace, poll_until, query_deadline, wait_deadline
from engine.api.client import JobDetail
from engine.api.types import JobInfo, StatusGroup, StatusResult, status_group
from engine.errors import DrsApiError, TransportError
from engine.ledger import Disposition, EventKind

# Polls during the wait: at least this often, at most every quarter of the settle.
MAX_POLL_S = 15.0
# How many times the service retries a failed task by itself (../shared/drs-api.md): at most
# that many failures of its retries can fall between two polls.
SERVICE_TRIES = 3
# Two update_times this close are one change (the server's times are whole seconds or ms).
_SAME_TIME_S = 1.0


@dataclass(slots=True, kw_only=True)
class Young:
    """A selected failed job the service may still be retrying: ``ready_at`` (run clock) is
    when it will have been failed for ``settle``; a new failure during the wait moves it."""

    job_id: str
    ready_at: float
    why: str
    down: bool = True  # its last status was failed (or paused), not in progress
    # batch-detail's update_time of the failure it waits out (server epoch seconds), when known:
    # a later one means it failed again, the service's retry falling between two polls.
    failed_at: float | None = None


async def settle(
    ctx: ActionContext, settle_s: float, jobs: Sequence[JobInfo], *, planning: bool
) -> set[str]:
    """Wait for the failed ``jobs`` the service may still be retrying; returns the ids that
    must not be acted on (recovered by the service, still in its hands, or gone)."""
    young = await _young(ctx, settle_s, [j for j in jobs if _failed(j)])
    if not young:
        return set()
    deadline = wait_deadline(ctx, max(y.ready_at for y in young.values()) - ctx.now())
    longest = deadline - ctx.now()
    if planning:  # what a run would do: the plan's own words, not a warning
        ctx.note(
            f"{len(young)} selected job(s) failed less than settle {settle_s:g}s ago or have an "
            f"action under way: a run waits up to {longest:.0f}s for the service's own retries "
            "before it acts on them"
        )
        return set()
    for item in young.values():
        detail = f"{item.why}: the service may be retrying it; left alone up to {longest:.0f}s"
        ctx.jobs.record(item.job_id, EventKind.SETTLING, step=ctx.step_id, detail=detail)
    await ctx.jobs.commit()
    started = ctx.now()
    dropped: set[str] = set()

    def leave(job_id: str, reason: str, kind: EventKind, status: str) -> bool:
        disposition = (
            Disposition.RECOVERED_BY_SERVICE
            if kind is EventKind.RECOVERED_BY_SERVICE
            else Disposition.SKIPPED
        )
        ctx.jobs.conclude(job_id, disposition, kind, step=ctx.step_id, reason=reason, status=status)
        dropped.add(job_id)
        return True

    def settled(answer: StatusResult) -> bool:
        item, status = young[answer.id], answer.status
        group, now = status_group(status), ctx.now()
        if group is StatusGroup.HEALTHY:
            reason = (
                f"the service's own retry brought it back ({status}) {now - started:.0f}s "
                "into the settle wait, before the runbook sent anything"
            )
            return leave(answer.id, reason, EventKind.RECOVERED_BY_SERVICE, status)
        if group is StatusGroup.ENDED:
            reason = f"{status} during the settle wait: left alone"
            return leave(answer.id, reason, EventKind.SKIPPED, status)
        if group in (StatusGroup.FAILED, StatusGroup.PAUSED):
            if not item.down:  # failed again after the service's retry: settle again
                item.ready_at, item.down = now + settle_s, True
            return now >= item.ready_at
        item.down = False  # in progress: the service is at it
        if now < item.ready_at:
            return False
        reason = f"still {status} after settling: the service is retrying it itself; left alone"
        return leave(answer.id, reason, EventKind.SKIPPED, status)

    every = min(MAX_POLL_S, max(1.0, settle_s / 4))

    async def wait_out(job_ids: list[str]) -> dict[str, str | None]:
        return await poll_until(
            ctx,
            job_ids,
            resolved=settled,
            deadline=wait_deadline(ctx, None),
            pace=Pace.fixed(every),
            purpose="settling",
            known={j: ctx.jobs.ensure(j).last_status for j in job_ids},
        )

    left = await wait_out(list(young))
    # A retry of the service's that fell between two polls shows no status in progress, only a
    # later update_time: asked once more before a job is acted on, bounded by its 3 tries.
    ready = [j for j in young if j not in dropped and j not in left]
    for _ in range(SERVICE_TRIES):
        again = await _failed_again(ctx, settle_s, [young[j] for j in ready])
        if not again:
            break
        more = await wait_out(again)
        left.update(more)
        ready = [j for j in again if j not in dropped and j not in more]
    cut_short = []
    for job_id, status in left.items():
        item = young[job_id]
        if status is None:
            continue  # never answered: acted on as selected (its failure is what we know)
        if item.down:
            cut_short.append(job_id)
            why = f"failed only {settle_s - (item.ready_at - ctx.now()):.0f}s ago"
        else:
            why = f"still {status}: the service is retrying it itself"
        reason = (
            f"{why} when the select step's timeout ended the settle wait; left alone "
            "(give the step a timeout longer than settle)"
        )
        leave(job_id, reason, EventKind.SKIPPED, status)
    if cut_short:
        ctx.notice(
            f"the select step's timeout ended the settle wait with {len(cut_short)} job(s) "
            f"failed less than settle {settle_s:g}s ago: they were left alone, not acted on"
        )
    await ctx.jobs.commit()
    return dropped


async def _failed_again(ctx: ActionContext, settle_s: float, ready: Sequence[Young]) -> list[str]:
    """The jobs of ``ready`` (settled, about to be acted on) whose batch-detail update_time is
    later than the failure they waited out and less than ``settle_s`` ago: each waits again from
    that failure (with a ``settling`` event). A detail that cannot be read changes nothing."""
    known = [item for item in ready if item.failed_at is not None]
    if not known:
        return []
    details, _ = await _details(ctx, [y.job_id for y in known])  # unread: what was seen stands
    wall_now, now = time.time(), ctx.now()
    again = []
    for item in known:
        detail = details.get(item.job_id)
        age = None if detail is None else _age(detail, wall_now)
        if detail is None or age is None or detail.updated_at is None:
            continue
        assert item.failed_at is not None
        if detail.updated_at <= item.failed_at + _SAME_TIME_S or age >= settle_s:
            continue
        item.ready_at, item.failed_at = now + settle_s - max(age, 0.0), detail.updated_at
        item.why = f"failed again {age:.0f}s ago, the service's own retry between two polls"
        detail_said = f"{item.why}: left alone up to {item.ready_at - now:.0f}s more"
        ctx.jobs.record(item.job_id, EventKind.SETTLING, step=ctx.step_id, detail=detail_said)
        again.append(item.job_id)
    if again:
        await ctx.jobs.commit()
    return again


def _failed(job: JobInfo) -> bool:
    """Only failed jobs are the service's to retry; a current_action extends their wait."""
    return status_group(job.status) is StatusGroup.FAILED


async def _young(ctx: ActionContext, settle_s: float, jobs: Sequence[JobInfo]) -> dict[str, Young]:
    """The jobs that failed less than ``settle_s`` ago (or whose failure has no readable time,
    or that have an action under way), each with when it will be ready."""
    if not jobs:
        return {}
    details, failed = await _details(ctx, [j.id for j in jobs])
    if failed is not None:
        ctx.notice(f"batch-detail failed, so every failed job waits the whole settle ({failed})")
    wall_now, now = time.time(), ctx.now()
    young: dict[str, Young] = {}
    unknown = 0
    for job in jobs:
        detail = details.get(job.id)
        age = None if detail is None else _age(detail, wall_now)
        if acting := job.job_action.current_action:
            why = f"job_action.current_action is {acting}"
            young[job.id] = Young(job_id=job.id, ready_at=now + settle_s, why=why)
        elif detail is None or age is None:
            unknown += 1
            why = "failed at a time batch-detail does not tell"
            young[job.id] = Young(job_id=job.id, ready_at=now + settle_s, why=why)
        elif age < settle_s:
            ready_at = now + settle_s - max(age, 0.0)
            young[job.id] = Young(
                job_id=job.id,
                ready_at=ready_at,
                why=f"failed {age:.0f}s ago",
                failed_at=detail.updated_at,
            )
    if unknown:
        ctx.notice(
            f"{unknown} failed job(s) have no readable update_time (or no Date header came): "
            f"each waits the whole settle {settle_s:g}s"
        )
    return young


async def _details(
    ctx: ActionContext, job_ids: Sequence[str]
) -> tuple[dict[str, JobDetail], str | None]:
    """batch-detail of ``job_ids`` by id, within the step's deadline; ``({}, why)`` when it
    could not be read."""
    budget = None if ctx.deadline is None else query_deadline(ctx, ctx.deadline)
    try:
        async with asyncio.timeout(budget):
            return {d.id: d for d in await ctx.api.batch_detail(job_ids)}, None
    except (DrsApiError, TransportError, TimeoutError) as exc:
        return {}, str(exc) or "no answer by the step's deadline"


def _age(detail: JobDetail, wall_now: float) -> float | None:
    """How long ago, on our clock, the job last changed (``update_time`` set against ours by
    the answer's ``Date``), or None when the answer does not tell."""
    if detail.updated_at is None or detail.clock_skew_s is None:
        return None
    return wall_now + detail.clock_skew_s - detail.updated_at
