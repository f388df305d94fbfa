"""The executor against fake APIs on virtual time: gates, guard rails, rollback, plans,
interruptions, resumes and exit codes, each in milliseconds.

Every test builds a real ``Executor`` from a validated runbook and gives it one ``FakeFleet``
per target; nothing here opens a socket. The end-to-end tier (tests/integration) runs the same
engine against the emulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock, FakeFleet, job, until

from engine.actions.catalog import CATALOG
from engine.actions.spec import DEFAULT_STEP_TIMEOUT_S
from engine.api.protocol import DrsApi
from engine.api.types import BatchActionResult, BatchOutcome, JobActions, RetryItem
from engine.errors import DrsApiError
from engine.ledger import Disposition, EventKind, JobBook
from engine.run.approval import ApprovalRequest, approve_all
from engine.run.executor import Executor
from engine.run.journal import RunHeader, RunJournal, read_journal
from engine.run.result import RunResult, StepOutcome, StepStatus
from engine.run.step import StepTiming
from engine.run.stop import StopSignal, Tripped
from engine.runbook import Runbook, Step, StopCondition, Target, load_runbook

PROJECTS = ("0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10", "1b6d7f2a4c3e5d9f0a8b7c6d5e4f3a21")
DELETE_ONLY = JobActions(available_actions=("DELETE",))

SELECT_RETRY_VERIFY = """\
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
  - id: verify
    action: drs.verify_status
    timeout: 60s
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 2s
"""


def runbook_of(tmp_path: Path, steps: str, *, head: str = "", targets: int = 1) -> Runbook:
    """A validated runbook over ``targets`` projects (named t0, t1, ...)."""
    listed = "".join(
        f"  - name: t{i}\n    project_id: {PROJECTS[i]}\n    region: cn-north-4\n"
        for i in range(targets)
    )
    path = tmp_path / "rb.yaml"
    path.write_text(f"version: 1\nname: unit\n{head}targets:\n{listed}steps:\n{steps}")
    return load_runbook(path, CATALOG)


def fleet() -> FakeFleet:
    """Two failed jobs, one paused, one running (not selected) and one that offers no RETRY."""
    return FakeFleet().listing(
        job("a", "INCRE_TRANSFER_FAILED"),
        job("b", "FULL_TRANSFER_FAILED"),
        job("p", "PAUSING"),
        job("h", "INCRE_TRANSFER_STARTED"),
        job("d", "CREATE_FAILED", actions=DELETE_ONLY),
    )


class Recorder:
    """A RunObserver that keeps what it was told."""

    def __init__(self, *, shows_plan: bool = True) -> None:
        self._shows_plan = shows_plan
        self.calls: list[str] = []
        self.requests: list[ApprovalRequest] = []
        self.notes: list[str] = []
        self.timings: list[tuple[str, StepTiming]] = []

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        self.calls.append(f"run_started {len(books)}")

    def run_finished(self) -> None:
        self.calls.append("run_finished")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None:
        self.calls.append(f"{target.label} {step.id} started")
        self.timings.append((step.id, timing))

    @property
    def shows_plan(self) -> bool:
        return self._shows_plan

    def about_to_change(self, request: ApprovalRequest) -> None:
        self.requests.append(request)
        self.calls.append(f"about to change {request.step.id}")

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        self.calls.append(f"{target.label} {outcome.step_id} {outcome.status}")

    def run_stopped(self, why: str) -> None:
        self.calls.append(f"stopped: {why}")


async def execute(
    runbook: Runbook,
    fleets: list[FakeFleet],
    clock: FakeClock,
    **options: Any,
) -> RunResult:
    clients: dict[Target, DrsApi] = dict(zip(runbook.targets, fleets, strict=True))
    executor = Executor(runbook, clients, run_id="r1", clock=clock, sleep=clock.sleep, **options)
    return await executor.run()


def jobs_of(result: RunResult, target: int = 0) -> dict[str, Any]:
    return {record.job_id: record for record in result.targets[target].jobs}


def statuses(result: RunResult, target: int = 0) -> dict[str, StepStatus]:
    return {s.step_id: s.status for s in result.targets[target].steps}


# ----------------------------------------------------------------------------- a whole run


async def test_every_target_retries_its_jobs_and_each_recovers_on_the_run_clock(
    tmp_path: Path, clock: FakeClock
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY, targets=2)
    fleets = [fleet(), fleet()]

    result = await execute(runbook, fleets, clock)

    assert result.exit_code == 0
    for index, api in enumerate(fleets):
        assert api.retry_calls == [["a", "b", "p"]]
        jobs = jobs_of(result, index)
        assert {j: jobs[j].disposition for j in "abp"} == dict.fromkeys(
            "abp", Disposition.RECOVERED
        )
        assert jobs["d"].disposition is Disposition.SKIPPED
        assert "h" not in jobs  # running: not selected
        # Polled at 0 (STARTJOBING) and 2 s later (running): recovered 2 s after the retry.
        assert jobs["a"].time_to_recover_s == 2.0
    assert result.wall_s == 2.0  # virtual time: the two targets polled side by side


async def test_a_job_that_fails_again_makes_the_run_exit_1_and_says_why(
    tmp_path: Path, clock: FakeClock
) -> None:
    api = fleet()
    api.after_retry["b"] = ["FULL_TRANSFER_FAILED"]  # seen starting, then failed again

    result = await execute(runbook_of(tmp_path, SELECT_RETRY_VERIFY), [api], clock)

    assert result.exit_code == 1
    b = jobs_of(result)["b"]
    assert b.disposition is Disposition.FAILED_AGAIN
    assert b.reason == "status FULL_TRANSFER_FAILED after the retry"
    assert statuses(result) == dict.fromkeys(("select", "retry", "verify"), StepStatus.SUCCEEDED)


async def test_a_read_only_runbook_exits_0_with_its_jobs_left_selected(
    tmp_path: Path, clock: FakeClock
) -> None:
    steps = "  - id: select\n    action: drs.select_jobs\n"
    result = await execute(runbook_of(tmp_path, steps), [fleet()], clock)
    assert not result.mutating
    assert result.exit_code == 0
    assert jobs_of(result)["a"].disposition is Disposition.SELECTED


async def test_step_retries_wait_their_backoff_on_the_clock_then_succeed(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.run.step.random.uniform", lambda low, high: high)
    steps = (
        "  - id: select\n    action: drs.select_jobs\n    retries: {max_attempts: 3, backoff: 2s}\n"
    )
    api = fleet()
    failures = [DrsApiError(http_status=500, error_code="DRS.M00004", error_msg="x",
                            request_id=None, operation="list jobs")]  # fmt: skip
    listed = api.list_jobs

    async def flaky(**kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await listed(**kwargs)

    monkeypatch.setattr(api, "list_jobs", flaky)
    result = await execute(runbook_of(tmp_path, steps), [api], clock)

    [select] = result.targets[0].steps
    assert (select.status, select.attempts) == (StepStatus.SUCCEEDED, 2)
    assert select.duration_s == 2.0  # one full-jitter wait at its ceiling


async def test_the_observer_hears_each_step_and_the_plan_before_the_first_change(
    tmp_path: Path, clock: FakeClock
) -> None:
    recorder = Recorder()
    await execute(runbook_of(tmp_path, SELECT_RETRY_VERIFY), [fleet()], clock, observer=recorder)

    assert recorder.calls == [
        "run_started 1",
        "t0 select started",
        "t0 select succeeded",
        "about to change retry",
        "t0 retry started",
        "t0 retry succeeded",
        "t0 verify started",
        "t0 verify succeeded",
        "run_finished",
    ]
    [request] = recorder.requests
    [preview] = request.previews.values()
    assert [r.job_id for r in preview.would_send] == ["a", "b", "p"]
    assert preview.batches == 1


async def test_quiet_run_does_not_work_out_the_plan_nobody_sees(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    previews: list[str] = []

    async def counted(step: Step, **kwargs: Any) -> Any:
        previews.append(step.id)
        raise AssertionError("a quiet run previews nothing")

    monkeypatch.setattr("engine.run.executor.preview_step", counted)
    recorder = Recorder(shows_plan=False)
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)

    result = await execute(runbook, [fleet()], clock, observer=recorder)

    assert previews == []
    assert recorder.requests == []
    assert result.exit_code == 0


async def test_when_false_skips_a_step_and_later_steps_see_empty_outputs(
    tmp_path: Path, clock: FakeClock
) -> None:
    steps = """\
  - id: select
    action: drs.select_jobs
    with:
      name: no-such-job-*
  - id: retry
    action: drs.batch_retry
    when: ${{ steps.select.count > 0 }}
    with:
      jobs: ${{ steps.select.jobs }}
  - id: verify
    action: drs.verify_status
    when: ${{ length(steps.retry.accepted) > 0 }}
    timeout: 1s
    with:
      jobs: ${{ steps.retry.accepted }}
