"""Run a runbook: every target concurrently (bounded), its steps in order, every job accounted for.

A failed step is data: it is recorded, the target's later steps are skipped, and its jobs get a
final disposition saying why. An unexpected exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.actions.budget import ErrorBudget
from engine.actions.context import (
    GOOD_DISPOSITIONS,
    ActionContext,
    Disposition,
    EventKind,
    JobBook,
    JobRecord,
    StepFailedError,
)
from engine.actions.registry import REGISTRY, ActionSpec, Runner
from engine.api.auth import Auth
from engine.api.client import DrsClient
from engine.api.ratelimit import RateLimitedTransport
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse, Transport
from engine.api.types import Language
from engine.errors import EXIT_INTERRUPTED, EXIT_JOBS_NOT_HEALTHY, EXIT_OK, ApiError, Location
from engine.run.journal import JournalState, RunJournal
from engine.run.limits import FairLimiter, FairTransport
from engine.run.outcome import StepOutcome, StepStatus
from engine.runbook import Runbook, Step, Target
from engine.runbook.expressions import ExpressionError, Scope, evaluate, kind_of, resolve
from engine.runbook.model import OnFailure

logger = logging.getLogger(__name__)

# The step action that stops every target until a human (or --yes) approves.
APPROVE = "approve"

# How long a self-timed action may overrun its deadline before it is cancelled.
SELF_TIMED_MARGIN_S = 30.0


@dataclass(slots=True, kw_only=True)
class TargetOutcome:
    target: Target
    endpoint: str
    jobs: JobBook
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status is StepStatus.FAILED for s in self.steps)


@dataclass(slots=True, kw_only=True)
class _TargetRun:
    """One target's state across the segments of a run."""

    index: int  # in the runbook's targets: how the journal names it
    outcome: TargetOutcome
    client: DrsClient
    outputs: dict[str, dict[str, Any]]
    scope: Scope
    failure: str | None = None
    running: Step | None = None  # the step in flight, for an interrupted run's report
    done: dict[str, StepOutcome] = field(default_factory=dict)  # finished before a resume
    rolled_back: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPreview:
    """What the next change would do in one target, worked out as a plan does: nothing sent."""

    step: Step
    would_send: tuple[JobRecord, ...] = ()
    batches: int = 0
    problem: str | None = None  # why it cannot be told before it runs


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """What a human approves at an ``approve`` step (and what ``run`` shows before its first
    change): the jobs each target selected, and what the next change would send."""

    step: Step
    selected: Mapping[Target, list[JobRecord]]
    next_steps: tuple[Step, ...]
    previews: Mapping[Target, StepPreview] = field(default_factory=dict)
    left_alone: Mapping[Target, list[JobRecord]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(jobs) for jobs in self.selected.values())


