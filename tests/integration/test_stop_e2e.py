"""Stop conditions end to end, against the emulator in this process: what the emulator saw.

The engine and the emulator share one event loop, so the trip (heard by the run's observer the
moment it happens) and each mutating request's arrival are read on one monotonic clock: the
emulator's own log (``GET /_emulator/requests``, stamped on arrival with its fleet clock, the
process's monotonic clock) and a middleware in front of it (which also touches the stop file
once the requests a test waits for were answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from harness import FINAL

from engine import session
from engine.emulator import Emulator, EmulatorConfig, FaultConfig, ProjectSpec
from engine.ledger import Disposition, JobBook
from engine.report.document import Report
from engine.run.approval import ApprovalRequest, approve_all
from engine.run.emulated import emulator_stats
from engine.run.inputs import endpoint_where
from engine.run.result import StepOutcome
from engine.run.step import StepTiming
from engine.runbook import Step, Target

PROJECTS = tuple(f"{i:x}" * 32 for i in range(10, 14))  # four projects: aaaa..., bbbb..., ...
MUTATING = ("/jobs/batch-retry-task", "/jobs/batch-pause-task")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RETRY = """\
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 1
      reconcile_grace: 1s
  - id: verify
    action: drs.verify_status
    timeout: 4s
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 0.2s
"""


@dataclass
class Arrival:
    t: float
    path: str
    project_id: str


@dataclass
class Watching:
    """The emulator's arrivals, and when (and whether) the run heard its stop trip."""

    arrivals: list[Arrival] = field(default_factory=list)
    tripped_t: float | None = None
    # The emulator's own log of mutating arrivals (GET /_emulator/requests), read at the end.
    logged: list[dict[str, Any]] = field(default_factory=list)

    async def read_log(self, emulator: Emulator) -> None:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"{emulator.url}/_emulator/requests?kind=mutating") as answer,
        ):
            self.logged = (await answer.json())["requests"]

    def logged_after(self, t: float, route: str = "") -> list[dict[str, Any]]:
        return [e for e in self.logged if e["at"] > t and e["route"].endswith(route)]

    def mutating(self, *, after: float = float("-inf"), kind: str = "") -> list[Arrival]:
        return [a for a in self.arrivals if a.t > after and a.path.endswith(kind or MUTATING)]


class Observer:
    """A RunObserver that notes the loop's time when the run is told it stopped."""

    shows_plan = False

    def __init__(self, watching: Watching) -> None:
        self._watching = watching

    def run_started(self, books: Mapping[Target, JobBook]) -> None: ...

    def run_finished(self) -> None: ...

    def note(self, text: str) -> None: ...

    def run_stopped(self, why: str) -> None:
        if why.startswith("stopped by") and self._watching.tripped_t is None:
            self._watching.tripped_t = asyncio.get_running_loop().time()

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None: ...

    def about_to_change(self, request: ApprovalRequest) -> None: ...

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None: ...


def _emulator(
    watching: Watching,
    *,
    jobs: int = 30,
    faults: FaultConfig | None = None,
    then: Callable[[list[Arrival]], None] | None = None,
) -> Emulator:
    """The emulator over PROJECTS, with a middleware (first, before its gateway) that records
    each mutating request's arrival and calls ``then`` once it has been answered."""
    config = EmulatorConfig(
        projects=tuple(ProjectSpec(project_id=p, region="cn-north-4") for p in PROJECTS),
        jobs_per_project=jobs,
        seed=5,
        time_scale=0.05,
        faults=faults or FaultConfig(),
    )
    emulator = Emulator(config)

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith(MUTATING):
            return await handler(request)
        project = request.path.split("/")[2]
        watching.arrivals.append(Arrival(asyncio.get_running_loop().time(), request.path, project))
        response = await handler(request)
        if then is not None:
            then(watching.arrivals)
        return response

    emulator.app.middlewares.insert(0, record)
    return emulator


