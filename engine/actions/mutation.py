"""What the mutating batch actions (retry, pause) share: batching, sending one batch and sorting
its answers, and watching status to learn whether an unanswered request took effect."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from engine.actions.context import ActionContext, EventKind, JobRecord
from engine.api.types import (
    ERR_OPERATION_RUNNING,
    ERR_TOO_FREQUENT,
    BatchActionResult,
    BatchOutcome,
)
from engine.errors import DrsApiError, TransportError

logger = logging.getLogger(__name__)

# How often status is polled while an unknown outcome is reconciled.
RECONCILE_POLL_S = 3.0


def batches(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def not_applied_try_later(exc: DrsApiError) -> bool:
    """Throttled or busy: the gateway or the service refused the request before applying it."""
    return exc.http_status == 429 or exc.error_code in {ERR_TOO_FREQUENT, ERR_OPERATION_RUNNING}


async def watch_status(
    ctx: ActionContext,
    job_ids: Sequence[str],
    *,
    took_effect: Callable[[str], bool],
    on_effect: Callable[[str, str], None],
    grace_s: float,
) -> dict[str, str | None]:
    """Poll the jobs' status for up to ``grace_s`` until each shows the change took effect.

    The service may show the old status for a moment after accepting a request, so one look is
    not enough. ``on_effect(job_id, status)`` is called for each job that moved; the rest are
    returned with their last status seen (None if status never answered for them).
    """
    # Whatever the request answered for other jobs must survive a crash while this one waits.
    await ctx.jobs.commit()
    last: dict[str, str] = {}
    pending = list(job_ids)
    deadline = ctx.now() + grace_s
    while pending:
        try:
            last.update((r.id, r.status) for r in await ctx.api.batch_status(pending))
        except (DrsApiError, TransportError) as exc:
            logger.warning("status query while reconciling failed: %s", exc)
        for job_id in [j for j in pending if last.get(j) and took_effect(last[j])]:
            pending.remove(job_id)
            on_effect(job_id, last[job_id])
        if not pending or ctx.now() >= deadline:
            break
        await ctx.sleep(min(RECONCILE_POLL_S, max(0.0, deadline - ctx.now())))
    return {job_id: last.get(job_id) for job_id in pending}


@dataclass(frozen=True, slots=True, kw_only=True)
class MutationEvents:
    """The event kinds one mutation (retry, pause) records for a job."""

    would: EventKind  # in a plan
    sent: EventKind
    acknowledged: EventKind
    rejected: EventKind
    reconciled: EventKind
    unknown: EventKind

    def last(self, record: JobRecord) -> EventKind | None:
        """The job's last event of this mutation in this run: a job is never sent twice
        blindly."""
        kinds = {self.sent, self.acknowledged, self.rejected, self.reconciled, self.unknown}
        for event in reversed(record.events):
            if event.kind in kinds:
                return event.kind
        return None


@dataclass(slots=True, kw_only=True)
class Triage:
    """Where each job named by a step stands with this mutation, earlier in the run."""

    fresh: list[str]  # never sent
    unanswered: list[str]  # sent by an attempt that was cut short: reconcile, never re-send
    done: list[str]  # acknowledged or reconciled as taken
    rejected: list[str]


def triage(ctx: ActionContext, job_ids: Sequence[str], events: MutationEvents) -> Triage:
    sorted_ = Triage(fresh=[], unanswered=[], done=[], rejected=[])
    for job_id in job_ids:
        earlier = events.last(ctx.jobs.ensure(job_id))
        if earlier is None:
            sorted_.fresh.append(job_id)
        elif earlier is events.sent:
            sorted_.unanswered.append(job_id)
        elif earlier is events.rejected:
            sorted_.rejected.append(job_id)
        elif earlier is not events.unknown:
            sorted_.done.append(job_id)
    return sorted_


async def mark_sent(ctx: ActionContext, batch: Sequence[str], kind: EventKind) -> None:
    """Record that these jobs are about to be sent, durably, before the request leaves: a run
    killed while the request is in flight is resumed knowing it may have been applied."""
    for job_id in batch:
        ctx.jobs.record(job_id, kind, step=ctx.step_id)
    await ctx.jobs.commit()


async def send_in_batches(
    ctx: ActionContext, job_ids: Sequence[str], size: int, how: BatchMutation
) -> None:
    """Send batch after batch until the run's error budget is spent; withhold the rest.

    Each batch's outcome is made durable before the next batch is sent.
    """
    for batch in batches(job_ids, size):
        if ctx.errors.exhausted:
            ctx.withhold(batch)
            continue
        ctx.errors.attempt(len(batch))
        await send_batch(ctx, batch, how)
        await ctx.jobs.commit()
    await ctx.jobs.commit()


def preview_in_batches(
    ctx: ActionContext, job_ids: Sequence[str], size: int, events: MutationEvents
) -> list[str]:
    """What ``send_in_batches`` would send (jobs this run never sent), recorded as ``would``
    events with their batch number; nothing is sent."""
    fresh = [j for j in job_ids if events.last(ctx.jobs.ensure(j)) is None]
    for number, batch in enumerate(batches(fresh, size), start=1):
        for job_id in batch:
            ctx.jobs.record(job_id, events.would, step=ctx.step_id, detail=f"batch {number}")
    return fresh


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMutation:
    """How one mutating action sends a batch and records what became of each job in it."""

    operation: str  # for logs: "batch-retry-task"
    events: MutationEvents
    call: Callable[[list[str]], Awaitable[Sequence[BatchActionResult]]]
    acknowledged: Callable[[JobRecord], None]  # after its acknowledged event is recorded
    rejected: Callable[[str, str | None, str | None], None]  # job id, error code, message
    unanswered: Callable[[list[str], str], Awaitable[None]]  # reconcile them, with the cause


async def send_batch(ctx: ActionContext, batch: list[str], how: BatchMutation) -> None:
    """One request; each job ends acknowledged, rejected, or handed to ``how.unanswered``.

    A 4xx means nothing was applied: a rejected batch of several jobs is split and each job sent
    alone, so one refused job (a dual-active parent) cannot sink the rest. Throttled and busy
    answers were already backed off and re-sent by the client: their jobs are rejected, not
    split (that would only add load). A 5xx, a lost connection or a missing result leaves the
    outcome unknown.
    """
    await mark_sent(ctx, batch, how.events.sent)
    try:
        results = await how.call(batch)
    except DrsApiError as exc:
        if exc.http_status == 400 and len(batch) > 1 and not not_applied_try_later(exc):
            logger.info(
                "%s batch of %d rejected with %s; sending each job alone",
                how.operation,
                len(batch),
                exc,
            )
            for job_id in batch:
                await send_batch(ctx, [job_id], how)
            return
        if not_applied_try_later(exc) or 400 <= exc.http_status < 500:
            for job_id in batch:
                how.rejected(job_id, exc.error_code, exc.error_msg)
            return
        cause = str(exc)
    except TransportError as exc:
        cause = str(exc)
    else:
        answered = _apply_results(ctx, results, how)
        missing = [j for j in batch if j not in answered]
        if missing:
            await how.unanswered(missing, "no result returned")
        return
    logger.warning("%s outcome unknown for %d job(s): %s", how.operation, len(batch), cause)
    await how.unanswered(batch, cause)


def _apply_results(
    ctx: ActionContext, results: Sequence[BatchActionResult], how: BatchMutation
) -> set[str]:
    answered: set[str] = set()
    for result in results:
        record = ctx.jobs.get(result.id)
        if record is None or result.id in answered:
            continue  # not ours, or answered twice: the first answer stands
        answered.add(result.id)
        if result.status is BatchOutcome.SUCCESS:
            ctx.jobs.record(result.id, how.events.acknowledged, step=ctx.step_id)
            how.acknowledged(record)
        else:
            how.rejected(result.id, result.error_code, result.error_msg)
    return answered
