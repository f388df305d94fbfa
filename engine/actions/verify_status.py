"""``drs.verify_status``: poll batch-status until every job is healthy, failed, or out of time.

Only unresolved jobs are polled, all of them per request (the client chunks by 100). The wait
between polls adapts: it starts at ``poll_interval``, doubles after each poll in which no job
changed status, up to ``max_poll_interval`` (default 4x ``poll_interval``), and drops back to
``poll_interval`` as soon as one does. Jobs that are stuck cost a few polls, not one every
interval. Time to recover is measured from the retry acknowledgement to the first poll that saw
a healthy status, so it overstates the truth by at most the wait then in force.

The RTO outputs summarise this step's recovered jobs with nearest-rank percentiles (0.0 when
there are none): ``rto_*_s`` over time to recover, and ``drill_rto_p95_s`` over the time from a
pause of this run (``drs.pause_jobs``) to recovery, the outage a drill caused end to end.

A job that still shows its failed status right after an acknowledged retry has not necessarily
failed again: the service may not have started it yet. It counts as failed again once it was
seen starting, or when FAILURE_GRACE_S (at most half the step's time) has passed since the
acknowledgement: a short verify step must not report a job that failed again as timed out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.polling import Pace, poll_until
from engine.actions.spec import Action
from engine.api.types import ERR_TASK_NOT_QUERYABLE, StatusGroup, StatusResult, status_group
from engine.ledger import Disposition, EventKind, JobRecord
from engine.percentiles import nearest_rank

DEFAULT_POLL_INTERVAL_S = 5.0
# max_poll_interval, when not given, as a multiple of poll_interval.
DEFAULT_BACKOFF_LIMIT = 4.0
FAILURE_GRACE_S = 30.0
DEFAULT_TIMEOUT_S = 600.0
_NOT_HEALTHY = frozenset({StatusGroup.FAILED, StatusGroup.PAUSED, StatusGroup.ENDED})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStatusParams:
    jobs: tuple[str, ...]
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    # None: DEFAULT_BACKOFF_LIMIT x poll_interval_s.
    max_poll_interval_s: float | None = None

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> VerifyStatusParams:
        return cls(
            jobs=fields.job_ids(raw.get("jobs")),
            poll_interval_s=fields.seconds(raw, "poll_interval", DEFAULT_POLL_INTERVAL_S),
            max_poll_interval_s=fields.seconds(raw, "max_poll_interval", None),
        )

    @property
    def longest_wait_s(self) -> float:
        given = self.max_poll_interval_s
        return self.poll_interval_s * DEFAULT_BACKOFF_LIMIT if given is None else given


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStatusOutputs:
    recovered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    timed_out: tuple[str, ...] = ()
    recovered_ratio: float = 0.0
    rto_p50_s: float = 0.0
    rto_p95_s: float = 0.0
    rto_max_s: float = 0.0
    drill_rto_p95_s: float = 0.0


@dataclass(slots=True)
class _Watch:
    record: JobRecord
    seen_starting: bool = False
    grace_s: float = FAILURE_GRACE_S
    answered: bool = False  # batch-status gave a status for it in this step


async def run(ctx: ActionContext, params: VerifyStatusParams) -> VerifyStatusOutputs:
    if ctx.deadline is None:
        raise StepFailedError("verify_status needs a deadline; set the step's timeout")
    if params.poll_interval_s <= 0:
        raise StepFailedError(f"poll_interval must be > 0, got {params.poll_interval_s}")
    if params.longest_wait_s < params.poll_interval_s:
        raise StepFailedError(
            f"max_poll_interval must be >= poll_interval, got {params.longest_wait_s:g}s < "
            f"{params.poll_interval_s:g}s"
        )
    # Jobs this step already settled (an earlier attempt, or the run before a resume) stay
    # settled: verification picks up where it stopped.
    grace_s = min(FAILURE_GRACE_S, max(0.0, ctx.deadline - ctx.now()) / 2)
    watches = {
        j: _Watch(record, seen_starting=_seen_starting(record, ctx.step_id), grace_s=grace_s)
        for j in params.jobs
        if not _settled_here(record := ctx.jobs.ensure(j), ctx.step_id)
    }
    remaining = await poll_until(
        ctx,
        list(watches),
        resolved=lambda answer: _observe(ctx, watches[answer.id], answer),
        deadline=ctx.deadline,
        pace=Pace(first=params.poll_interval_s, longest=params.longest_wait_s),
        purpose="verifying",
        known={j: watch.record.last_status for j, watch in watches.items()},
    )
    for job_id in remaining:
        watch = watches[job_id]
        record = watch.record
        if watch.answered:
            reason = f"still {record.last_status or 'unknown'} when the step's timeout ran out"
        else:  # its last status is from before: nobody saw it since
            reason = (
                "batch-status never gave its status during the step; "
                f"last seen {record.last_status or 'nowhere'} before it"
            )
        _settle(ctx, record, Disposition.TIMED_OUT, EventKind.TIMED_OUT, reason)
    return _outputs(ctx, params.jobs)


_VERDICTS = frozenset({EventKind.RECOVERED, EventKind.FAILED_AGAIN, EventKind.NOT_FOUND})


def _settled_here(record: JobRecord, step_id: str) -> bool:
    """Whether this step already gave the job a verdict (a timeout is not one: poll again)."""
    for event in reversed(record.events):  # a loop, not any(): this runs for every job
        if event.step == step_id and event.kind in _VERDICTS:
            return True
    return False


def _seen_starting(record: JobRecord, step_id: str) -> bool:
    """Whether this step already saw the job in progress since its last retry (before a
    resume, say): then a failed status means it failed again, grace or not."""
    for event in reversed(record.events):
        if event.kind in _RETRIED:
            return False
        if (
            event.step == step_id
            and event.kind is EventKind.STATUS_OBSERVED
            and event.status
            and status_group(event.status) not in _SETTLED_GROUPS
        ):
            return True
    return False


_RETRIED = frozenset({EventKind.RETRY_ACKNOWLEDGED, EventKind.RETRY_RECONCILED})
_SETTLED_GROUPS = _NOT_HEALTHY | {StatusGroup.HEALTHY}


def _observe(ctx: ActionContext, watch: _Watch, result: StatusResult) -> bool:
    """Record one status answer; True when the job is resolved."""
    record = watch.record
    watch.answered = True
    if result.status != record.last_status:
        ctx.jobs.record(
            record.job_id, EventKind.STATUS_OBSERVED, step=ctx.step_id, status=result.status
        )
    if result.error_code == ERR_TASK_NOT_QUERYABLE or not result.status:
        record.error_code = result.error_code
        message = result.error_message or "the job cannot be queried"
        _settle(ctx, record, Disposition.NOT_FOUND, EventKind.NOT_FOUND, message)
        return True
    group = status_group(result.status)
    acknowledged_at = record.retry_acknowledged_at
    if group is StatusGroup.HEALTHY:
        if acknowledged_at is None:
            _settle(ctx, record, Disposition.HEALTHY, EventKind.RECOVERED, None)
        else:
            record.time_to_recover_s = round(ctx.now() - acknowledged_at, 3)
            _settle(ctx, record, Disposition.RECOVERED, EventKind.RECOVERED, None)
        return True
    if group in _NOT_HEALTHY:
        if acknowledged_at is None:
            reason = f"status {result.status}"
            _settle(ctx, record, Disposition.FAILED, EventKind.FAILED_AGAIN, reason)
            return True
        in_grace = ctx.now() - acknowledged_at < watch.grace_s
        if watch.seen_starting or not in_grace or group is StatusGroup.ENDED:
            reason = f"status {result.status} after the retry"
            _settle(ctx, record, Disposition.FAILED_AGAIN, EventKind.FAILED_AGAIN, reason)
            ctx.errors.fail()
            return True
        return False
    watch.seen_starting = True  # in progress, or a status this engine does not know yet
    return False


def _settle(
    ctx: ActionContext,
    record: JobRecord,
    disposition: Disposition,
    kind: EventKind,
    reason: str | None,
) -> None:
    record.disposition = disposition
    record.reason = reason
    ctx.jobs.record(record.job_id, kind, step=ctx.step_id, detail=reason)


def _outputs(ctx: ActionContext, ids: tuple[str, ...]) -> VerifyStatusOutputs:
    by: dict[Disposition, list[str]] = {}
    for job_id in ids:
        record = ctx.jobs.ensure(job_id)
        by.setdefault(record.disposition, []).append(job_id)
    recovered = by.get(Disposition.RECOVERED, []) + by.get(Disposition.HEALTHY, [])
    failed = (
        by.get(Disposition.FAILED_AGAIN, [])
        + by.get(Disposition.FAILED, [])
        + by.get(Disposition.NOT_FOUND, [])
    )
    records = [ctx.jobs.ensure(j) for j in by.get(Disposition.RECOVERED, [])]
    ttr = sorted(r.time_to_recover_s for r in records if r.time_to_recover_s is not None)
    drill = sorted(t for t in map(_since_pause, records) if t is not None)
    return VerifyStatusOutputs(
        recovered=tuple(recovered),
        failed=tuple(failed),
        timed_out=tuple(by.get(Disposition.TIMED_OUT, [])),
        recovered_ratio=round(len(recovered) / len(ids), 4) if ids else 1.0,
        rto_p50_s=percentile(ttr, 50),
        rto_p95_s=percentile(ttr, 95),
        rto_max_s=ttr[-1] if ttr else 0.0,
        drill_rto_p95_s=percentile(drill, 95),
    )


def _since_pause(record: JobRecord) -> float | None:
    """Seconds from a pause of this run to the recovery after its resume, if there was one."""
    paused_at, resumed_at = record.paused_at, record.retry_acknowledged_at
    if paused_at is None or resumed_at is None or record.time_to_recover_s is None:
        return None
    if paused_at > resumed_at:
        return None  # paused after the retry this recovery follows: not the drill's outage
    return round(resumed_at + record.time_to_recover_s - paused_at, 3)


def percentile(ordered: Sequence[float], pct: int) -> float:
    """Nearest-rank percentile of sorted values, 0.0 for none (a step's output is a number)."""
    return float(nearest_rank(ordered, pct)) if ordered else 0.0


ACTION = Action(
    name="drs.verify_status",
    params=VerifyStatusParams.from_with,
    outputs=VerifyStatusOutputs,
    run=run,
    default_timeout_s=DEFAULT_TIMEOUT_S,
    self_timed=True,
    runs_in_plan=False,
)