def _runbook(tmp_path: Path, steps: str, head: str = "", rollback: str = "") -> Path:
    targets = "".join(
        f"  - name: {chr(ord('a') + i)}\n    project_id: {p}\n    region: cn-north-4\n"
        for i, p in enumerate(PROJECTS)
    )
    path = tmp_path / "rb.yaml"
    path.write_text(
        f"version: 1\nname: stop\nconcurrency: 4\n{head}targets:\n{targets}steps:\n{steps}"
        + (f"rollback:\n{rollback}" if rollback else ""),
        encoding="utf-8",
    )
    return path


async def _run(
    emulator: Emulator,
    runbook: Path,
    watching: Watching,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop_files: tuple[Path, ...] = (),
) -> session.RunOutcome:
    monkeypatch.setenv("DRS_AUTH_TOKEN", emulator.token)
    inputs = session.prepare(runbook)
    async with asyncio.timeout(90):
        return await session.run(
            inputs,
            endpoint_where(emulator.url),
            report_dir=tmp_path / "report",
            approver=approve_all,
            observer=Observer(watching),
            stop_files=stop_files,
        )


def _assert_only_in_flight_arrived_after_the_trip(report: Report, watching: Watching) -> None:
    assert report.stopped_by is not None
    assert watching.tripped_t is not None
    late = watching.mutating(after=watching.tripped_t)
    assert len(late) <= report.stopped_by.in_flight, late
    # The emulator's own log says the same, and holds every arrival the middleware saw.
    assert len(watching.logged) == len(watching.arrivals)
    assert len(watching.logged_after(watching.tripped_t)) <= report.stopped_by.in_flight


def _withheld(report: Report) -> list[str]:
    return [job.id for _, job in report.jobs() if "not sent: stopped by" in (job.reason or "")]


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DRS_IAM_USER", "DRS_IAM_PASSWORD", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"):
        monkeypatch.delenv(name, raising=False)


async def test_a_stop_file_touched_mid_run_lets_no_mutating_request_leave_after_the_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = tmp_path / "STOP"
    watching = Watching()

    def after_the_second_answer(arrivals: list[Arrival]) -> None:
        if len(arrivals) >= 2:
            stop.touch()

    emulator = _emulator(watching, then=after_the_second_answer)
    async with emulator:
        outcome = await _run(
            emulator, _runbook(tmp_path, RETRY), watching, tmp_path, monkeypatch, (stop,)
        )
        stats = await emulator_stats(emulator.url)  # the emulator's own count
        await watching.read_log(emulator)

    report = outcome.report
    assert outcome.exit_code == 1
    assert report.stopped_by is not None
    assert report.stopped_by.condition == f"file: {stop}"
    assert report.stopped_by.location == "--stop-file"
    assert report.stopped_by.detail == f"{stop} exists"
    _assert_only_in_flight_arrived_after_the_trip(report, watching)
    # The stop held back most of the fleet's retries: one job a request, 4 x 30 jobs.
    selected = report.totals.selected
    assert 2 <= len(watching.mutating()) < selected
    assert stats["mutating_requests"] == len(watching.mutating())
    assert len(_withheld(report)) + len(watching.mutating()) >= selected - 4
    assert all(job.disposition.value in FINAL for _, job in report.jobs())
    # Every target's verify was cut short or never started; the headline says why.
    for target in report.targets:
        verify = next(s for s in target.steps if s.id == "verify")
        assert verify.message is not None
        assert "stopped by file" in verify.message
    assert (tmp_path / "report" / "report.md").read_text().count("Stopped by `file:") == 1
    assert '"type":"stopped"' in (tmp_path / "report" / "journal.jsonl").read_text().replace(
        " ", ""
    )