"""
    api = fleet()
    result = await execute(runbook_of(tmp_path, steps), [api], clock)

    assert result.exit_code == 0
    select, retry, verify = result.targets[0].steps
    assert [s.status for s in (select, retry, verify)] == ["succeeded", "skipped", "skipped"]
    assert retry.message == "skipped: when ${{ steps.select.count > 0 }} is false"
    assert retry.outputs == {"accepted": [], "rejected": []}
    assert api.mutating_calls == 0


# ----------------------------------------------------------------------------- gates


APPROVED_RETRY = """\
  - id: select
    action: drs.select_jobs
  - id: approve
    action: approve
    with:
      message: Retry these?
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
"""


async def test_an_approval_is_asked_once_for_every_target_after_all_have_selected(
    tmp_path: Path, clock: FakeClock
) -> None:
    fleets = [fleet(), fleet()]
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        assert all(api.list_calls for api in fleets)  # every target selected first
        assert not any(api.retry_calls for api in fleets)  # nothing changed yet
        return True

    result = await execute(
        runbook_of(tmp_path, APPROVED_RETRY, targets=2), fleets, clock, approver=approver
    )

    [request] = asked
    assert request.total == 6
    assert [t.label for t in request.selected] == ["t0", "t1"]
    assert {t.label: [r.job_id for r in p.would_send] for t, p in request.previews.items()} == {
        "t0": ["a", "b", "p"],
        "t1": ["a", "b", "p"],
    }
    assert all(api.retry_calls == [["a", "b", "p"]] for api in fleets)
    assert statuses(result, 1)["approve"] is StepStatus.SUCCEEDED


async def test_an_approval_takes_as_long_as_the_answer_took(
    tmp_path: Path, clock: FakeClock
) -> None:
    async def slow_human(request: ApprovalRequest) -> bool:
        await clock.sleep(42.0)
        return True

    result = await execute(
        runbook_of(tmp_path, APPROVED_RETRY), [fleet()], clock, approver=slow_human
    )
    approve = next(s for s in result.targets[0].steps if s.step_id == "approve")
    assert approve.duration_s == pytest.approx(42.0, abs=0.01)
    select = result.targets[0].steps[0]
    assert approve.started_t >= select.started_t + select.duration_s


async def test_each_step_starts_with_its_time_limit_and_a_resume_says_so(
    tmp_path: Path, clock: FakeClock
) -> None:
    recorder = Recorder()
    await execute(runbook_of(tmp_path, SELECT_RETRY_VERIFY), [fleet()], clock, observer=recorder)
    limits = {step_id: timing.timeout_s for step_id, timing in recorder.timings}
    assert limits["verify"] == 60.0  # the runbook's timeout
    assert limits["select"] == DEFAULT_STEP_TIMEOUT_S  # the action's default
    assert not any(timing.resumed for _, timing in recorder.timings)


async def test_a_declined_gate_is_declined_in_every_target_and_sends_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    async def declined(request: ApprovalRequest) -> bool:
        return False

    fleets = [fleet(), fleet()]
    result = await execute(
        runbook_of(tmp_path, APPROVED_RETRY, targets=2), fleets, clock, approver=declined
    )

    assert result.exit_code == 1
    assert sum(api.mutating_calls for api in fleets) == 0
    for index in range(2):
        steps = result.targets[index].steps
        assert [s.status for s in steps] == ["succeeded", "declined", "skipped"]
        assert (steps[1].message or "").startswith("declined by ")
        selected = [j for j in result.targets[index].jobs if j.disposition != "skipped"]
        assert {j.disposition for j in selected} == {Disposition.NOT_RETRIED}
        assert all("not approved: declined by " in (j.reason or "") for j in selected)
    assert len(result.approvals) == 1  # one decision for every target
    decision = result.approvals[0]
    assert (decision["step"], decision["approved"], decision["how"]) == (
        "approve",
        False,
        "terminal",
    )
    assert decision["approved_by"]
    assert decision["approved_at"]


async def test_a_gate_with_no_approver_is_not_approved(tmp_path: Path, clock: FakeClock) -> None:
    api = fleet()
    result = await execute(runbook_of(tmp_path, APPROVED_RETRY), [api], clock)
    assert statuses(result)["approve"] is StepStatus.DECLINED
    assert api.mutating_calls == 0


# ----------------------------------------------------------------------------- guard rails


async def test_max_jobs_total_stops_every_target_before_any_change(
    tmp_path: Path, clock: FakeClock
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY, head="max_jobs_total: 5\n", targets=2)
    fleets = [fleet(), fleet()]
    observer = Recorder()

    result = await execute(runbook, fleets, clock, observer=observer)

    assert result.exit_code == 1
    assert sum(api.mutating_calls for api in fleets) == 0
    # Told once, for the whole run (the notifier's "stopped"), before the run finished.
    stopped = [c for c in observer.calls if c.startswith("stopped")]
    assert stopped == [
        "stopped: 6 jobs selected across all targets, more than max_jobs_total 5; nothing was "
        "changed"
    ]
    assert observer.calls.index(stopped[0]) < observer.calls.index("run_finished")
    for target in result.targets:
        assert [(s.step_id, s.status) for s in target.steps] == [
            ("select", "succeeded"),
            ("max_jobs_total", "failed"),
            ("retry", "skipped"),
            ("verify", "skipped"),
        ]
        assert target.steps[1].message == (
            "6 jobs selected across all targets, more than max_jobs_total 5; nothing was changed"
        )


async def test_max_jobs_stops_the_retry_before_any_request(
    tmp_path: Path, clock: FakeClock
) -> None:
    api = fleet()
    result = await execute(
        runbook_of(tmp_path, SELECT_RETRY_VERIFY, head="max_jobs: 2\n"), [api], clock
    )
    assert api.mutating_calls == 0
    retry = result.targets[0].steps[1]
    assert retry.message == (
        "would retry 3 jobs, more than max_jobs 2; nothing was sent (narrow the selection "
        "or raise max_jobs)"
    )
    assert {j.disposition for j in result.targets[0].jobs if j.job_id in "abp"} == {
        Disposition.NOT_RETRIED
    }


async def test_max_errors_stops_further_batches_in_every_target(
    tmp_path: Path, clock: FakeClock
) -> None:
    steps = """\
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 1
"""

    def refused(_: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        return [
            BatchActionResult(id=j, status=BatchOutcome.FAILED, error_code="DRS.M00304")
            for j in ids
        ]

    first, second = fleet(), fleet()
    first.retry_answers = [refused]
    observer = Recorder()
    result = await execute(
        runbook_of(tmp_path, steps, head="max_errors: 0\n", targets=2),
        [first, second],
        clock,
        observer=observer,
    )

    assert result.exit_code == 1
    # The budget tripped once, and the run was told once, though both targets felt it.
    assert [c for c in observer.calls if c.startswith("stopped")] == [
        "stopped: 1 error(s) in 1 job(s) exceed max_errors 0: no further batch is sent"
    ]
    assert first.retry_calls == [["a"]]  # refused: the budget is spent, nothing else is sent
    assert second.retry_calls == []
    assert jobs_of(result, 0)["a"].disposition is Disposition.RETRY_REJECTED
    why = "not sent: 1 error(s) in 1 job(s) exceed max_errors 0"
    for index, later in ((0, "b"), (0, "p"), (1, "a"), (1, "b"), (1, "p")):
        record = jobs_of(result, index)[later]
        assert (record.disposition, record.reason) == (Disposition.NOT_RETRIED, why)


# ----------------------------------------------------------------------------- rollback, plan

PAUSE_THEN_FAIL = """\
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED]
      retryable_only: false
  - id: pause
    action: drs.pause_jobs
    with:
      jobs: ${{ steps.select.jobs }}
      pause_mode: target
  - id: broken
    action: assert
    with:
      that: ${{ false }}
      message: the drill went wrong
  - id: never
    action: sleep
    with:
      duration: 1s