Approver = Callable[[ApprovalRequest], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """How to reach one target: its DRS base URL and its credentials."""

    endpoint: str
    auth: Auth


class RunObserver(Protocol):
    """Told about progress as it happens; the CLI prints it, tests may record it."""

    def run_started(self, books: Mapping[Target, JobBook]) -> None: ...

    def step_started(self, target: Target, step: Step) -> None: ...

    # Whether ``about_to_change`` shows anything: working out what each target is about to
    # change costs a preview per target, skipped when nobody looks (``-q``).
    @property
    def shows_plan(self) -> bool: ...

    def about_to_change(self, request: ApprovalRequest) -> None: ...

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None: ...


@dataclass(slots=True, kw_only=True)
class RunResult:
    run_id: str
    runbook: Runbook
    started_at: datetime
    finished_at: datetime
    wall_s: float
    targets: list[TargetOutcome]
    api_calls: Counter[str]
    api_resilience: dict[str, int | float] = field(default_factory=dict)
    plan: bool = False
    interrupted: bool = False
    resumed_at: list[str] = field(default_factory=list)
    params: Mapping[str, Any] = field(default_factory=dict)
    shard: str | None = None  # --shard I/N

    @property
    def mutating(self) -> bool:
        return any(REGISTRY[s.action].mutating for s in self.runbook.steps if not _is_gate(s))

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.plan:
            return EXIT_JOBS_NOT_HEALTHY if any(t.failed for t in self.targets) else EXIT_OK
        good = GOOD_DISPOSITIONS if self.mutating else GOOD_DISPOSITIONS | {Disposition.SELECTED}
        healthy = all(
            not t.failed and all(job.disposition in good for job in t.jobs) for t in self.targets
        )
        return EXIT_OK if healthy else EXIT_JOBS_NOT_HEALTHY


class CountingTransport:
    """Counts requests by ``METHOD /route`` (project ids folded into ``{project_id}``)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.calls[route_of(request)] += 1
        return await self._inner.send(request)


def route_of(request: HttpRequest) -> str:
    return _route(request.method, request.url)


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def _route(method: str, url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == "v3" and parts[1] != "auth":
        parts[1] = "{project_id}"
    return f"{method} /{'/'.join(parts)}"


class Executor:
    """One run of one runbook against its targets."""

    def __init__(
        self,
        runbook: Runbook,
        *,
        run_id: str,
        transport: Transport,
        connections: Mapping[Target, Connection],
        observer: RunObserver | None = None,
        plan: bool = False,
        params: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        resilience: Resilience | None = None,
        approver: Approver | None = None,
        journal: RunJournal | None = None,
        resume: JournalState | None = None,
    ) -> None:
        self._runbook = runbook
        self._rollback_ids = frozenset(s.id for s in runbook.rollback)
        self._journal = journal
        self._resume = resume
        self._plan = plan
        self._run_id = run_id
        self._params = dict(params or {})
        self._approver = approver
        self._errors = ErrorBudget(
            max_errors=runbook.max_errors, max_error_ratio=runbook.max_error_ratio
        )
        # One retry loop (and one set of counters) for every client of the run.
        self._resilience = resilience or Resilience()
        self._env = dict(env or {})
        # A request holds a concurrency slot only while it is on the wire, not while it waits
        # for its turn at the endpoint's pace (a slow endpoint must not hold every slot).
        self.limiter = FairLimiter(runbook.concurrency, runbook.concurrency_per_target)
        transport = FairTransport(transport, self.limiter)
        # Paced at the runbook's rate_limit, or at the limit a 429 reveals.
        transport = RateLimitedTransport(transport, runbook.rate_limit_per_s)
        # Counted by route as the actions send them (the figures in the report).
        self._transport = CountingTransport(transport)
        self._connections = connections
        self._observer = observer
        self._mutating = any(REGISTRY[s.action].mutating for s in runbook.steps if not _is_gate(s))
        self._t0 = 0.0
        # The running loop's clock, taken once in run(): asking asyncio for the running loop
        # costs a getpid(2) on Python 3.11, and the clock is read for every event of every job.
        self._loop_time: Callable[[], float] = time.monotonic

    def _clock(self) -> float:
        return self._loop_time() - self._t0

    async def run(self) -> RunResult:
        started_at = datetime.now(UTC)
        self._loop_time = asyncio.get_running_loop().time
        self._t0 = self._loop_time()
        if self._resume is not None:
            # The resumed run's clock goes on from the original start, downtime included.
            header = self._resume.header
            started_at = datetime.fromisoformat(header.started_at)
            self._t0 -= time.time() - header.started_epoch
        runs = [self._new_run(i, t) for i, t in enumerate(self._runbook.targets)]
        if self._resume is not None:
            _restore_budget(self._errors, runs)
        if self._observer is not None:
            self._observer.run_started({r.outcome.target: r.outcome.jobs for r in runs})
        interrupted = False
        try:
            for segment in _segments(self._runbook.steps, guard=not self._plan):
                if _is_gate(segment[0]):
                    await self._gate(segment[0], runs)
                    continue
                if segment[0] is _TOTAL_GUARD:
                    await self._before_changes(segment, runs)
                    continue
                async with asyncio.TaskGroup() as group:
                    for target_run in runs:
                        group.create_task(self._run_segment(target_run, segment))
            # A step had failed before a resume: finish the rollback the interruption cut short.
            async with asyncio.TaskGroup() as group:
                for target_run in runs:
                    if not target_run.rolled_back and self._failed_step(target_run):
                        group.create_task(self._rollback(target_run))
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, SIGTERM): every job still gets a disposition; report them.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            interrupted = True
        for target_run in runs:
            self._finish(target_run, interrupted=interrupted)
        result = RunResult(
            run_id=self._run_id,
            runbook=self._runbook,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            wall_s=round(self._clock(), 3),
            targets=[r.outcome for r in runs],
            api_calls=self._transport.calls,
            api_resilience=self._resilience.stats.as_dict(),
            plan=self._plan,
            params=self._params,
            interrupted=interrupted,
            resumed_at=list(self._resume.resumes) if self._resume is not None else [],
        )
        if self._journal is not None:
            self._journal.finished(
                exit_code=result.exit_code,
                interrupted=interrupted,
                at=result.finished_at.isoformat(timespec="seconds"),
            )
        return result

    def _new_run(self, index: int, target: Target) -> _TargetRun:
        connection = self._connections[target]
        outputs: dict[str, dict[str, Any]] = {}
        journal = self._journal.for_target(index) if self._journal is not None else None
        jobs = JobBook(self._clock, journal=journal)
        done: dict[str, StepOutcome] = {}
        failure = None
        if self._resume is not None:
            state = self._resume.target(index)
            jobs.restore(list(state.records.values()))
            step_ids = {s.id for s in (*self._runbook.steps, *self._runbook.rollback)}
            done = {k: v for k, v in state.steps.items() if k in step_ids}
            outputs.update((k, v.outputs) for k, v in done.items())
            failure = state.failure
        return _TargetRun(
            index=index,
            failure=failure,
            done=done,
            outcome=TargetOutcome(target=target, endpoint=connection.endpoint, jobs=jobs),
            client=DrsClient(
                transport=self._transport,
                endpoint=connection.endpoint,
                project_id=target.project_id,
                auth=connection.auth,
                language=Language(self._runbook.language),
                resilience=self._resilience,
            ),
            outputs=outputs,
            scope=Scope(
                params=self._params, target=_target_fields(target), steps=outputs, env=self._env
            ),
        )

    async def _run_segment(self, target_run: _TargetRun, steps: Sequence[Step]) -> None:
        """Some steps of one target, in order (its requests share the run's fair limiter)."""
        outcome = target_run.outcome
        for step in steps:
            if step.id in target_run.done:  # finished before the run was resumed
                outcome.steps.append(target_run.done[step.id])
                continue
            if target_run.failure is not None:
                outcome.steps.append(_not_run(step, target_run.failure))
                continue
            result = await self._step_in(target_run, step)
            if result.status is StepStatus.FAILED and step.on_failure == OnFailure.ABORT:
                target_run.failure = f"step '{step.id}' failed"
            self._journal_step(target_run, result)
            if self._observer is not None:
                self._observer.step_finished(outcome.target, result, outcome.jobs)
            if target_run.failure is not None:
                await self._rollback(target_run)

    async def _step_in(self, target_run: _TargetRun, step: Step) -> StepOutcome:
        """Run one step in one target and keep its outcome and outputs (the journal's too)."""
        outcome = target_run.outcome
        if step.id in target_run.done:  # finished before the run was resumed
            outcome.steps.append(target_run.done[step.id])
            return target_run.done[step.id]
        if self._observer is not None:
            self._observer.step_started(outcome.target, step)
        target_run.running = step
        if self._journal is not None:
            self._journal.step_started(target_run.index, step.id, round(self._clock(), 3))
        result = await self._run_step(step, target_run.client, outcome.jobs, target_run.scope)
        target_run.running = None
        outcome.steps.append(result)
        target_run.outputs[step.id] = result.outputs
        return result

    async def _rollback(self, target_run: _TargetRun) -> None:
        """A step failed in this target: run every rollback step, whatever becomes of each."""
        if self._plan or target_run.rolled_back:
            return
        target_run.rolled_back = True
        for step in self._runbook.rollback:
            fresh = step.id not in target_run.done
            result = await self._step_in(target_run, step)
            if fresh:
                self._journal_step(target_run, result)
                if self._observer is not None:
                    self._observer.step_finished(
                        target_run.outcome.target, result, target_run.outcome.jobs
                    )

    async def _request(
        self, step: Step, live: Sequence[_TargetRun], next_steps: tuple[Step, ...]
    ) -> ApprovalRequest:
        change = next((s for s in next_steps if REGISTRY[s.action].mutating), None)
        return ApprovalRequest(
            step=step,
            selected={r.outcome.target: _selected(r.outcome.jobs) for r in live},
            next_steps=next_steps,
            previews={}
            if change is None
            else {r.outcome.target: await self._preview(r, change) for r in live},
            left_alone={
                r.outcome.target: [
                    j for j in r.outcome.jobs if j.disposition is Disposition.SKIPPED
                ]
                for r in live
            },
        )

    async def _preview(self, target_run: _TargetRun, step: Step) -> StepPreview:
        """Run the step's preview (the plan's view of it) on a scratch copy of the jobs."""
        spec = REGISTRY[step.action]
        if spec.preview is None:
            return StepPreview(step=step, problem="this action has no preview")
        scratch = JobBook(self._clock)
        scratch.restore([record.fork() for record in target_run.outcome.jobs])
        ctx = ActionContext(
            api=target_run.client,
            jobs=scratch,
            step_id=step.id,
            project_id=target_run.client.project_id,
            max_jobs=self._runbook.max_jobs,
        )
        try:
            if step.when is not None and evaluate(step.when, target_run.scope) is False:
                return StepPreview(step=step, problem=f"skipped: when {step.when.text} is false")
            await spec.preview(ctx, resolve(step.with_, target_run.scope))
        except StepFailedError as exc:
            return StepPreview(step=step, problem=str(exc))
        except ExpressionError as exc:
            return StepPreview(step=step, problem=f"decided when it runs ({exc.format_message()})")
        would = [
            (record, event.detail)
            for record in scratch
            for event in record.events
            if event.step == step.id and event.kind in _WOULD
        ]
        return StepPreview(
            step=step,
            would_send=tuple(record for record, _ in would),
            batches=len({batch for _, batch in would}),
        )

    def _failed_step(self, target_run: _TargetRun) -> bool:
        return any(
            (done := target_run.done.get(step.id)) is not None
            and done.status is StepStatus.FAILED
            and step.on_failure == OnFailure.ABORT
            for step in self._runbook.steps
        )

    def _journal_step(self, target_run: _TargetRun, outcome: StepOutcome) -> None:
        """The step's job changes, then the step itself: a finished step in the journal
        implies everything it did is there too. Not fsynced: a mutating action made its own
        changes durable batch by batch, and anything else can be done again after a crash."""
        target_run.outcome.jobs.checkpoint()
        if self._journal is not None:
            self._journal.step_finished(target_run.index, outcome, target_run.failure)

    async def _gate(self, step: Step, runs: Sequence[_TargetRun]) -> None:
        """An approval: every target has stopped here; one decision lets them all go on."""
        live = [r for r in runs if r.failure is None]
        if live and all(
            (done := r.done.get(step.id)) is not None and done.status is StepStatus.SUCCEEDED
            for r in live
        ):
            for target_run in runs:  # approved before the run was resumed: not asked again
                target_run.outcome.steps.append(
                    target_run.done.get(step.id) or _not_run(step, target_run.failure or "")
                )
            return
        if self._plan:
            verdict, message = StepStatus.SKIPPED, "not run: a plan asks for no approval"
        elif not live:
            verdict, message = StepStatus.SKIPPED, "not run: no target reached it"
        else:
            request = await self._request(step, live, _following(self._runbook.steps, step))
            approved = self._approver is not None and await self._approver(request)
            verdict = StepStatus.SUCCEEDED if approved else StepStatus.FAILED
            message = "approved" if approved else "not approved: nothing after it was run"
        for target_run in runs:
            if target_run.failure is not None and verdict is not StepStatus.SKIPPED:
                target_run.outcome.steps.append(_not_run(step, target_run.failure))
                continue
            target_run.outcome.steps.append(
                StepOutcome(
                    step_id=step.id,
                    action=step.action,
                    status=verdict,
                    message=message,
                    outputs={"approved": verdict is StepStatus.SUCCEEDED},
                )
            )
            target_run.outputs[step.id] = {"approved": verdict is StepStatus.SUCCEEDED}
            if verdict is StepStatus.FAILED:
                target_run.failure = f"step '{step.id}' was not approved"
            self._journal_step(target_run, target_run.outcome.steps[-1])

    async def _before_changes(self, segment: Sequence[Step], runs: Sequence[_TargetRun]) -> None:
        """Every target has selected and none has changed anything yet: show what is about to
        be changed, then check max_jobs_total (act on none if together they are too many)."""
        index = _first_change(self._runbook.steps)
        first = self._runbook.steps[index] if index < len(self._runbook.steps) else None
        if first is not None and all(first.id in r.done for r in runs if r.failure is None):
            return  # resumed past it: this was shown and checked before the interruption
        # An approval shows the jobs itself.
        observer = self._observer
        if (
            observer is not None
            and observer.shows_plan
            and first is not None
            and not _is_gate(first)
        ):
            live = [r for r in runs if r.failure is None]
            following = (first, *_following(self._runbook.steps, first))
            observer.about_to_change(await self._request(first, live, following))
        limit = self._runbook.max_jobs_total
        total = sum(len(_selected(r.outcome.jobs)) for r in runs if r.failure is None)
        if limit is None or total <= limit:
            return
        why = (
            f"{total} jobs selected across all targets, more than max_jobs_total {limit}; "
            "nothing was changed"
        )
        logger.warning("%s", why)
        for target_run in runs:
            target_run.failure = target_run.failure or why
            target_run.outcome.steps.append(
                StepOutcome(
                    step_id="max_jobs_total",
                    action="guard",
                    status=StepStatus.FAILED,
                    message=why,
                )
            )

    def _finish(self, target_run: _TargetRun, *, interrupted: bool) -> None:
        outcome = target_run.outcome
        done = {s.step_id for s in outcome.steps}
        if interrupted:
            if target_run.running is not None:
                step = target_run.running
                outcome.steps.append(
                    StepOutcome(
                        step_id=step.id,
                        action=step.action,
                        status=StepStatus.FAILED,
                        message="interrupted while running",
                    )
                )
                done.add(step.id)
            outcome.steps.extend(
                _not_run(s, "run interrupted") for s in self._runbook.steps if s.id not in done
            )
            _finalize(outcome.jobs, "run interrupted", mutating=self._mutating, cancelled=True)
        elif not self._plan:
            failed = [s.step_id for s in outcome.steps if s.status is StepStatus.FAILED]
            reason = target_run.failure or (f"step '{failed[0]}' failed" if failed else None)
            _finalize(outcome.jobs, reason, mutating=self._mutating)
        if not target_run.rolled_back or interrupted:
            why = (
                "run interrupted"
                if interrupted
                else "a plan makes no changes to undo"
                if (self._plan)
                else "no step failed"
            )
            outcome.steps.extend(
                _not_run(s, why) for s in self._runbook.rollback if s.id not in done
            )
        outcome.steps.sort(key=self._declared_order)

    def _declared_order(self, outcome: StepOutcome) -> float:
        """Steps in the order the runbook declares them (rollback last), whatever ran when."""
        order = [s.id for s in (*self._runbook.steps, *self._runbook.rollback)]
        if outcome.step_id in order:
            return order.index(outcome.step_id)
        return _first_change(self._runbook.steps) - 0.5  # the max_jobs_total guard

    async def _run_step(
        self, step: Step, client: DrsClient, jobs: JobBook, scope: Scope
    ) -> StepOutcome:
        spec = REGISTRY[step.action]
        if self._plan and not spec.runs_in_plan:
            skipped = _not_run(step, spec.plan_skip_reason)
            skipped.outputs = _empty_outputs(spec)  # later steps may read them, in a plan too
            return skipped
        started = self._clock()
        outcome = StepOutcome(step_id=step.id, action=step.action, status=StepStatus.SUCCEEDED)
        outcome.started_t = round(started, 3)
        if step.when is not None:
            try:
                run_it = evaluate(step.when, scope)
            except ExpressionError as exc:
                outcome.status, outcome.message = StepStatus.FAILED, exc.format_message()
                return outcome
            if not isinstance(run_it, bool):
                outcome.status = StepStatus.FAILED
                outcome.message = f"when {step.when.text} gave {kind_of(run_it)}, not a boolean"
                return outcome
            if not run_it:
                outcome.status = StepStatus.SKIPPED
                outcome.message = f"skipped: when {step.when.text} is false"
                # Later steps may still refer to its outputs: they are empty, not missing.
                outcome.outputs = _empty_outputs(spec)
                return outcome
        ctx = ActionContext(
            api=client,
            jobs=jobs,
            step_id=step.id,
            project_id=client.project_id,
            max_jobs=self._runbook.max_jobs,
            # A rollback undoes what the run did: the run's spent error budget must not stop it.
            errors=ErrorBudget() if step.id in self._rollback_ids else self._errors,
        )
        for attempt in range(1, step.retries.max_attempts + 1):
            outcome.attempts = attempt
            message = await self._attempt(step, spec, ctx, scope, outcome)
            if message is None:
                outcome.status, outcome.message = StepStatus.SUCCEEDED, None
                break
            outcome.status, outcome.message = StepStatus.FAILED, message
            logger.warning(
                "step %r failed in %s (attempt %d of %d): %s",
                step.id,
                client.project_id,
                attempt,
                step.retries.max_attempts,
                message,
            )
            if attempt < step.retries.max_attempts:
                await asyncio.sleep(_backoff_s(step, attempt))
        failed = outcome.status is StepStatus.FAILED
        if failed and spec.after_failure is not None and not self._plan:
            await _after_failure(spec, ctx)
        outcome.duration_s = round(self._clock() - started, 3)
        return outcome

    async def _attempt(
        self, step: Step, spec: ActionSpec, ctx: ActionContext, scope: Scope, outcome: StepOutcome
    ) -> str | None:
        """One attempt at the step; None when it succeeded, else why it failed."""
        runner = spec.preview if self._plan and spec.preview is not None else spec.run
        timeout_s = step.timeout_s if step.timeout_s is not None else spec.default_timeout_s
        try:
            raw = resolve(step.with_, scope)
            outcome.outputs = await self._call(runner, spec, ctx, raw, timeout_s, self._clock())
        except (StepFailedError, ExpressionError) as exc:
            return str(exc) if isinstance(exc, StepFailedError) else exc.format_message()
        except ApiError as exc:
            return exc.format_message()
        except TimeoutError:
            return f"timed out after {timeout_s:g}s"
        except asyncio.CancelledError:
            if spec.after_failure is not None and not self._plan:
                await _shielded_after_failure(spec, ctx)
            raise
        return None

    async def _call(
        self,
        runner: Runner,
        spec: ActionSpec,
        ctx: ActionContext,
        raw: Mapping[str, Any],
        timeout_s: float | None,
        started: float,
    ) -> dict[str, Any]:
        if timeout_s is None:
            return await runner(ctx, raw)
        if spec.self_timed:
            ctx.deadline = started + timeout_s
            timeout_s += SELF_TIMED_MARGIN_S
        async with asyncio.timeout(timeout_s):
            return await runner(ctx, raw)


# The time an after-failure reconciliation may take (its own budget: the step's is spent).
AFTER_FAILURE_BUDGET_S = 30.0


async def _after_failure(spec: ActionSpec, ctx: ActionContext) -> None:
    assert spec.after_failure is not None
    try:
        async with asyncio.timeout(AFTER_FAILURE_BUDGET_S):
            await spec.after_failure(ctx)
    except (ApiError, TimeoutError) as exc:
        logger.warning("could not learn what step %r did: %s", ctx.step_id, exc)
    await ctx.jobs.commit()


async def _shielded_after_failure(spec: ActionSpec, ctx: ActionContext) -> None:
    """Reconcile even while the run is being cancelled; a second signal still stops it."""
    try:
        await asyncio.shield(_after_failure(spec, ctx))
    except asyncio.CancelledError:
        logger.warning("reconciliation of step %r interrupted", ctx.step_id)


def _not_run(step: Step, why: str) -> StepOutcome:
    return StepOutcome(
        step_id=step.id, action=step.action, status=StepStatus.SKIPPED, message=f"not run: {why}"
    )


_EMPTY: dict[str, Any] = {
    "list[string]": [],
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "string": "",
}


# A marker segment (not a runbook step): where every target waits for the total job check.
_TOTAL_GUARD = Step(
    id="max_jobs_total",
    name=None,
    action="guard",
    with_={},
    timeout_s=None,
    location=Location(path="", line=0, col=0),
)


_WOULD = frozenset({EventKind.WOULD_RETRY, EventKind.WOULD_PAUSE})


def _changes(step: Step) -> bool:
    """A mutating step, or an approval to change (where the run stops before any change)."""
    return _is_gate(step) or REGISTRY[step.action].mutating


def _first_change(steps: Sequence[Step]) -> int:
    """The index of the first step that changes something (len(steps) when none does)."""
    return next((i for i, step in enumerate(steps) if _changes(step)), len(steps))


def _is_gate(step: Step) -> bool:
    return step.action == APPROVE


def _segments(steps: Sequence[Step], *, guard: bool) -> list[list[Step]]:
    """The steps cut at every approval gate, each gate a segment of its own; with ``guard``, a
    guard segment before the first mutating step (or gate) makes every target stop there, so the
    run can show what it is about to change and check max_jobs_total before anything changes."""
    segments: list[list[Step]] = [[]]
    guarded = not guard
    for step in steps:
        if not guarded and _changes(step):
            segments += [[_TOTAL_GUARD], []]
            guarded = True
        if _is_gate(step):
            segments += [[step], []]
        else:
            segments[-1].append(step)
    return [segment for segment in segments if segment]


def _selected(jobs: JobBook) -> list[JobRecord]:
    return [job for job in jobs if job.disposition is Disposition.SELECTED]


def _following(steps: Sequence[Step], gate: Step) -> tuple[Step, ...]:
    index = next(i for i, step in enumerate(steps) if step is gate)
    return tuple(steps[index + 1 :])


def _empty_outputs(spec: ActionSpec) -> dict[str, Any]:
    return {name: _EMPTY[kind] for name, kind in spec.outputs.items()}


def _target_fields(target: Target) -> dict[str, Any]:
    return {
        "project_id": target.project_id,
        "region": target.region,
        "name": target.label,  # the project id when the target has no name
        "endpoint": target.endpoint,
    }


def _backoff_s(step: Step, attempt: int) -> float:
    """Full jitter: uniform over [0, min(max_backoff, backoff * 2^(attempt-1))]."""
    policy = step.retries
    return random.uniform(0, min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempt - 1)))


