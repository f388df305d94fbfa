"""Run a runbook: every target concurrently (bounded), its steps in order, every job accounted for.

A failed step is data: it is recorded, the target's later steps are skipped, and its jobs get a
final disposition saying why. An unexpected exception is a bug and propagates.

When the run's stop trips (``engine.run.stop``): no further mutating request leaves (the gate
at the wire, and each mutating step's next batch), a step that only reads or waits is cut
short, a mutating step in progress finishes what is in flight (and reconciles it), every
target's remaining steps are skipped, and the rollback runs in each target where a change was
accepted (its requests undo, so they pass the gate). The journal records the trip.

The executor takes one ready client per target (``engine.run.wiring`` builds them; tests pass
fakes) and knows actions only through their definitions (``engine.actions.spec.Action``): which
ones are gates, which change jobs, how each runs, previews and is reconciled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.actions.budget import ErrorBudget
from engine.actions.registry import REGISTRY
from engine.api.protocol import DrsApi
from engine.errors import StorageError, first_leaf
from engine.ledger import CHANGED_KINDS, JobBook
from engine.logs import run_context
from engine.run.approval import (
    HOW_TERMINAL,
    ApprovalRecord,
    ApprovalRequest,
    Approver,
    StepPreview,
    approval,
    preview_step,
)
from engine.run.finalize import finalize, restore_budget
from engine.run.journal import JournalState, RunJournal
from engine.run.result import Planned, RunResult, StepOutcome, StepStatus, TargetOutcome
from engine.run.segments import (
    GUARD_ACTION,
    GUARD_ID,
    BeforeChanges,
    Gate,
    Steps,
    first_change,
    following,
    segments,
)
from engine.run.step import StepRunner, StepTiming, timeout_of
from engine.run.stop import StopSignal, Tripped
from engine.runbook import Runbook, Step, Target
from engine.runbook.expressions import Scope
from engine.runbook.model import OnFailure

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from engine.telemetry import Telemetry

logger = logging.getLogger(__name__)


class RunObserver(Protocol):
    """Told about progress as it happens; the CLI prints it, tests may record it."""

    def run_started(self, books: Mapping[Target, JobBook]) -> None: ...

    def run_finished(self) -> None:
        """The run is over (finished, interrupted or crashed): stop showing progress."""

    def note(self, text: str) -> None:
        """Something for the human running it (the emulator's address, a resume, a warning)."""

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None:
        """A step began in one target; ``timing`` says how long it may take."""

    # Whether ``about_to_change`` shows anything: working out what each target is about to
    # change costs a preview per target, skipped when nobody looks (``-q``).
    @property
    def shows_plan(self) -> bool: ...

    def about_to_change(self, request: ApprovalRequest) -> None: ...

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None: ...

    def run_stopped(self, why: str) -> None:
        """A guard rail stopped the run's changes (max_jobs_total, the error budget): told once
        per guard, when it trips; the executor has logged ``why`` as a warning already."""


@dataclass(slots=True, kw_only=True)
class _TargetRun:
    """One target's state across the segments of a run."""

    index: int  # in the runbook's targets: how the journal names it
    outcome: TargetOutcome
    api: DrsApi
    outputs: dict[str, Mapping[str, Any]]
    scope: Scope
    failure: str | None = None
    running: Step | None = None  # the step in flight, for an interrupted run's report
    running_since: float = 0.0  # when it started, on the run's clock
    done: dict[str, StepOutcome] = field(default_factory=dict)  # finished before a resume
    rolled_back: bool = False
    span: Span | None = None  # with telemetry: the target's, from its start to _finish

    @property
    def target(self) -> Target:
        return self.outcome.target

    @property
    def jobs(self) -> JobBook:
        return self.outcome.jobs


class Executor:
    """One run of one runbook against its targets, each reached through its ready client."""

    def __init__(
        self,
        runbook: Runbook,
        clients: Mapping[Target, DrsApi],
        *,
        run_id: str,
        endpoints: Mapping[Target, str] | None = None,
        observer: RunObserver | None = None,
        plan: bool = False,
        params: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        approver: Approver | None = None,
        journal: RunJournal | None = None,
        resume: JournalState | None = None,
        planned: Planned | None = None,
        approval_how: str = HOW_TERMINAL,
        plan_hash: str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        telemetry: Telemetry | None = None,
        stop: StopSignal | None = None,
    ) -> None:
        """``clock`` and ``sleep`` are the loop's own by default; tests pass a virtual pair.
        ``telemetry``: a span per target and per step, under the current span (the run's).
        ``stop`` is the run's stop signal (its gate is in the clients' transport)."""
        self._runbook = runbook
        self._clients = clients
        self._endpoints = endpoints or {}
        self._rollback_ids = frozenset(s.id for s in runbook.rollback)
        self._journal = journal
        self._resume = resume
        self._plan = plan
        self._run_id = run_id
        self._params = dict(params or {})
        self._env = dict(env or {})
        self._approver = approver
        self._approval_how = approval_how
        self._plan_hash = plan_hash
        # Every approval and decline of the run, a resumed run's earlier ones first.
        self._approvals: list[dict[str, Any]] = list(resume.approvals) if resume is not None else []
        self._observer = observer
        self._telemetry = telemetry
        self._stop = stop
        self._steps = StepRunner(
            plan=plan,
            max_jobs=runbook.max_jobs,
            clock=self._clock,
            sleep=sleep,
            planned=planned,
            stopped=None if stop is None else self._stop_reason,
        )
        self._errors = ErrorBudget(
            max_errors=runbook.max_errors, max_error_ratio=runbook.max_error_ratio
        )
        self._mutating = any(REGISTRY[s.action].mutating for s in runbook.steps)
        self._order = {s.id: i for i, s in enumerate((*runbook.steps, *runbook.rollback))}
        self._t0 = 0.0
        # The running loop's clock, taken once in run(): asking asyncio for the running loop
        # costs a getpid(2) on Python 3.11, and the clock is read for every event of every job.
        self._given_clock = clock
        self._loop_time: Callable[[], float] = clock or time.monotonic
        self._budget_told = False

    def _clock(self) -> float:
        return self._loop_time() - self._t0

    def _stop_reason(self) -> str | None:
        """Why the run has stopped (the stop files are looked at again now), or None."""
        tripped = self._stop.check() if self._stop is not None else None
        return None if tripped is None else tripped.reason

    def _tripped(self, tripped: Tripped) -> None:
        """The stop tripped: on disk at once (a resume knows), and the observer is told (a
        notification goes out); the signal has logged it as a warning."""
        if self._journal is not None:
            self._journal.stopped(tripped.to_json())
        if self._observer is not None:
            self._observer.run_stopped(
                f"{tripped.reason}; no further change is sent, "
                f"{tripped.in_flight} request(s) in flight are awaited"
            )

    async def run(self) -> RunResult:
        started_at = datetime.now(UTC)
        self._loop_time = self._given_clock or asyncio.get_running_loop().time
        self._t0 = self._loop_time()
        if self._resume is not None:
            # The resumed run's clock goes on from the original start, downtime included.
            header = self._resume.header
            started_at = datetime.fromisoformat(header.started_at)
            self._t0 -= time.time() - header.started_epoch
        runs = [self._new_run(i, t) for i, t in enumerate(self._runbook.targets)]
        if self._resume is not None:
            restore_budget(self._errors, (r.jobs for r in runs))
        # Told once: a budget spent before a resume was told by the run it stopped.
        self._budget_told = self._errors.exhausted
        if self._stop is not None:
            self._stop.on_trip(self._tripped)
            if self._resume is not None and self._resume.stopped is not None:
                # Stopped before the interruption: still stopped (journaled once, not again).
                self._stop.restore(Tripped.from_json(self._resume.stopped))
        if self._observer is not None:
            self._observer.run_started({r.target: r.jobs for r in runs})
        try:
            with run_context(run_id=self._run_id):  # on every log line of the run's tasks
                if self._stop is None or self._plan:
                    return await self._run(started_at, runs)
                with self._stop.watching():
                    return await self._run(started_at, runs)
        finally:
            if self._observer is not None:
                self._observer.run_finished()

    async def _run(self, started_at: datetime, runs: list[_TargetRun]) -> RunResult:
        interrupted = False
        storage_failure: StorageError | None = None
        try:
            cut = segments(self._runbook.steps, before_changes=self._waits_before_changes())
            for segment in cut:
                match segment:
                    case Gate(step):
                        await self._gate(step, runs)
                    case BeforeChanges(first):
                        await self._before_changes(first, runs)
                    case Steps(steps):
                        async with asyncio.TaskGroup() as group:
                            for target_run in runs:
                                group.create_task(self._run_steps(target_run, steps))
            # A step had failed before a resume (finish the rollback the interruption cut
            # short), or the run stopped: undo where a change was accepted.
            async with asyncio.TaskGroup() as group:
                for target_run in runs:
                    if not target_run.rolled_back and (
                        self._failed_before(target_run) or self._stopped_after_change(target_run)
                    ):
                        group.create_task(self._rollback(target_run))
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, SIGTERM): every job still gets a disposition; report them.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            interrupted = True
        except ExceptionGroup as group:
            # The journal could not be written (a full disk): the target that found out stopped
            # before sending anything more, the task group cancelled the others (which learnt
            # what their requests in flight did). Report every job, as for an interruption.
            storage, rest = group.split(StorageError)
            if storage is None or rest is not None:
                raise
            storage_failure = first_leaf(storage)
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
            mutating=self._mutating,
            plan=self._plan,
            params=self._params,
            interrupted=interrupted,
            resumed_at=list(self._resume.resumes) if self._resume is not None else [],
            storage_failure=storage_failure,
            approvals=tuple(self._approvals),
            plan_hash=self._plan_hash,
            stopped_by=None if self._stop is None else self._stop.tripped,
        )
        if self._journal is not None:
            self._journal.finished(
                exit_code=result.exit_code,
                interrupted=interrupted,
                at=result.finished_at.isoformat(timespec="seconds"),
            )
        return result

    def _new_run(self, index: int, target: Target) -> _TargetRun:
        outputs: dict[str, Mapping[str, Any]] = {}
        journal = self._journal.for_target(index) if self._journal is not None else None
        watch = self._stop.watcher(index) if self._stop is not None else None
        jobs = JobBook(self._clock, journal=journal, watch=watch)
        done: dict[str, StepOutcome] = {}
        failure = None
        if self._resume is not None:
            state = self._resume.target(index)
            jobs.restore(list(state.records.values()))
            done = {k: v for k, v in state.steps.items() if k in self._order}
            outputs.update((k, v.outputs) for k, v in done.items())
            failure = state.failure
        span = (
            None
            if self._telemetry is None
            else self._telemetry.target_span(
                label=target.label, project_id=target.project_id, region=target.region
            )
        )
        return _TargetRun(
            index=index,
            span=span,
            failure=failure,
            done=done,
            outcome=TargetOutcome(
                target=target, endpoint=self._endpoints.get(target, ""), jobs=jobs
            ),
            api=self._clients[target],
            outputs=outputs,
            scope=Scope(
                params=self._params, target=_target_fields(target), steps=outputs, env=self._env
            ),
        )

    # ----------------------------------------------------------------------------- segments

    async def _run_steps(self, target_run: _TargetRun, steps: Sequence[Step]) -> None:
        """Some steps of one target, in order (its requests share the run's fair limiter)."""
        outcome = target_run.outcome
        for step in steps:
            if step.id in target_run.done:  # finished before the run was resumed
                outcome.steps.append(target_run.done[step.id])
                continue
            if target_run.failure is not None:
                outcome.steps.append(StepOutcome.not_run(step, target_run.failure))
                continue
            if (stopped := self._stop_reason()) is not None:
                outcome.steps.append(StepOutcome.not_run(step, stopped))
                continue
            result = await self._step_in(target_run, step)
            halted = self._stop is not None and self._stop.tripped is not None
            # Once the run has stopped, the stop decides what is undone (where a change was
            # accepted), not a step it cut short.
            if (
                result.status is StepStatus.FAILED
                and step.on_failure == OnFailure.ABORT
                and not halted
            ):
                target_run.failure = f"step '{step.id}' failed"
            self._journal_step(target_run, result)
            if self._observer is not None:
                self._observer.step_finished(target_run.target, result, target_run.jobs)
            if self._errors.exhausted and not self._budget_told:
                self._budget_told = True
                self._stopped(f"{self._errors.describe()}: no further batch is sent")
            if target_run.failure is not None:
                await self._rollback(target_run)

    async def _rollback(self, target_run: _TargetRun) -> None:
        """A step failed in this target (or the run stopped after a change was accepted in
        it): run every rollback step, whatever becomes of each."""
        if self._plan or target_run.rolled_back:
            return
        target_run.rolled_back = True
        for step in self._runbook.rollback:
            fresh = step.id not in target_run.done
            with StopSignal.undoing():  # it undoes the run's changes: the stop lets it send
                result = await self._step_in(target_run, step, undoing=True)
            if fresh:
                self._journal_step(target_run, result)
                if self._observer is not None:
                    self._observer.step_finished(target_run.target, result, target_run.jobs)

    def record_approval(self, record: ApprovalRecord) -> None:
        """Keep an approval for the report, and in the journal (at once, on disk)."""
        entry = record.to_json()
        self._approvals.append(entry)
        if self._journal is not None:
            self._journal.approval(entry)

    async def _gate(self, step: Step, runs: Sequence[_TargetRun]) -> None:
        """An approval: every target has stopped here; one decision lets them all go on."""
        live = [r for r in runs if r.failure is None]
        if live and all(
            (done := r.done.get(step.id)) is not None and done.status is StepStatus.SUCCEEDED
            for r in live
        ):
            for target_run in runs:  # approved before the run was resumed: not asked again
                target_run.outcome.steps.append(
                    target_run.done.get(step.id)
                    or StepOutcome.not_run(step, target_run.failure or "")
                )
            return
        asked_at = self._clock()  # an approval takes as long as the human took to answer
        stopped = self._stop_reason()
        if self._plan:
            verdict, message = StepStatus.SKIPPED, "not run: a plan asks for no approval"
        elif not live:
            verdict, message = StepStatus.SKIPPED, "not run: no target reached it"
        elif stopped is not None:
            verdict, message = StepStatus.SKIPPED, f"not run: {stopped}"
        elif (answer := await self._ask(step, live)) is None:
            verdict, message = StepStatus.SKIPPED, f"not answered: {self._stop_reason()}"
        else:
            approved = answer
            record = approval(step.id, approved, self._approval_how, self._plan_hash)
            self.record_approval(record)
            verdict = StepStatus.SUCCEEDED if approved else StepStatus.DECLINED
            message = (
                f"approved by {record.by} ({record.how}) at {record.at}"
                if approved
                else f"declined by {record.by} at {record.at}"
            )
        outputs = {"approved": verdict is StepStatus.SUCCEEDED}
        for target_run in runs:
            if target_run.failure is not None and verdict is not StepStatus.SKIPPED:
                target_run.outcome.steps.append(StepOutcome.not_run(step, target_run.failure))
                continue
            decided = StepOutcome(
                step_id=step.id,
                action=step.action,
                status=verdict,
                message=message,
                outputs=dict(outputs),
                started_t=round(asked_at, 3),
                duration_s=round(self._clock() - asked_at, 3),
            )
            target_run.outcome.steps.append(decided)
            if self._telemetry is not None and target_run.span is not None:
                self._telemetry.step_recorded(
                    target_run.span,
                    step_id=step.id,
                    action=step.action,
                    status=verdict.value,
                    duration_s=decided.duration_s,
                    message=message,
                )
            target_run.outputs[step.id] = dict(outputs)
            if verdict is StepStatus.DECLINED:
                target_run.failure = f"step '{step.id}' was not approved: {message}"
            self._journal_step(target_run, decided)

    async def _ask(self, step: Step, live: Sequence[_TargetRun]) -> bool | None:
        """The human's answer; None when the run stopped while they were asked."""
        if self._approver is None:
            return False
        if self._stop is None:
            request = await self._request(step, live, following(self._runbook.steps, step))
            return await self._approver(request)
        answer = False
        async with self._stop.cut_short() as scope:
            request = await self._request(step, live, following(self._runbook.steps, step))
            answer = await self._approver(request)
        return None if scope.was_cut else answer

    def _waits_before_changes(self) -> bool:
        """Whether every target must have selected before any changes: to check
        max_jobs_total, or to show what is about to change. Otherwise each target goes on to
        its first change as soon as its own selection is done. A plan changes nothing."""
        if self._plan:
            return False
        shown = self._observer is not None and self._observer.shows_plan
        return shown or self._runbook.max_jobs_total is not None

    async def _before_changes(self, first: Step, runs: Sequence[_TargetRun]) -> None:
        """Every target has selected and none has changed anything yet: show what is about to
        be changed, then check max_jobs_total (act on none if together they are too many)."""
        if all(first.id in r.done for r in runs if r.failure is None):
            return  # resumed past it: this was shown and checked before the interruption
        if self._stop_reason() is not None:
            return  # nothing is about to change: the run has stopped
        observer = self._observer
        if observer is not None and observer.shows_plan and not REGISTRY[first.action].gate:
            # (an approval shows the jobs itself)
            live = [r for r in runs if r.failure is None]
            next_steps = (first, *following(self._runbook.steps, first))
            observer.about_to_change(await self._request(first, live, next_steps))
        limit = self._runbook.max_jobs_total
        total = sum(len(r.jobs.selected()) for r in runs if r.failure is None)
        if limit is None or total <= limit:
            return
        why = (
            f"{total} jobs selected across all targets, more than max_jobs_total {limit}; "
            "nothing was changed"
        )
        self._stopped(why)
        for target_run in runs:
            target_run.failure = target_run.failure or why
            target_run.outcome.steps.append(
                StepOutcome(
                    step_id=GUARD_ID, action=GUARD_ACTION, status=StepStatus.FAILED, message=why
                )
            )

    def _stopped(self, why: str) -> None:
        """A guard rail stopped the run's changes: a warning, and the observer is told."""
        logger.warning("%s", why)
        if self._observer is not None:
            self._observer.run_stopped(why)

    async def _request(
        self, step: Step, live: Sequence[_TargetRun], next_steps: tuple[Step, ...]
    ) -> ApprovalRequest:
        change = next((s for s in next_steps if REGISTRY[s.action].mutating), None)
        previews: dict[Target, StepPreview] = {}
        if change is not None:
            for r in live:
                previews[r.target] = await preview_step(
                    change,
                    api=r.api,
                    jobs=r.jobs,
                    scope=r.scope,
                    project_id=r.target.project_id,
                    max_jobs=self._runbook.max_jobs,
                )
        return ApprovalRequest(
            step=step,
            selected={r.target: r.jobs.selected() for r in live},
            next_steps=next_steps,
            previews=previews,
            left_alone={r.target: r.jobs.left_alone() for r in live},
        )

    # ----------------------------------------------------------------------------- one step

    async def _step_in(
        self, target_run: _TargetRun, step: Step, *, undoing: bool = False
    ) -> StepOutcome:
        """Run one step in one target and keep its outcome and outputs (the journal's too).
        A step that changes no job is cut short when the run stops (``undoing``: a rollback's
        step never is)."""
        outcome = target_run.outcome
        if step.id in target_run.done:  # finished before the run was resumed
            outcome.steps.append(target_run.done[step.id])
            return target_run.done[step.id]
        if self._observer is not None:
            timing = StepTiming(timeout_s=timeout_of(step), resumed=self._resume is not None)
            self._observer.step_started(outcome.target, step, timing)
        target_run.running = step
        target_run.running_since = self._clock()
        if self._journal is not None:
            self._journal.step_started(target_run.index, step.id, round(self._clock(), 3))
        errors = ErrorBudget() if step.id in self._rollback_ids else self._errors
        with (
            run_context(target=target_run.target.label, step=step.id),
            self._step_span(target_run, step) as span,
        ):
            work = self._steps.run(
                step,
                api=target_run.api,
                jobs=target_run.jobs,
                project_id=target_run.target.project_id,
                scope=target_run.scope,
                # A rollback undoes what the run did: its spent error budget must not stop it.
                errors=errors,
                undoing=undoing,
            )
            if self._stop is None or undoing or REGISTRY[step.action].mutating:
                result = await work
            else:
                result = await self._unless_stopped(target_run, step, work)
            if span is not None and self._telemetry is not None:
                self._telemetry.step_finished(
                    span,
                    status=result.status.value,
                    attempts=result.attempts,
                    message=result.message,
                )
        target_run.running = None
        outcome.steps.append(result)
        target_run.outputs[step.id] = result.outputs
        return result

    def _step_span(
        self, target_run: _TargetRun, step: Step
    ) -> contextlib.AbstractContextManager[Span | None]:
        if self._telemetry is None or target_run.span is None:
            return contextlib.nullcontext()
        return self._telemetry.step_span(target_run.span, step_id=step.id, action=step.action)

    async def _unless_stopped(
        self, target_run: _TargetRun, step: Step, work: Awaitable[StepOutcome]
    ) -> StepOutcome:
        """``work``, unless the run stops first: then the step failed, cut short."""
        assert self._stop is not None
        result: StepOutcome | None = None
        async with self._stop.cut_short() as scope:
            result = await work
        if result is not None and not scope.was_cut:
            return result
        since = target_run.running_since
        return StepOutcome(
            step_id=step.id,
            action=step.action,
            status=StepStatus.FAILED,
            message=f"cut short: {self._stop_reason()}",
            started_t=round(since, 3),
            duration_s=round(self._clock() - since, 3),
        )

    # ----------------------------------------------------------------------------- the end

    def _stopped_after_change(self, target_run: _TargetRun) -> bool:
        """The run stopped, and a change was accepted in this target (or may have been: an
        answer that never came): its rollback runs."""
        if self._stop is None or self._stop.tripped is None or self._plan:
            return False
        return any(
            event.kind in CHANGED_KINDS for record in target_run.jobs for event in record.events
        )

    def _failed_before(self, target_run: _TargetRun) -> bool:
        """A step that aborts the target had failed before the run was resumed."""
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
        target_run.jobs.checkpoint()
        if self._journal is not None:
            self._journal.step_finished(target_run.index, outcome, target_run.failure)

    def _finish(self, target_run: _TargetRun, *, interrupted: bool) -> None:
        outcome = target_run.outcome
        done = {s.step_id for s in outcome.steps}
        if interrupted:
            if target_run.running is not None:
                step = target_run.running
                since = target_run.running_since
                outcome.steps.append(
                    StepOutcome(
                        step_id=step.id,
                        action=step.action,
                        status=StepStatus.FAILED,
                        message="interrupted while running",
                        # how long it ran before the interruption, not 0.0 s
                        started_t=round(since, 3),
                        duration_s=round(self._clock() - since, 3),
                    )
                )
                done.add(step.id)
            outcome.steps.extend(
                StepOutcome.not_run(s, "run interrupted")
                for s in self._runbook.steps
                if s.id not in done
            )
            finalize(outcome.jobs, "run interrupted", mutating=self._mutating, cancelled=True)
        elif not self._plan:
            failed = [s.step_id for s in outcome.steps if s.status is StepStatus.FAILED]
            tripped = self._stop.tripped if self._stop is not None else None
            stopped = None if tripped is None else tripped.reason
            reason = (
                target_run.failure or stopped or (f"step '{failed[0]}' failed" if failed else None)
            )
            finalize(outcome.jobs, reason, mutating=self._mutating)
        if not target_run.rolled_back or interrupted:
            why = (
                "run interrupted"
                if interrupted
                else "a plan makes no changes to undo"
                if self._plan
                else "the run stopped before a change was accepted here"
                if self._stop is not None and self._stop.tripped is not None
                else "no step failed"
            )
            outcome.steps.extend(
                StepOutcome.not_run(s, why) for s in self._runbook.rollback if s.id not in done
            )
        outcome.steps.sort(key=self._declared_order)
        if target_run.span is not None and self._telemetry is not None:
            self._telemetry.target_finished(target_run.span, failure=target_run.failure)

    def _declared_order(self, outcome: StepOutcome) -> float:
        """Steps in the order the runbook declares them (rollback last), whatever ran when."""
        order = self._order.get(outcome.step_id)
        if order is not None:
            return order
        return first_change(self._runbook.steps) - 0.5  # the max_jobs_total guard


def _target_fields(target: Target) -> dict[str, Any]:
    return {
        "project_id": target.project_id,
        "region": target.region,
        "name": target.label,  # the project id when the target has no name
        "endpoint": target.endpoint,
    }