rollback:
  - id: undo_pause
    action: drs.batch_retry
    with:
      jobs: ${{ steps.pause.paused }}
"""


async def test_a_failed_assert_says_what_its_comparison_measured_and_expected(
    tmp_path: Path, clock: FakeClock
) -> None:
    steps = """\
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED]
      retryable_only: false
  - id: few
    action: assert
    with:
      that: ${{ steps.select.count <= params.most }}
      message: too many running jobs
"""
    head = "params:\n  most:\n    type: integer\n"
    runbook = runbook_of(tmp_path, steps, head=head)
    result = await execute(runbook, [running_fleet()], clock, params={"most": 1})

    failed = next(s for s in result.targets[0].steps if s.step_id == "few")
    assert failed.status is StepStatus.FAILED
    # The user's message first, then both sides with their values, as the engine evaluated them.
    assert failed.message == "too many running jobs: steps.select.count = 2 > params.most = 1"


async def test_an_assert_that_did_not_hold_says_passed_false_one_not_evaluated_says_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    # JUnit tells them apart by these outputs: a failure, and an error.
    steps = """\
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED]
      retryable_only: false
  - id: few
    action: assert
    on_failure: continue
    with:
      that: ${{ steps.select.count <= 1 }}
  - id: broken
    action: assert
    on_failure: continue
    with:
      that: ${{ steps.select.count <= params.most }}
