"""What the mutating batch actions (retry, pause) share: one description of a mutation, and the
one way its batches are sent, answered, reconciled and booked.

A ``Mutation`` says what differs between them (its events and dispositions, which status shows
that it took effect, whether a job may be sent once more after status showed it did not take);
``carry_out`` does the rest. The discipline, for both:

- A job this run already sent is never sent blindly again (``triage``): an answered job keeps its
  answer, an unanswered one is reconciled by status.
- Each batch's intent is durable before the request leaves (``mark_sent``), its outcome before
  the next batch, and the run's error budget or its stop can end the batches (the rest are
  withheld). A request the stop held back at the wire (``RunStoppedError``) was never sent:
  its jobs are withheld too.
- A 4xx means nothing was applied: a rejected batch of several jobs is split and each job sent
  alone, so one refused job (a dual-active parent) cannot sink the rest. Throttled and busy
  answers (429, DRS.M01503, DRS.M01504) were already backed off and re-sent by the client
  (engine.api.resilience): their jobs are rejected, not split (that would only add load).
- A 5xx, a lost connection or a missing result leaves the outcome unknown: the jobs' status is
  watched for a grace period; a job that shows the change took effect is booked as changed. A
  retry (``resend_once``) still not taken after the grace is sent once more, never a third time,
  and only when the evidence says the first did not arrive (``arrival``): a job that failed
  again within seconds of a retry shows the same status as one never retried, so its status
  alone proves nothing. A pause is never re-sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from engine.actions.arrival import arrival, sent_at
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.polling import Pace, poll_until
from engine.api.client import chunks
from engine.api.types import (
    ERR_OPERATION_RUNNING,
    ERR_SERVICE_ABNORMAL,
    ERR_TOO_FREQUENT,
    MAX_JOBS_PER_ACTION,
    BatchActionResult,
    BatchOutcome,
    StatusResult,
)
from engine.errors import DrsApiError, RunStoppedError, StorageError, TransportError
from engine.ledger import Disposition, EventKind, JobRecord, MutationEvents

logger = logging.getLogger(__name__)

# How often status is polled while an unknown outcome is reconciled.
RECONCILE_POLL_S = 3.0
# An unknown outcome: how long the jobs' status is watched before the outcome stays unknown.
RECONCILE_GRACE_S = 15.0
DEFAULT_BATCH_SIZE = MAX_JOBS_PER_ACTION  # the documented maximum: fewest requests

Send = Callable[[list[str]], Awaitable[Sequence[BatchActionResult]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutation:
    """One kind of change a run makes to jobs, and how its answers are booked.

    ``took(ctx, record, at)`` books that the change took effect at run time ``at``: when it was
    acknowledged, or for a reconciled job, ``now`` (retry) or the time it was sent
    (``effect_since_sent``: a pause counts from the send, so a drill's recovery time is
    overstated rather than flattered).
    """

    operation: str  # for logs: "batch-retry-task"
    events: MutationEvents
    took_effect: Callable[[str], bool]  # a status that shows the change took
    took: Callable[[ActionContext, JobRecord, float], None]
    resend_once: bool = False
    effect_since_sent: bool = False
    refusal_prefix: str = ""  # what a rejection's reason starts with
    # The job_action.current_action a job shows while this change is under way (RETRY).
    current_action: str | None = None
    unknown_note: str = ""  # what an unknown outcome's reason adds after "<verb> outcome unknown"


@dataclass(slots=True, kw_only=True)
class Tally:
    """The jobs of one step the mutation took effect on, and those it was refused for."""

    done: list[str]
    rejected: list[str]


def check_batch_size(size: int) -> None:
    if not 1 <= size <= MAX_JOBS_PER_ACTION:
        raise StepFailedError(f"batch_size must be between 1 and {MAX_JOBS_PER_ACTION}, got {size}")


def not_applied_try_later(exc: DrsApiError) -> bool:
    """Throttled or busy: the gateway or the service refused the request before applying it."""
    return exc.http_status == 429 or exc.error_code in {ERR_TOO_FREQUENT, ERR_OPERATION_RUNNING}


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


async def carry_out(
    ctx: ActionContext,
    mutation: Mutation,
    job_ids: Sequence[str],
    *,
    batch_size: int,
    send: Send,
    grace_s: float = RECONCILE_GRACE_S,
) -> Tally:
    """Make the change to ``job_ids`` in batches of ``batch_size``; every job ends booked."""
    earlier = triage(ctx, job_ids, mutation.events)
    tally = Tally(done=earlier.done, rejected=earlier.rejected)
    if ctx.planned is not None:
        await _planned_but_gone(ctx, job_ids, mutation.events)
    sending = _Sending(ctx, mutation, send, tally, grace_s, resend=mutation.resend_once)
    if earlier.unanswered:
        # Sent by an attempt that was cut short: learn what it did, don't re-send blindly.
        await sending.reconcile(earlier.unanswered, "earlier attempt")
    for batch in chunks(earlier.fresh, batch_size):
        if (stopped := ctx.stopped()) is not None:
            ctx.withhold(batch, f"not sent: {stopped}")
            continue
        if ctx.errors.exhausted:
            ctx.withhold(batch)
            continue
        if ctx.planned is not None:
            batch = await admit_planned(ctx, batch)
            if not batch:
                continue
        ctx.errors.attempt(len(batch))
        await sending.send(batch)
        await ctx.jobs.commit()
    await ctx.jobs.commit()
    return tally


async def admit_planned(ctx: ActionContext, batch: list[str]) -> list[str]:
    """Applying a plan file: the jobs of ``batch`` the plan lists whose status, read again just
    before the batch leaves, is still the one they were planned on. The others are left alone,
    ``drifted`` (planned on X, now Y; or not in the plan), and never sent."""
    planned = ctx.planned or {}
    listed = [j for j in batch if j in planned]
    now: dict[str, str] = {}
    if listed:
        try:
            now = {r.id: r.status for r in await ctx.api.batch_status(listed)}
        except (DrsApiError, TransportError) as exc:
            reason = f"not sent: its status could not be read again before the batch ({exc})"
            for job_id in listed:
                _drifted(ctx, job_id, reason)
            return []
    admitted = []
    for job_id in batch:
        if job_id not in planned:
            _drifted(ctx, job_id, "not in the plan: selected now, but nobody approved it")
        elif now.get(job_id) != planned[job_id]:
            seen = now.get(job_id) or "not answered"
            _drifted(ctx, job_id, f"planned on {planned[job_id]}, now {seen}")
        else:
            admitted.append(job_id)
    return admitted


async def _planned_but_gone(
    ctx: ActionContext, job_ids: Sequence[str], events: MutationEvents
) -> None:
    """Planned jobs this step is no longer given (the selection no longer picks them: their
    status moved) are drifted too, so every planned job ends in the report.

    Except one the selection's settle wait saw the service bring back itself in this run
    (``recovered_by_service``): nothing needs sending, and it is healthy by the service's own
    retry, the one change since the plan no human has to look at. A planned job found healthy
    without that evidence (someone retried it, or the runbook does not settle) stays drifted:
    nothing says who changed it."""
    given = set(job_ids)
    gone = []
    for job_id in ctx.planned or {}:
        record = ctx.jobs.ensure(job_id)
        unsent = events.last(record) is None and record.disposition not in _CONCLUDED_BEFORE
        if job_id not in given and unsent:
            gone.append(job_id)
    if not gone:
        return
    try:
        now = {r.id: r.status for r in await ctx.api.batch_status(gone)}
    except (DrsApiError, TransportError):
        now = {}
    planned = ctx.planned or {}
    for job_id in gone:
        seen = now.get(job_id) or "not answered"
        _drifted(ctx, job_id, f"planned on {planned[job_id]}, now {seen}: no longer selected")


# What a planned job the step is not given may already be, and keeps (``_planned_but_gone``).
_CONCLUDED_BEFORE = frozenset({Disposition.DRIFTED, Disposition.RECOVERED_BY_SERVICE})


def _drifted(ctx: ActionContext, job_id: str, reason: str) -> None:
    ctx.jobs.conclude(
        job_id, Disposition.DRIFTED, EventKind.DRIFTED, step=ctx.step_id, reason=reason
    )


def preview(
    ctx: ActionContext, mutation: Mutation, job_ids: Sequence[str], *, batch_size: int
) -> list[str]:
    """What ``carry_out`` would send (jobs this run never sent), recorded as ``would`` events
    with their batch number; nothing is sent."""
    events = mutation.events
    fresh = [j for j in job_ids if events.last(ctx.jobs.ensure(j)) is None]
    for number, batch in enumerate(chunks(fresh, batch_size), start=1):
        for job_id in batch:
            ctx.jobs.record(job_id, events.would, step=ctx.step_id, detail=f"batch {number}")
    return fresh


async def reconcile_unanswered(ctx: ActionContext, mutation: Mutation) -> None:
    """After the step was cut short: learn from one status query which sent requests took
    effect. Nothing is sent. The others keep their unanswered send (the report calls them
    unknown), so a resumed run reconciles them with the full grace instead of forgetting a
    change that may still take effect."""
    events = mutation.events
    unanswered = [r.job_id for r in ctx.jobs if events.last(r) is events.sent]
    if not unanswered:
        return
    try:
        results = await ctx.api.batch_status(unanswered)
    except (DrsApiError, TransportError) as exc:
        logger.warning(
            "could not reconcile %d unanswered %s requests: %s",
            len(unanswered),
            events.verb,
            exc,
        )
        return
    booking = _Sending(ctx, mutation, None, Tally(done=[], rejected=[]), 0.0, resend=False)
    for result in results:
        if result.id in unanswered and result.status and mutation.took_effect(result.status):
            booking.reconciled(result.id, result.status, "the step was cut short")


class _Sending:
    """One step's requests of one mutation: sending a batch, and booking what became of each job.

    ``send`` is None for a booking-only instance (reconciling after the step was cut short).
    """

    def __init__(
        self,
        ctx: ActionContext,
        mutation: Mutation,
        send: Send | None,
        tally: Tally,
        grace_s: float,
        *,
        resend: bool,
    ) -> None:
        self._ctx = ctx
        self._mutation = mutation
        self._send = send
        self._tally = tally
        self._grace_s = grace_s
        self._resend = resend

    async def send(self, batch: list[str]) -> None:
        """One request; each job ends acknowledged, rejected, or reconciled."""
        assert self._send is not None
        ctx, events = self._ctx, self._mutation.events
        try:
            await _mark_sent(ctx, batch, events.sent)
        except StorageError:
            # The intent is not on disk, so the request does not leave: it never was sent
            # (its event is taken back) and the report says why.
            for job_id in batch:
                record = ctx.jobs.ensure(job_id)
                if record.events and record.events[-1].kind is events.sent:
                    record.events.pop()
            ctx.withhold(batch, "not sent: the journal could not be written")
            raise
        try:
            results = await self._send(batch)
        except RunStoppedError as exc:
            # Held back at the wire (it waited for its turn while the stop tripped, or for a
            # re-send after the service refused it): nothing of it was applied. Its intent is
            # in the journal already, so the withheld event follows it (a resume reconciles).
            ctx.withhold(batch, f"{exc}; held back before it left")
            await ctx.jobs.commit()
            return
        except DrsApiError as exc:
            if exc.http_status == 400 and len(batch) > 1 and not not_applied_try_later(exc):
                logger.info(
                    "%s batch of %d rejected with %s; sending each job alone",
                    self._mutation.operation,
                    len(batch),
                    exc,
                )
                for job_id in batch:
                    await self.send([job_id])
                return
            if not_applied_try_later(exc) or (
                400 <= exc.http_status < 500 and exc.error_code != ERR_SERVICE_ABNORMAL
            ):  # a 422 DRS.M00004 is the service failing, as a 500 is: outcome unknown
                for job_id in batch:
                    self.rejected(job_id, exc.error_code, exc.error_msg)
                return
            cause = str(exc)
        except TransportError as exc:
            cause = str(exc)
        else:
            answered, odd = self._apply(batch, results)
            missing = [j for j in batch if j not in answered and j not in odd]
            if missing:
                await self.reconcile(missing, "no result returned")
            if odd:
                await self.reconcile(odd, "the answer for it was odd")
            return
        logger.warning(
            "%s outcome unknown for %d job(s): %s", self._mutation.operation, len(batch), cause
        )
        await self.reconcile(batch, cause)

    def _apply(
        self, batch: Sequence[str], results: Sequence[BatchActionResult]
    ) -> tuple[set[str], list[str]]:
        """Book each job's answer; returns the jobs answered, and those whose answer was odd
        (named twice, or with a status the API does not define): reconcile those."""
        ctx, operation = self._ctx, self._mutation.operation
        asked = set(batch)
        times = Counter(result.id for result in results)
        strangers = [job_id for job_id in times if job_id not in asked]
        if strangers:
            shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
            ctx.notice(
                f"{operation} answered for {len(strangers)} job(s) not in the request "
                f"({shown}); those answers were ignored"
            )
        twice = [job_id for job_id, n in times.items() if n > 1 and job_id in asked]
        if twice:
            ctx.notice(
                f"{operation} answered {len(twice)} job(s) more than once "
                f"({', '.join(twice[:5])}); what became of them was learnt from their status"
            )
        odd = list(twice)
        answered: set[str] = set()
        for result in results:
            if result.id not in asked or result.id in answered or result.id in twice:
                continue
            if result.status is BatchOutcome.UNKNOWN:
                ctx.notice(
                    f"{operation} answered job {result.id} with status {result.said}, which "
                    "the API does not define; what became of it was learnt from its status"
                )
                odd.append(result.id)
                continue
            answered.add(result.id)
            self._book(result)
        return answered, odd

    def _book(self, result: BatchActionResult) -> None:
        ctx, events = self._ctx, self._mutation.events
        record = ctx.jobs.ensure(result.id)
        if result.status is BatchOutcome.SUCCESS:
            ctx.jobs.record(result.id, events.acknowledged, step=ctx.step_id)
            self._mutation.took(ctx, record, ctx.now())
            self._tally.done.append(result.id)
        else:
            self.rejected(result.id, result.error_code, result.error_msg)

    def rejected(self, job_id: str, code: str | None, message: str | None) -> None:
        ctx, mutation = self._ctx, self._mutation
        record = ctx.jobs.record(
            job_id, mutation.events.rejected, step=ctx.step_id, error_code=code, detail=message
        )
        record.disposition = mutation.events.refused
        record.error_code = code
        record.reason = (
            f"{mutation.refusal_prefix}{code or 'unknown error'}: {message or 'rejected'}"
        )
        self._tally.rejected.append(job_id)
        ctx.errors.fail()

    async def reconcile(self, batch: list[str], cause: str) -> None:
        """Learn from the jobs' status whether an unanswered request took effect.

        A job counts as not taken only after the grace of polling; only then, and only for a
        mutation that may, is it sent once more, and never a third time.
        """
        ctx, mutation = self._ctx, self._mutation
        # Whatever the request answered for other jobs must survive a crash while this waits.
        await ctx.jobs.commit()

        def resolved(answer: StatusResult) -> bool:
            if not answer.status or not mutation.took_effect(answer.status):
                return False
            self.reconciled(answer.id, answer.status, cause)
            return True

        remaining = await poll_until(
            ctx,
            batch,
            resolved=resolved,
            deadline=ctx.now() + self._grace_s,
            pace=Pace.fixed(RECONCILE_POLL_S),
            purpose="reconciling",
        )
        # A job is sent at most twice in a run: once, and once more after status showed the
        # first did not take. Counting the sends (not only the flag) also covers step attempts.
        sent = mutation.events.sent
        resend = [
            job_id
            for job_id, status in remaining.items()
            if status is not None and self._resend and _sends(ctx, job_id, sent) == 1
        ]
        evidence = await arrival(ctx, mutation.events, mutation.current_action, resend, remaining)
        resend = [job_id for job_id in resend if evidence[job_id].arrived is False]
        for job_id, status in remaining.items():
            if job_id in resend:
                continue
            found = evidence.get(job_id)
            if found is not None and found.arrived and status is not None:
                self.reconciled(job_id, status, f"{cause}; {found.why}", took_at_send=True)
            else:
                self._unknown(job_id, cause if found is None else f"{cause}; {found.why}")
        if resend:
            again = _Sending(ctx, mutation, self._send, self._tally, self._grace_s, resend=False)
            await again.send(resend)

    def reconciled(
        self, job_id: str, status: str, cause: str, *, took_at_send: bool = False
    ) -> None:
        """Book that the change took effect; ``took_at_send`` when it took, and has since
        been undone (a retry whose job failed again), so its time is the send's."""
        ctx, mutation = self._ctx, self._mutation
        events = mutation.events
        record = ctx.jobs.ensure(job_id)
        at = ctx.now()
        if mutation.effect_since_sent or took_at_send:
            at = sent_at(record, events.sent)
        ctx.jobs.record(
            job_id,
            events.reconciled,
            step=ctx.step_id,
            status=status,
            detail=f"{events.verb} took effect ({cause})",
        )
        mutation.took(ctx, record, at)
        self._tally.done.append(job_id)

    def _unknown(self, job_id: str, cause: str) -> None:
        ctx, mutation = self._ctx, self._mutation
        events = mutation.events
        record = ctx.jobs.record(job_id, events.unknown, step=ctx.step_id, detail=cause)
        record.disposition = events.unanswered
        record.reason = f"{events.verb} outcome unknown{mutation.unknown_note}: {cause}"


async def _mark_sent(ctx: ActionContext, batch: Sequence[str], kind: EventKind) -> None:
    """Record that these jobs are about to be sent, durably, before the request leaves: a run
    killed while the request is in flight is resumed knowing it may have been applied."""
    for job_id in batch:
        ctx.jobs.record(job_id, kind, step=ctx.step_id)
    await ctx.jobs.commit()


def _sends(ctx: ActionContext, job_id: str, sent: EventKind) -> int:
    record = ctx.jobs.ensure(job_id)
    return sum(1 for event in record.events if event.kind is sent)
