"""``drs.verify_status``: poll batch-status until every job is healthy, failed, or out of time.

Only unresolved jobs are polled, all of them per request (the client chunks by 100). The wait
between polls adapts: it starts at ``poll_interval``, doubles after each poll in which no job
changed status, up to ``max_poll_interval`` (default 4x ``poll_interval``), and drops back to
``poll_interval`` as soon as one does. Jobs that are stuck cost a few polls, not one every
interval. Time to recover is measured from the retry acknowledgement to the first poll of the
run of healthy polls that made the job recovered (below), so it overstates the truth by at most
the wait then in force.

The RTO outputs are nearest-rank percentiles. ``rto_*_s`` summarise this step's recovered jobs'
time to recover (0.0 when there are none). ``drill_rto_p95_s`` is over the jobs of the step
this run paused (``drs.pause_jobs``), from the pause to recovery, the outage a drill caused end
to end, a job that did not recover counting as an outage without end
(``engine.percentiles.pause_outages``, as the report's drill figures): when the 95th percentile
falls on such a job it has no value (an assert on it fails), never a figure over the jobs that
did recover. A step none of whose jobs this run paused is no drill's: it gives no
``drill_rto_p95_s`` at all (absent from its outputs, not 0.0).

A job that still shows its failed status right after an acknowledged retry has not necessarily
failed again: the service may not have started it yet. It counts as failed again once it was
seen starting, or when FAILURE_GRACE_S (at most half the step's time) has passed since the
acknowledgement: a short verify step must not report a job that failed again as timed out.

Healthy is what a DRS operator means by it, not the status alone (docs/execution.md, "When is a
job healthy?"):

- A poll finds a job *healthy* when its status is a running one and, with ``max_delay`` set and
  the job in its incremental phase (``engine.api.progress.DELAY_STATUSES``), batch-progress gave
  a delay at or under ``max_delay``. A poll for which the service gave no delay (the request
  failed, or the answer left the job out) is no observation: it neither extends a run of
  healthy polls nor breaks one. One batch-progress request per chunk of 100 ids per poll, for
  the running jobs only, and none at all without ``max_delay``.
- A job *recovers* after ``stable_for`` healthy polls in a row; its time to recover runs to the
  first poll of that run.
- A *flap* is a healthy poll followed by one that is not (a failed, paused or in-progress
  status, or a delay over ``max_delay``). A job that flapped keeps being watched, since the
  service may retry it by itself, until it holds a stable run (recovered), flaps FLAP_LIMIT
  times, stays failed or paused for the failure grace, or the deadline comes: then it is
  ``flapping``, which spends the error budget as failing again does. An ended status is
  ``failed_again`` at once, healthy before or not. With ``stable_for: 1`` the first healthy poll
  is the verdict, so nothing flaps.
- At the deadline, a job whose last delay read was over ``max_delay`` and that was never
  healthy is ``lagging`` (with that delay); one in the middle of a stable run, or running while
  the service never gave its delay in the step, is ``timed_out`` with a reason that says which.

A job that an earlier verify step already found recovered since its retry keeps its time to
recover when a later one (a drill's steady-state re-check) sees it healthy again.

Stable runs are counted in memory: a resumed run starts each job's count again (a job needs
``stable_for`` more healthy polls), which can only make the verdict stricter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.polling import Pace, poll_until, query_deadline
from engine.actions.spec import Action
from engine.api.progress import DELAY_STATUSES
from engine.api.types import ERR_TASK_NOT_QUERYABLE, StatusGroup, StatusResult, status_group
from engine.errors import DrsApiError, TransportError
from engine.ledger import Disposition, EventKind, JobRecord
from engine.percentiles import nearest_rank, pause_outages
from engine.units import describe_delay

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 5.0
# max_poll_interval, when not given, as a multiple of poll_interval.
DEFAULT_BACKOFF_LIMIT = 4.0
FAILURE_GRACE_S = 30.0
DEFAULT_TIMEOUT_S = 600.0
# A job that went from healthy to not this many times is flapping at once, deadline or not.
FLAP_LIMIT = 3
MAX_STABLE_FOR = 1000
_NOT_HEALTHY = frozenset({StatusGroup.FAILED, StatusGroup.PAUSED, StatusGroup.ENDED})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStatusParams:
    jobs: tuple[str, ...]
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    # None: DEFAULT_BACKOFF_LIMIT x poll_interval_s.
    max_poll_interval_s: float | None = None
    # None: the delay is not judged (and batch-progress never asked).
    max_delay_s: float | None = None
    stable_for: int = 1

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> VerifyStatusParams:
        return cls(
            jobs=fields.job_ids(raw.get("jobs")),
            poll_interval_s=fields.seconds(raw, "poll_interval", DEFAULT_POLL_INTERVAL_S),
            max_poll_interval_s=fields.seconds(raw, "max_poll_interval", None),
            max_delay_s=fields.seconds(raw, "max_delay", None),
            stable_for=_polls(fields.whole(raw, "stable_for", 1)),
        )

    @property
    def longest_wait_s(self) -> float:
        given = self.max_poll_interval_s
        return self.poll_interval_s * DEFAULT_BACKOFF_LIMIT if given is None else given


def _polls(value: int | None) -> int:
    return 1 if value is None else value


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyStatusOutputs:
    recovered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    timed_out: tuple[str, ...] = ()
    lagging: tuple[str, ...] = ()
    flapping: tuple[str, ...] = ()
    recovered_ratio: float = 0.0
    rto_p50_s: float = 0.0
    rto_p95_s: float = 0.0
    rto_max_s: float = 0.0
    # None (absent from the outputs) when this run paused none of the step's jobs.
    drill_rto_p95_s: float | None = None
    # The largest last delay among this step's jobs (0.0 when none was read).
    delay_max_s: float = 0.0


@dataclass(slots=True)
class _Watch:
    record: JobRecord
    seen_starting: bool = False
    grace_s: float = FAILURE_GRACE_S
    answered: bool = False  # batch-status gave a status for it in this step
    healthy_polls: int = 0  # healthy polls in a row, up to now
    run_started_at: float | None = None  # the first poll of that run
    first_healthy_at: float | None = None
    flaps: int = 0
    behind: bool = False  # the last delay read was over max_delay (until a healthy poll)
    delay_read: bool = False  # batch-progress gave a delay for it in this step
    # Since when it has shown a failed or paused status after being healthy (a flap).
    down_since: float | None = None


@dataclass(slots=True, kw_only=True)
class _Judge:
    """The step's rules, and this round's delays: the one place a poll is judged healthy."""

    ctx: ActionContext
    params: VerifyStatusParams
    watches: dict[str, _Watch]
    delays: dict[str, float | None]

    async def read_delays(self, answers: Mapping[str, StatusResult], deadline: float) -> bool:
        """Ask batch-progress for the jobs this round found running in their incremental
        phase; a failed request leaves their delays unknown this round (not healthy)."""
        self.delays = {}
        running = [i for i, a in answers.items() if a.status in DELAY_STATUSES]
        if not running:
            return False
        try:
            async with asyncio.timeout(query_deadline(self.ctx, deadline)):
                results = await self.ctx.api.batch_progress(running)
        except (DrsApiError, TransportError, TimeoutError) as exc:
            why = str(exc) or "no answer by the deadline"
            logger.warning("batch-progress failed while verifying, polling on: %s", why)
            return False
        self.delays = {r.job_id: r.delay_s for r in results}
        changed = False
        for job_id, delay in self.delays.items():
            if delay is None:
                continue
            record = self.watches[job_id].record
            was_over = self.over(record.delay_s)
            self.ctx.jobs.read_delay(record, delay)
            changed = changed or was_over != self.over(delay)
        return changed

    def over(self, delay: float | None) -> bool:
        limit = self.params.max_delay_s
        return limit is not None and (delay is None or delay > limit)

    def healthy(self, result: StatusResult) -> bool | None:
        """Whether this poll finds the job healthy (its status is a running one); None when
        its delay counts and the service gave none this poll: no observation."""
        if self.params.max_delay_s is None or result.status not in DELAY_STATUSES:
            return True
        delay = self.delays.get(result.id)
        if delay is None:
            return None
        self.watches[result.id].delay_read = True
        return not self.over(delay)


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
    if not 1 <= params.stable_for <= MAX_STABLE_FOR:
        raise StepFailedError(
            f"stable_for must be between 1 and {MAX_STABLE_FOR} polls, got {params.stable_for}"
        )
    # Jobs this step already settled (an earlier attempt, or the run before a resume) stay
    # settled: verification picks up where it stopped.
    grace_s = min(FAILURE_GRACE_S, max(0.0, ctx.deadline - ctx.now()) / 2)
    watches = {
        j: _Watch(record, seen_starting=_seen_starting(record, ctx.step_id), grace_s=grace_s)
        for j in params.jobs
        if not _settled_here(record := ctx.jobs.ensure(j), ctx.step_id)
    }
    judge = _Judge(ctx=ctx, params=params, watches=watches, delays={})
    remaining = await poll_until(
        ctx,
        list(watches),
        resolved=lambda answer: _observe(judge, watches[answer.id], answer),
        deadline=ctx.deadline,
        pace=Pace(first=params.poll_interval_s, longest=params.longest_wait_s),
        purpose="verifying",
        known={j: watch.record.last_status for j, watch in watches.items()},
        each_round=None if params.max_delay_s is None else judge.read_delays,
    )
    for job_id in remaining:
        _at_the_deadline(ctx, params, watches[job_id])
    return _outputs(ctx, params.jobs)


def _at_the_deadline(ctx: ActionContext, params: VerifyStatusParams, watch: _Watch) -> None:
    """The verdict on a job still unresolved when the step's time ran out."""
    record = watch.record
    status = record.last_status or "unknown"
    if watch.flaps:
        _settle(ctx, record, Disposition.FLAPPING, EventKind.FLAPPING, _flapped(watch, status))
        ctx.errors.fail()
        return
    if watch.healthy_polls:
        reason = (
            f"healthy for {watch.healthy_polls} of the {params.stable_for} polls in a row it "
            "needed when the step's timeout ran out"
        )
    elif watch.behind and status in DELAY_STATUSES:  # running, and last read behind
        reason = (
            f"running ({status}), but {_s(record.delay_s)} behind, over max_delay "
            f"{_s(params.max_delay_s)}, when the step's timeout ran out"
        )
        _settle(ctx, record, Disposition.LAGGING, EventKind.LAGGING, reason)
        return
    elif status in DELAY_STATUSES and params.max_delay_s is not None and not watch.delay_read:
        reason = f"running ({status}), but batch-progress never gave its delay"
    elif watch.answered:
        reason = f"still {status} when the step's timeout ran out"
    else:  # its last status is from before: nobody saw it since
        reason = (
            "batch-status never gave its status during the step; "
            f"last seen {record.last_status or 'nowhere'} before it"
        )
    _settle(ctx, record, Disposition.TIMED_OUT, EventKind.TIMED_OUT, reason)