async def test_an_error_code_answered_count_times_stops_even_the_clients_own_re_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watching = Watching()
    emulator = _emulator(watching, jobs=6, faults=FaultConfig(busy_rate=1.0))  # always busy
    head = "stop_when:\n  - error_code: DRS.M01504\n    count: 3\n"
    async with emulator:
        outcome = await _run(
            emulator, _runbook(tmp_path, RETRY, head), watching, tmp_path, monkeypatch
        )
        await watching.read_log(emulator)

    report = outcome.report
    assert outcome.exit_code == 1
    assert report.stopped_by is not None
    assert report.stopped_by.condition == "error_code: DRS.M01504, count: 3"
    assert report.stopped_by.location == f"stop_when at {tmp_path / 'rb.yaml'}:5:5"
    assert report.stopped_by.detail == "DRS.M01504 answered 3 time(s)"
    _assert_only_in_flight_arrived_after_the_trip(report, watching)
    # Each busy answer is retried by the client (up to 5 sends); the stop cut those short.
    assert len(watching.mutating()) < 3 + report.stopped_by.in_flight + 1
    assert all(job.disposition.value in FINAL for _, job in report.jobs())
    assert any(job.disposition.value == "not_retried" for _, job in report.jobs())


async def test_more_jobs_failing_again_than_allowed_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watching = Watching()
    emulator = _emulator(watching, jobs=30)
    head = "stop_when:\n  - failed_again: 0\n"
    async with emulator:
        outcome = await _run(
            emulator, _runbook(tmp_path, RETRY.replace("batch_size: 1", "batch_size: 100"), head),
            watching, tmp_path, monkeypatch,
        )  # fmt: skip
        await watching.read_log(emulator)

    report = outcome.report
    assert outcome.exit_code == 1
    assert report.stopped_by is not None
    assert report.stopped_by.condition == "failed_again: 0"
    assert report.stopped_by.detail == "1 job(s) failed again, more than 0"
    assert report.totals.of_disposition(Disposition.FAILED_AGAIN) >= 1
    _assert_only_in_flight_arrived_after_the_trip(report, watching)


PAUSE = """\
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED, FULL_TRANSFER_STARTED]
      retryable_only: false
  - id: pause
    action: drs.pause_jobs
    when: ${{ target.name != 'c' and target.name != 'd' }}
    with:
      jobs: ${{ steps.select.jobs }}
      pause_mode: target
      batch_size: 1
  - id: wait
    action: sleep
    with:
      duration: 20s
"""
RESUME = """\
  - id: resume
    action: drs.batch_retry
    with:
      jobs: ${{ steps.pause.paused }}
"""


async def test_the_rollback_runs_only_where_a_change_was_accepted_and_may_send_after_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = tmp_path / "STOP"
    watching = Watching()
    changed = {PROJECTS[0], PROJECTS[1]}  # targets a and b pause; c and d do not

    def once_a_and_b_paused(arrivals: list[Arrival]) -> None:
        if {a.project_id for a in arrivals} >= changed:
            stop.touch()

    emulator = _emulator(watching, then=once_a_and_b_paused)
    head = f"stop_when:\n  - file: {stop}\n"
    async with emulator:
        outcome = await _run(
            emulator, _runbook(tmp_path, PAUSE, head, RESUME), watching, tmp_path, monkeypatch
        )
        await watching.read_log(emulator)

    report = outcome.report
    assert outcome.exit_code == 1
    assert watching.tripped_t is not None
    assert report.stopped_by is not None
    # No pause after the trip but those in flight; the rollback's resumes are the exception.
    pauses_late = watching.mutating(after=watching.tripped_t, kind="/jobs/batch-pause-task")
    assert len(pauses_late) <= report.stopped_by.in_flight
    late_in_its_log = watching.logged_after(watching.tripped_t, "batch-pause-task")
    assert len(late_in_its_log) <= report.stopped_by.in_flight
    resumed = watching.mutating(after=watching.tripped_t, kind="/jobs/batch-retry-task")
    assert resumed  # the rollback undid the pauses after the stop
    assert {a.project_id for a in resumed} <= changed
    for target in report.targets:
        rollback = next(s for s in target.steps if s.id == "resume")
        wait = next(s for s in target.steps if s.id == "wait")
        assert "stopped by file" in (wait.message or ""), wait
        if target.project_id in changed:
            assert rollback.status == "succeeded", rollback
        else:
            assert rollback.status == "skipped"
            assert rollback.message == (
                "not run: the run stopped before a change was accepted here"
            )
