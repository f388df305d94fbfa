"""Run a runbook: every target concurrently (bounded), its steps in order, every job accounted for.

A failed step is data: it is recorded, the target's later steps are skipped, and its jobs get a
final disposition saying why. An unexpected exception is a bug and propagates.

The executor takes one ready client per target (``engine.run.wiring`` builds them; tests pass
fakes) and knows actions only through their definitions (``engine.actions.spec.Action``): which
ones are gates, which change jobs, how each runs, previews and is reconciled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.actions.budget import ErrorBudget
from engine.actions.registry import REGISTRY
from engine.api.protocol import DrsApi
from engine.errors import StorageError, first_leaf
from engine.ledger import JobBook
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
from engine.runbook import Runbook, Step, Target
from engine.runbook.expressions import Scope
from engine.runbook.model import OnFailure

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
    ) -> None:
        """``clock`` and ``sleep`` are the loop's own by default; tests pass a virtual pair."""
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
        self._steps = StepRunner(
            plan=plan, max_jobs=runbook.max_jobs, clock=self._clock, sleep=sleep, planned=planned
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

    def _clock(self) -> float:
        return self._loop_time() - self._t0

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
        if self._observer is not None:
            self._observer.run_started({r.target: r.jobs for r in runs})
        try:
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
            # A step had failed before a resume: finish the rollback the interruption cut short.
            async with asyncio.TaskGroup() as group:
                for target_run in runs:
                    if not target_run.rolled_back and self._failed_before(target_run):
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
        jobs = JobBook(self._clock, journal=journal)
        done: dict[str, StepOutcome] = {}
        failure = None
        if self._resume is not None:
            state = self._resume.target(index)
            jobs.restore(list(state.records.values()))
            done = {k: v for k, v in state.steps.items() if k in self._order}
            outputs.update((k, v.outputs) for k, v in done.items())
            failure = state.failure
        return _TargetRun(
            index=index,
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
            result = await self._step_in(target_run, step)
            if result.status is StepStatus.FAILED and step.on_failure == OnFailure.ABORT:
                target_run.failure = f"step '{step.id}' failed"
            self._journal_step(target_run, result)
            if self._observer is not None:
                self._observer.step_finished(target_run.target, result, target_run.jobs)
            if target_run.failure is not None:
                await self._rollback(target_run)

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
        if self._plan:
            verdict, message = StepStatus.SKIPPED, "not run: a plan asks for no approval"
        elif not live:
            verdict, message = StepStatus.SKIPPED, "not run: no target reached it"
        else:
            request = await self._request(step, live, following(self._runbook.steps, step))
            approved = self._approver is not None and await self._approver(request)
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
            target_run.outputs[step.id] = dict(outputs)
            if verdict is StepStatus.DECLINED:
                target_run.failure = f"step '{step.id}' was not approved: {message}"
            self._journal_step(target_run, decided)

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
        logger.warning("%s", why)
        for target_run in runs:
            target_run.failure = target_run.failure or why
            target_run.outcome.steps.append(
                StepOutcome(
                    step_id=GUARD_ID, action=GUARD_ACTION, status=StepStatus.FAILED, message=why
                )
            )

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

    async def _step_in(self, target_run: _TargetRun, step: Step) -> StepOutcome:
        """Run one step in one target and keep its outcome and outputs (the journal's too)."""
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
        result = await self._steps.run(
            step,
            api=target_run.api,
            jobs=target_run.jobs,
            project_id=target_run.target.project_id,
            scope=target_run.scope,
            # A rollback undoes what the run did: the run's spent error budget must not stop it.
            errors=errors,
        )
        target_run.running = None
        outcome.steps.append(result)
        target_run.outputs[step.id] = result.outputs
        return result

    # ----------------------------------------------------------------------------- the end

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
            reason = target_run.failure or (f"step '{failed[0]}' failed" if failed else None)
            finalize(outcome.jobs, reason, mutating=self._mutating)
        if not target_run.rolled_back or interrupted:
            why = (
                "run interrupted"
                if interrupted
                else "a plan makes no changes to undo"
                if self._plan
                else "no step failed"
            )
            outcome.steps.extend(
                StepOutcome.not_run(s, why) for s in self._runbook.rollback if s.id not in done
            )
        outcome.steps.sort(key=self._declared_order)

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