def _flapped(watch: _Watch, status: str) -> str:
    """Why a job is flapping: its flaps, and how it was last seen."""
    behind = watch.behind and status in DELAY_STATUSES
    last = f"{_s(watch.record.delay_s)} behind" if behind else status
    return f"{_flaps(watch)}; last seen {last}"


def _flaps(watch: _Watch) -> str:
    first, since = watch.first_healthy_at, watch.record.retry_acknowledged_at
    when = "" if first is None or since is None else f" {first - since:.1f}s after the retry"
    count = "1 flap" if watch.flaps == 1 else f"{watch.flaps} flaps"
    return f"healthy{when}, then unhealthy again ({count})"


def _s(seconds: float | None) -> str:
    return "an unknown time" if seconds is None else describe_delay(seconds)


_VERDICTS = frozenset(
    {EventKind.RECOVERED, EventKind.FAILED_AGAIN, EventKind.NOT_FOUND, EventKind.FLAPPING}
)


def _settled_here(record: JobRecord, step_id: str) -> bool:
    """Whether this step already gave the job a verdict (a timeout or lagging is not one:
    poll again)."""
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


def _observe(judge: _Judge, watch: _Watch, result: StatusResult) -> bool:
    """Record one status answer; True when the job is resolved."""
    ctx = judge.ctx
    record = watch.record
    watch.answered = True
    ctx.jobs.observe(record.job_id, result.status, step=ctx.step_id)
    if result.error_code == ERR_TASK_NOT_QUERYABLE or not result.status:
        record.error_code = result.error_code
        message = result.error_message or "the job cannot be queried"
        _settle(ctx, record, Disposition.NOT_FOUND, EventKind.NOT_FOUND, message)
        return True
    group = status_group(result.status)
    if group is StatusGroup.HEALTHY:
        watch.seen_starting = True
        watch.down_since = None
        healthy = judge.healthy(result)
        if healthy is None:
            return False  # no delay this poll: no observation
        if healthy:
            return _healthy_poll(judge, watch)
        _fell_behind(judge, watch)
        return _broke(judge, watch)
    if watch.first_healthy_at is not None and group is not StatusGroup.ENDED:
        # Healthy before in this step: the service may be retrying it by itself. Watched on
        # until it holds a stable run, flaps too often, stays down for the grace, or the
        # deadline comes.
        if group in _NOT_HEALTHY:
            watch.down_since = watch.down_since if watch.down_since is not None else ctx.now()
        else:
            watch.down_since = None
        if _broke(judge, watch):
            return True
        if watch.down_since is not None and ctx.now() - watch.down_since >= watch.grace_s:
            _flapping(judge, watch)
            return True
        return False
    acknowledged_at = record.retry_acknowledged_at
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