"""
    head = "params:\n  most:\n    type: integer\n    default: 1\n"
    runbook = runbook_of(tmp_path, steps, head=head)
    result = await execute(runbook, [running_fleet()], clock, params={"most": "many"})

    few, broken = (s for s in result.targets[0].steps if s.action == "assert")
    assert (few.status, few.outputs) == (StepStatus.FAILED, {"passed": False})
    assert few.message == "assertion failed: steps.select.count = 2 > 1"
    assert broken.status is StepStatus.FAILED
    assert broken.outputs == {}
    assert (broken.message or "").endswith(
        "${{ steps.select.count <= params.most }}: cannot compare integer with string"
    )


def running_fleet() -> FakeFleet:
    return FakeFleet().listing(
        job("r1", "INCRE_TRANSFER_STARTED"), job("r2", "INCRE_TRANSFER_STARTED")
    )


async def test_a_failed_step_runs_the_rollback_steps_which_resume_what_was_paused(
    tmp_path: Path, clock: FakeClock
) -> None:
    api = running_fleet()
    # The run's error budget is spent before the rollback: the rollback has a budget of its own.
    runbook = runbook_of(tmp_path, PAUSE_THEN_FAIL, head="max_errors: 0\n")

    result = await execute(runbook, [api], clock)

    assert result.exit_code == 1
    assert statuses(result) == {
        "select": "succeeded",
        "pause": "succeeded",
        "broken": "failed",
        "never": "skipped",
        "undo_pause": "succeeded",
    }
    assert api.pause_calls == [["r1", "r2"]]
    assert api.retry_calls == [["r1", "r2"]]  # resumed by the rollback


async def test_rollback_steps_do_not_run_when_nothing_failed_nor_in_a_plan(
    tmp_path: Path, clock: FakeClock
) -> None:
    runbook = runbook_of(tmp_path, PAUSE_THEN_FAIL.replace("${{ false }}", "${{ true }}"))
    api = running_fleet()
    result = await execute(runbook, [api], clock)
    undo = result.targets[0].steps[-1]
    assert (undo.step_id, undo.status, undo.message) == (
        "undo_pause",
        StepStatus.SKIPPED,
        "not run: no step failed",
    )
    assert api.retry_calls == []

    planned = await execute(runbook, [running_fleet()], FakeClock(), plan=True)
    undo = planned.targets[0].steps[-1]
    assert undo.message == "not run: a plan makes no changes to undo"


async def test_a_plan_gives_later_steps_the_empty_outputs_of_steps_it_does_not_run(
    tmp_path: Path, clock: FakeClock
) -> None:
    steps = (
        SELECT_RETRY_VERIFY
        + """\
  - id: retry_again
    action: drs.batch_retry
    when: ${{ length(steps.verify.failed) > 0 }}
    with:
      jobs: ${{ steps.verify.failed }}