def _finalize(
    jobs: JobBook, failure: str | None, *, mutating: bool, cancelled: bool = False
) -> None:
    """Turn intermediate dispositions into final ones, with the reason."""
    because = f" ({failure})" if failure else ""
    for record in jobs:
        if record.disposition not in {Disposition.SELECTED, Disposition.RETRY_ACCEPTED}:
            continue
        last = record.events[-1].kind if record.events else None
        if last is EventKind.RETRY_SENT:
            record.disposition = Disposition.RETRY_UNKNOWN
            record.reason = f"retry sent, no answer recorded{because}"
        elif last is EventKind.PAUSE_SENT:
            record.disposition = Disposition.PAUSE_UNKNOWN
            record.reason = f"pause sent, no answer recorded{because}"
        elif cancelled:
            was_retried = record.disposition is Disposition.RETRY_ACCEPTED
            record.disposition = Disposition.CANCELLED
            record.reason = (
                "retry accepted, verification interrupted" if was_retried else "not retried"
            ) + because
        elif record.disposition is Disposition.RETRY_ACCEPTED:
            record.disposition = Disposition.NOT_VERIFIED
            record.reason = f"retry accepted but not verified{because}"
        elif mutating:
            record.disposition = Disposition.NOT_RETRIED
            record.reason = f"selected but not retried{because}"


def _restore_budget(budget: ErrorBudget, runs: Sequence[_TargetRun]) -> None:
    """The error budget as the interrupted run had spent it, from the jobs' timelines."""
    sent = {EventKind.RETRY_SENT, EventKind.PAUSE_SENT}
    rejected = {EventKind.RETRY_REJECTED, EventKind.PAUSE_REJECTED}
    for target_run in runs:
        for record in target_run.outcome.jobs:
            kinds = {event.kind for event in record.events}
            if kinds & sent:
                budget.attempt(1)
            budget.fail(sum(1 for e in record.events if e.kind in rejected))
            if record.disposition is Disposition.FAILED_AGAIN:
                budget.fail()