def _healthy_poll(judge: _Judge, watch: _Watch) -> bool:
    """One healthy poll: the job recovers once it had ``stable_for`` of them in a row."""
    ctx, record = judge.ctx, watch.record
    now = ctx.now()
    if watch.behind:
        detail = f"{_s(record.delay_s)} behind"
        ctx.jobs.record(record.job_id, EventKind.CAUGHT_UP, step=ctx.step_id, detail=detail)
        watch.behind = False
    if watch.healthy_polls == 0:
        watch.run_started_at = now
    if watch.first_healthy_at is None:
        watch.first_healthy_at = now
    watch.healthy_polls += 1
    if watch.healthy_polls < judge.params.stable_for:
        return False
    acknowledged_at = record.retry_acknowledged_at
    reason = _flaps(watch) + ", before it held" if watch.flaps else None
    if acknowledged_at is None:
        _settle(ctx, record, Disposition.HEALTHY, EventKind.RECOVERED, reason)
    elif record.disposition is Disposition.RECOVERED and record.time_to_recover_s is not None:
        # Recovered since its retry in an earlier verify: this one (a drill's steady state
        # after recovery) confirms it, and it keeps the time it took to recover.
        _settle(ctx, record, Disposition.RECOVERED, EventKind.RECOVERED, reason)
    else:
        started = watch.run_started_at if watch.run_started_at is not None else now
        record.time_to_recover_s = round(started - acknowledged_at, 3)
        _settle(ctx, record, Disposition.RECOVERED, EventKind.RECOVERED, reason)
    return True