"""
    )
    api = fleet()
    result = await execute(runbook_of(tmp_path, steps), [api], clock, plan=True)

    assert result.exit_code == 0
    assert api.mutating_calls == 0
    assert api.status_calls == []  # verification does not run in a plan
    retry, verify, again = result.targets[0].steps[1:]
    assert retry.outputs == {"accepted": ["a", "b", "p"], "rejected": []}
    assert verify.message == "not run: a plan makes no changes, so there is nothing to verify"
    assert again.status is StepStatus.SKIPPED
    assert (again.message or "").startswith("skipped: when")
    would = [e.kind for e in jobs_of(result)["a"].events]
    assert would == [EventKind.SELECTED, EventKind.WOULD_RETRY]


# ----------------------------------------------------------------------------- interruption


async def test_an_interrupted_run_reports_every_job_and_exits_130(
    tmp_path: Path, clock: FakeClock
) -> None:
    api = fleet()
    api.after_retry = {j: ["WAITING_FOR_START"] * 100 for j in "abp"}  # never recovers
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)
    executor = Executor(
        runbook, {runbook.targets[0]: api}, run_id="r1", clock=clock, sleep=clock.sleep
    )

    async with asyncio.TaskGroup() as group:
        task = group.create_task(executor.run())
        await until(lambda: len(api.status_calls) >= 3, clock)  # verifying
        task.cancel()
    result = task.result()

    assert result.interrupted
    assert result.exit_code == 130
    verify = result.targets[0].steps[-1]
    assert (verify.status, verify.message) == (StepStatus.FAILED, "interrupted while running")
    for job_id in "abp":
        record = jobs_of(result)[job_id]
        assert record.disposition is Disposition.CANCELLED
        assert record.reason == "retry accepted, verification interrupted (run interrupted)"


async def test_an_interrupted_step_shows_how_long_it_ran(tmp_path: Path, clock: FakeClock) -> None:
    api = fleet()
    api.after_retry = {j: ["WAITING_FOR_START"] * 100 for j in "abp"}
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)
    executor = Executor(
        runbook, {runbook.targets[0]: api}, run_id="r1", clock=clock, sleep=clock.sleep
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(executor.run())
        await until(lambda: len(api.status_calls) >= 3, clock)
        ran_until = clock()
        task.cancel()
    verify = task.result().targets[0].steps[-1]
    assert verify.message == "interrupted while running"
    # it ran from its start to the interruption on the run's clock, not 0.0 s
    assert verify.duration_s == pytest.approx(ran_until - verify.started_t, abs=0.01)
    assert verify.duration_s > 1.0


# ----------------------------------------------------------------------------- resume


def _journal(tmp_path: Path, runbook: Runbook) -> RunJournal:
    started = time.time()
    header = RunHeader(
        run_id="r1",
        started_at="2026-12-02T06:00:00+00:00",
        started_epoch=started,
        runbook_path=runbook.path,
        runbook_sha256="0" * 64,
        params={},
        overrides={},
        endpoint=None,
        credentials_file=None,
        emulator=False,
    )
    return RunJournal.start(tmp_path / "run", header, b"")


async def _interrupted(
    tmp_path: Path,
    runbook: Runbook,
    api: FakeFleet,
    *,
    after_status_calls: int = 0,
    until_sent: int = 0,
    **options: Any,
) -> None:
    """Run with a journal and stop it (as Ctrl-C would) once the fake answered this many status
    queries, or saw this many retry requests."""
    (tmp_path / "run").mkdir()
    journal = _journal(tmp_path, runbook)
    clock = FakeClock()
    executor = Executor(
        runbook,
        {runbook.targets[0]: api},
        run_id="r1",
        journal=journal,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(executor.run())
        await until(
            lambda: (
                len(api.status_calls) >= after_status_calls and len(api.retry_calls) >= until_sent
            ),
            clock,
        )
        task.cancel()
    journal.close()


async def _resumed(tmp_path: Path, runbook: Runbook, api: FakeFleet, **options: Any) -> RunResult:
    journal, state = RunJournal.take_over(tmp_path / "run")
    clock = FakeClock()
    try:
        return await Executor(
            runbook,
            {runbook.targets[0]: api},
            run_id="r1",
            journal=journal,
            resume=state,
            clock=clock,
            sleep=clock.sleep,
            **options,
        ).run()
    finally:
        journal.close()


async def test_a_resumed_run_neither_reruns_finished_steps_nor_resends_answered_retries(
    tmp_path: Path,
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)
    before = fleet()
    before.after_retry = {key: ["WAITING_FOR_START"] for key in "abp"}
    await _interrupted(tmp_path, runbook, before, after_status_calls=2)
    assert before.retry_calls == [["a", "b", "p"]]
    recorder = Recorder()

    after = fleet()  # the service, minutes later: the retried jobs run again
    after.statuses.update(dict.fromkeys("abp", "INCRE_TRANSFER_STARTED"))
    result = await _resumed(tmp_path, runbook, after, observer=recorder)

    assert after.list_calls == []  # select finished before the interruption
    assert after.mutating_calls == 0  # every retry had its answer in the journal
    # the verify step starts over, and the display is told its deadline is the full timeout
    assert recorder.timings == [("verify", StepTiming(timeout_s=60.0, resumed=True))]
    assert result.exit_code == 0
    assert {jobs_of(result)[j].disposition for j in "abp"} == {Disposition.RECOVERED}
    assert result.resumed_at == []  # the header's resumes are the session's to record
    assert read_journal(tmp_path / "run" / "journal.jsonl").finished


class Unanswered(FakeFleet):
    """A service that takes retries and never answers them (the run is stopped meanwhile)."""

    async def batch_retry(self, jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        self.retry_calls.append([j.job_id for j in jobs])
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_an_unanswered_retry_is_reconciled_on_resume_not_sent_again(tmp_path: Path) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)
    before = Unanswered().listing(*fleet().listed["migration"])
    await _interrupted(tmp_path, runbook, before, until_sent=1)
    assert before.retry_calls == [["a", "b", "p"]]

    after = fleet()  # the retry had reached the service: the jobs are starting
    after.statuses.update(dict.fromkeys("abp", "STARTJOBING"))
    after.upcoming = {key: ["STARTJOBING", "INCRE_TRANSFER_STARTED"] for key in "abp"}
    result = await _resumed(tmp_path, runbook, after)

    assert after.retry_calls == []
    for job_id in "abp":
        kinds = [e.kind for e in jobs_of(result)[job_id].events]
        assert EventKind.RETRY_RECONCILED in kinds
        assert kinds.count(EventKind.RETRY_SENT) == 1


async def test_a_gate_approved_before_the_interruption_is_not_asked_again(
    tmp_path: Path,
) -> None:
    steps = APPROVED_RETRY + (
        "  - id: verify\n    action: drs.verify_status\n    timeout: 60s\n"
        "    with:\n      jobs: ${{ steps.retry.accepted }}\n      poll_interval: 2s\n"
    )
    runbook = runbook_of(tmp_path, steps)
    before = fleet()
    before.after_retry = {key: ["WAITING_FOR_START"] for key in "abp"}
    await _interrupted(tmp_path, runbook, before, after_status_calls=2, approver=approve_all)

    async def must_not_ask(request: ApprovalRequest) -> bool:
        raise AssertionError("approved before the interruption")

    after = fleet()
    after.statuses.update(dict.fromkeys("abp", "INCRE_TRANSFER_STARTED"))
    result = await _resumed(tmp_path, runbook, after, approver=must_not_ask)
    assert statuses(result)["approve"] is StepStatus.SUCCEEDED
    assert result.exit_code == 0


async def test_a_target_whose_step_failed_before_the_interruption_runs_its_rollback_on_resume(
    tmp_path: Path,
) -> None:
    runbook = runbook_of(tmp_path, PAUSE_THEN_FAIL)
    api = Unanswered().listing(*running_fleet().listed["migration"])
    await _interrupted(tmp_path, runbook, api, until_sent=1)  # stopped during the rollback
    assert api.pause_calls == [["r1", "r2"]]

    after = running_fleet()
    after.statuses.update({"r1": "PAUSING", "r2": "PAUSING"})
    result = await _resumed(tmp_path, runbook, after)
    assert statuses(result)["broken"] is StepStatus.FAILED
    assert statuses(result)["undo_pause"] is StepStatus.SUCCEEDED


# ----------------------------------------------------------------------------- stop conditions


async def test_a_stop_withholds_the_next_batches_skips_what_is_left_and_says_why(
    tmp_path: Path, clock: FakeClock
) -> None:
    stop = tmp_path / "STOP"
    steps = SELECT_RETRY_VERIFY.replace(
        "jobs: ${{ steps.select.jobs }}", "jobs: ${{ steps.select.jobs }}\n      batch_size: 1"
    )
    runbook = runbook_of(tmp_path, steps)
    api = fleet()
    signal = StopSignal([StopCondition.stop_file(stop)])
    real_retry = api.batch_retry

    async def retry_then_stop(items: Sequence[RetryItem]) -> list[BatchActionResult]:
        answered = await real_retry(items)
        stop.touch()  # the first batch was accepted: then the operator stops the run
        return answered

    api.batch_retry = retry_then_stop  # type: ignore[method-assign,assignment]
    recorder = Recorder()
    result = await execute(runbook, [api], clock, stop=signal, observer=recorder)

    assert len(api.retry_calls) == 1  # the later batches never left
    assert result.stopped_by is not None
    assert result.stopped_by.condition == f"file: {stop}"
    assert result.exit_code == 1
    jobs = jobs_of(result)
    withheld = [r for r in jobs.values() if (r.reason or "").startswith("not sent: stopped by")]
    assert len(withheld) == 2
    assert all(r.disposition is Disposition.NOT_RETRIED for r in withheld)
    verify = next(s for s in result.targets[0].steps if s.step_id == "verify")
    assert verify.status is StepStatus.SKIPPED
    assert verify.message == f"not run: {result.stopped_by.reason}"
    told = [c for c in recorder.calls if c.startswith("stopped: stopped by file:")]
    assert len(told) == 1  # the observer (a notifier) is told once, at the trip


async def test_a_resumed_run_that_had_stopped_stays_stopped_and_sends_nothing(
    tmp_path: Path,
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY)
    (tmp_path / "run").mkdir()
    journal = _journal(tmp_path, runbook)
    tripped = Tripped(
        condition="failed_again: 0", location="stop_when at rb.yaml:3:5", tripped_at="t", detail="d"
    )
    journal.stopped(tripped.to_json())
    journal.close()
    assert read_journal(tmp_path / "run" / "journal.jsonl").stopped == tripped.to_json()

    api = fleet()
    result = await _resumed(tmp_path, runbook, api, stop=StopSignal([]))

    assert api.mutating_calls == 0
    assert api.list_calls == []
    assert result.stopped_by == tripped
    assert result.exit_code == 1
    assert all(s.status is StepStatus.SKIPPED for s in result.targets[0].steps)
    lines = (tmp_path / "run" / "journal.jsonl").read_text().count('"stopped"')
    assert lines == 1  # the trip is on disk once, not again by the resume


class SlowListing(FakeFleet):
    """A fleet whose listing takes ``list_s`` of the run's virtual time."""

    def __init__(self, clock: FakeClock, list_s: float) -> None:
        super().__init__()
        self.clock = clock
        self.list_s = list_s

    async def list_jobs(self, **filters: Any) -> Any:
        await self.clock.sleep(self.list_s)
        return await super().list_jobs(**filters)