def _fell_behind(judge: _Judge, watch: _Watch) -> None:
    """A poll found the job running, but behind max_delay: an event when it crosses over."""
    ctx, record = judge.ctx, watch.record
    if not watch.behind:
        detail = f"{_s(record.delay_s)} behind, over max_delay {_s(judge.params.max_delay_s)}"
        ctx.jobs.record(record.job_id, EventKind.FELL_BEHIND, step=ctx.step_id, detail=detail)
    watch.behind = True


def _broke(judge: _Judge, watch: _Watch) -> bool:
    """A poll that is not healthy: a run of healthy polls it ends is a flap. True when the
    job flapped FLAP_LIMIT times (flapping at once)."""
    if watch.healthy_polls:
        watch.flaps += 1
    watch.healthy_polls = 0
    watch.run_started_at = None
    if watch.flaps < FLAP_LIMIT:
        return False
    _flapping(judge, watch)
    return True


def _flapping(judge: _Judge, watch: _Watch) -> None:
    """The verdict on a job that did not hold: it spends the error budget like failing again."""
    status = watch.record.last_status or "unknown"
    ctx = judge.ctx
    _settle(ctx, watch.record, Disposition.FLAPPING, EventKind.FLAPPING, _flapped(watch, status))
    ctx.errors.fail()


def _settle(
    ctx: ActionContext,
    record: JobRecord,
    disposition: Disposition,
    kind: EventKind,
    reason: str | None,
) -> None:
    ctx.jobs.conclude(record.job_id, disposition, kind, step=ctx.step_id, reason=reason)


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
    paused = [r for j in ids if (r := ctx.jobs.ensure(j)).paused_at is not None]  # a drill
    delays = [d for j in ids if (d := ctx.jobs.ensure(j).delay_s) is not None]
    outages = ((r.disposition, r.pause_to_recovery_s) for r in paused)
    drill_p95 = pause_outages(outages, (95,))[0] if paused else None
    return VerifyStatusOutputs(
        recovered=tuple(recovered),
        failed=tuple(failed),
        timed_out=tuple(by.get(Disposition.TIMED_OUT, [])),
        lagging=tuple(by.get(Disposition.LAGGING, [])),
        flapping=tuple(by.get(Disposition.FLAPPING, [])),
        recovered_ratio=round(len(recovered) / len(ids), 4) if ids else 1.0,
        rto_p50_s=percentile(ttr, 50),
        rto_p95_s=percentile(ttr, 95),
        rto_max_s=ttr[-1] if ttr else 0.0,
        drill_rto_p95_s=drill_p95,
        delay_max_s=max(delays, default=0.0),
    )


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