def _retried_before_the_other_selected(
    recorder: Recorder,
) -> bool:
    calls = recorder.calls
    return calls.index("t0 retry started") < calls.index("t1 select succeeded")


async def test_a_quiet_run_retries_a_target_as_soon_as_its_own_selection_ends(
    tmp_path: Path, clock: FakeClock
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY, targets=2)
    fast, slow = SlowListing(clock, 0.0), SlowListing(clock, 10.0)
    for one in (fast, slow):
        one.listing(job("a", "INCRE_TRANSFER_FAILED"))
    recorder = Recorder(shows_plan=False)

    result = await execute(runbook, [fast, slow], clock, observer=recorder)

    assert result.exit_code == 0
    assert _retried_before_the_other_selected(recorder)
    assert fast.retry_calls == [["a"]]
    assert slow.retry_calls == [["a"]]


@pytest.mark.parametrize(("head", "shows_plan"), [("max_jobs_total: 50\n", False), ("", True)])
async def test_every_target_selects_first_when_the_total_is_checked_or_the_plan_shown(
    tmp_path: Path, clock: FakeClock, head: str, shows_plan: bool
) -> None:
    runbook = runbook_of(tmp_path, SELECT_RETRY_VERIFY, head=head, targets=2)
    fast, slow = SlowListing(clock, 0.0), SlowListing(clock, 10.0)
    for one in (fast, slow):
        one.listing(job("a", "INCRE_TRANSFER_FAILED"))
    recorder = Recorder(shows_plan=shows_plan)

    result = await execute(runbook, [fast, slow], clock, observer=recorder)

    assert result.exit_code == 0
    assert not _retried_before_the_other_selected(recorder)
    assert fast.retry_calls == [["a"]]
