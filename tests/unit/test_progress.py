"""What the live progress table counts and shows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from rich.console import Console

from engine.cli import configure_logging
from engine.errors import Location
from engine.ledger import Disposition, EventKind, JobBook, JobRecord
from engine.report.live import ASCII_SPINNER, SPINNER, LiveProgress, count
from engine.report.progress import ProgressLines, StepClocks, step_words
from engine.run.result import StepOutcome, StepStatus
from engine.run.step import StepTiming
from engine.runbook.model import Step, Target


def _book() -> JobBook:
    book = JobBook(lambda: 1.0)
    for job_id, disposition, acknowledged in (
        ("a", Disposition.RECOVERED, 1.0),
        ("b", Disposition.FAILED_AGAIN, 1.0),
        ("c", Disposition.RETRY_ACCEPTED, 1.0),
        ("d", Disposition.SELECTED, None),
        ("e", Disposition.SKIPPED, None),
    ):
        record = book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
        book.record(job_id, EventKind.SELECTED, step="select")
        record.disposition = disposition
        record.retry_acknowledged_at = acknowledged
    return book


def test_counts_leave_skipped_jobs_out() -> None:
    counts = count(_book())
    assert (counts.selected, counts.retried, counts.recovered, counts.failed) == (4, 3, 1, 1)
    assert counts.settled == 2


def test_the_table_has_a_row_per_project_and_an_overall_line() -> None:
    console = Console(record=True, width=100, color_system=None)
    target = Target(
        project_id="p" * 32, region="cn-north-4", endpoint=None, name="orders-prod",
        location=Location(path="x", line=1, col=1),
    )  # fmt: skip
    progress = LiveProgress(console)
    progress._books = {target: _book()}  # what run_started sets, without starting the display
    console.print(progress.renderable())
    text = console.export_text()
    assert "orders-prod" in text
    assert "2/4 settled · 1 recovered · 1 need a human" in text


def test_the_overall_counts_stay_on_one_line_on_a_narrow_terminal() -> None:
    for width in (60, 80, 200):
        console = Console(record=True, width=width, color_system=None)
        progress = LiveProgress(console)
        progress._books = {_target(): _book()}
        console.print(progress.renderable())
        text = console.export_text()
        assert "2/4 settled · 1 recovered · 1 need a human" in text, (width, text)
        assert max(len(line) for line in text.splitlines()) <= width


# ----------------------------------------------------------------------------- time shown


class Ticking:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _target(name: str = "orders-prod") -> Target:
    return Target(
        project_id="p" * 32, region="cn-north-4", endpoint=None, name=name,
        location=Location(path="x", line=1, col=1),
    )  # fmt: skip


def _step(step_id: str = "verify", action: str = "drs.verify_status") -> Step:
    return Step(
        id=step_id, name=None, action=action, with_={}, timeout_s=None,
        location=Location(path="x", line=1, col=1),
    )  # fmt: skip


WALL = datetime(2026, 12, 2, 15, 4, 5, tzinfo=UTC)


def _lines(*, quiet: bool = False) -> tuple[ProgressLines, list[str], Ticking]:
    out: list[str] = []
    clock = Ticking()
    lines = ProgressLines(
        out.append, quiet=quiet, heartbeat_s=30.0, clocks=StepClocks(clock), wall=lambda: WALL
    )
    return lines, out, clock


def test_ci_lines_carry_the_time_and_the_step_deadline() -> None:
    lines, out, _ = _lines()
    lines.step_started(_target(), _step(), StepTiming(timeout_s=900.0))
    assert out == [
        "15:04:05Z [orders-prod] verify (drs.verify_status) started, timeout 15m, until 15:19:05Z"
    ]


def test_a_resumed_step_says_its_deadline_is_the_full_timeout_from_now() -> None:
    lines, out, _ = _lines()
    lines.step_started(_target(), _step(), StepTiming(timeout_s=90.0, resumed=True))
    assert out[-1].endswith(
        "verify (drs.verify_status) started, resumed run: the full timeout from now, "
        "1m30s, until 15:05:35Z"
    )


async def test_a_long_wait_says_every_heartbeat_what_is_left() -> None:
    lines, out, clock = _lines()
    target = _target()
    lines.run_started({target: _book()})  # 4 selected, 2 settled: 2 left
    lines.step_started(target, _step(), StepTiming(timeout_s=900.0))
    out.clear()
    clock.t += 29.0
    lines.heartbeat()
    assert out == []  # not yet a heartbeat into the wait
    clock.t += 1.0
    lines.heartbeat()
    assert out == [
        "15:04:05Z [orders-prod] verify still waiting: 2 jobs, 14m30s left of the deadline "
        "(15m, 30s so far)"
    ]
    lines.step_finished(
        target, StepOutcome(step_id="verify", action="x", status=StepStatus.FAILED), _book()
    )
    out.clear()
    lines.heartbeat()
    assert out == []  # nothing is waiting any more
    lines.run_finished()


def test_the_heartbeat_names_at_most_ten_projects() -> None:
    lines, out, clock = _lines()
    for i in range(13):
        lines.step_started(_target(f"p{i}"), _step(), StepTiming(timeout_s=None))
    clock.t += 60.0
    out.clear()
    lines.heartbeat()
    assert len(out) == 11
    assert out[0].endswith("[p0] verify still waiting: 0 jobs, 1m so far (no timeout)")
    assert out[-1].endswith("... and 3 more project(s) waiting")


async def test_the_heartbeat_runs_on_the_loop_until_the_run_finishes() -> None:
    out: list[str] = []
    lines = ProgressLines(out.append, quiet=False, heartbeat_s=0.01)
    target = _target()
    lines.run_started({target: _book()})
    lines.step_started(target, _step(), StepTiming(timeout_s=60.0))
    deadline = asyncio.get_running_loop().time() + 5
    while not any("still waiting" in line for line in out):
        assert asyncio.get_running_loop().time() < deadline, out
        await asyncio.sleep(0.01)
    lines.run_finished()
    seen = len(out)
    await asyncio.sleep(0.05)
    assert len(out) == seen  # stopped with the run


def test_a_step_that_leaves_jobs_needing_a_human_does_not_read_succeeded() -> None:
    lines, out, _ = _lines()
    outcome = StepOutcome(
        step_id="verify", action="drs.verify_status", status=StepStatus.SUCCEEDED,
        duration_s=28.4, outputs={"recovered": 1},
    )  # fmt: skip
    lines.step_finished(_target(), outcome, _book())
    assert out == [
        "15:04:05Z [orders-prod] verify done in 28s: 1 of 4 jobs need a human (recovered: 1)"
    ]
    assert "succeeded" not in out[0]
    clean = JobBook(lambda: 1.0)
    assert step_words(outcome, count(clean)) == "succeeded in 28s"


def test_a_plans_mutating_step_says_what_it_would_send_not_that_it_succeeded() -> None:
    out: list[str] = []
    lines = ProgressLines(
        out.append, quiet=False, plan=True, clocks=StepClocks(Ticking()), wall=lambda: WALL
    )
    book = JobBook(lambda: 1.0)
    for job_id in "abcd":
        book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
    for job_id in ("a", "b", "d"):
        book.record(job_id, EventKind.WOULD_RETRY, step="retry", detail="batch 1")
    book.record("c", EventKind.WOULD_RETRY, step="other_retry", detail="batch 1")
    retry = StepOutcome(
        step_id="retry", action="drs.batch_retry", status=StepStatus.SUCCEEDED,
        outputs={"accepted": ["a", "b", "d"], "rejected": []},
    )  # fmt: skip
    select = StepOutcome(
        step_id="select", action="drs.select_jobs", status=StepStatus.SUCCEEDED,
        duration_s=0.2, outputs={"count": 4},
    )  # fmt: skip
    lines.step_finished(_target(), select, book)
    lines.step_finished(_target(), retry, book)
    assert out == [
        "15:04:05Z [orders-prod] select succeeded in 0.2s (count: 4)",
        "15:04:05Z [orders-prod] retry planned: would send 3 job(s), nothing sent",
    ]
    # A run's lines (plan=False) keep what the step did.
    ran, ran_out, _ = _lines()
    ran.step_finished(_target(), retry, JobBook(lambda: 1.0))
    assert ran_out == ["15:04:05Z [orders-prod] retry succeeded in 0s (accepted: 3, rejected: 0)"]


def test_quiet_lines_say_only_warnings() -> None:
    lines, out, _ = _lines(quiet=True)
    lines.note("emulator listening on http://127.0.0.1:1 (in-process, loopback only)")
    lines.note("warning: param 'token' looks secret")
    lines.step_started(_target(), _step(), StepTiming(timeout_s=1.0))
    assert out == ["warning: param 'token' looks secret"]


def test_the_table_shows_the_running_step_its_time_its_deadline_and_the_jobs_left() -> None:
    console = Console(record=True, width=140, color_system=None)
    clock = Ticking()
    progress = LiveProgress(console, clocks=StepClocks(clock))
    target = _target()
    progress._books = {target: _book()}
    progress.step_started(target, _step(), StepTiming(timeout_s=900.0))
    clock.t += 65.0
    console.print(progress.renderable())
    text = console.export_text()
    for column in ("elapsed", "deadline", "left"):
        assert column in text
    row = next(line for line in text.splitlines() if "orders-prod" in line)
    assert "verify" in row
    assert "1m05s" in row
    assert "15m, 13m55s left" in row
    assert row.split()[0] in SPINNER + ASCII_SPINNER or row.split()[1] in SPINNER + ASCII_SPINNER


def test_the_spinner_moves_while_a_step_waits() -> None:
    console = Console(record=True, width=140, color_system=None)
    clock = Ticking()
    progress = LiveProgress(console, clocks=StepClocks(clock))
    target = _target()
    progress._books = {target: _book()}
    progress.step_started(target, _step(), StepTiming(timeout_s=None))
    frames = set()
    for _ in range(4):
        clock.t += 0.25
        console.print(progress.renderable())
        row = next(line for line in console.export_text().splitlines() if "orders-prod" in line)
        frames.add(row.split()[1])
    assert len(frames) > 1


def test_plain_lines_do_not_load_rich() -> None:
    # CI runs show plain lines: loading rich there costs every run ~16 ms for nothing
    code = "import sys, engine.report.progress; sys.exit('rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------- as log records


def _logged(*, quiet: bool = False) -> tuple[ProgressLines, Ticking]:
    clock = Ticking()
    lines = ProgressLines(
        quiet=quiet, heartbeat_s=30.0, clocks=StepClocks(clock), wall=lambda: WALL
    )
    return lines, clock


def _drive(lines: ProgressLines, clock: Ticking) -> None:
    """A step that starts, waits a heartbeat and ends, and a note, as a run tells them."""
    target = _target()
    lines.run_started({target: _book()})
    lines.note("emulator listening on http://127.0.0.1:1 (in-process, loopback only)")
    lines.step_started(target, _step(), StepTiming(timeout_s=900.0))
    clock.t += 30.0
    lines.heartbeat()
    outcome = StepOutcome(
        step_id="verify", action="drs.verify_status", status=StepStatus.SUCCEEDED,
        duration_s=28.4, outputs={"recovered": 1},
    )  # fmt: skip
    lines.step_finished(target, outcome, _book())
    lines.run_finished()


async def test_logged_lines_read_in_text_exactly_as_written_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    written, out, clock = _lines()
    _drive(written, clock)
    configure_logging(0, "text")  # the command's default: -v not given
    logged, clock = _logged()
    _drive(logged, clock)
    assert capsys.readouterr().err.splitlines() == out
    assert len(out) == 4


async def test_logged_lines_in_json_are_records_with_their_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(0, "json")
    logged, clock = _logged()
    _drive(logged, clock)
    note, started, waiting, finished = (
        json.loads(line) for line in capsys.readouterr().err.splitlines()
    )
    assert all(r["logger"] == "engine.progress" and r["level"] == "INFO" for r in (note, started))
    assert note["event"] == "note"
    assert note["message"].startswith("emulator listening on")
    assert started["message"] == (
        "[orders-prod] verify (drs.verify_status) started, timeout 15m, until 15:19:05Z"
    )  # the time of day is the record's ts, not part of its message
    assert {k: started[k] for k in ("event", "target", "step", "action", "deadline_s")} == {
        "event": "step_started", "target": "orders-prod", "step": "verify",
        "action": "drs.verify_status", "deadline_s": 900.0,
    }  # fmt: skip
    assert started["deadline"] == "2026-12-02T15:19:05Z"
    assert "resumed" not in started
    assert {k: waiting[k] for k in ("event", "elapsed_s", "deadline_s", "left_s")} == {
        "event": "still_waiting", "elapsed_s": 30.0, "deadline_s": 900.0, "left_s": 870.0,
    }  # fmt: skip
    assert (waiting["total"], waiting["settled"], waiting["left"]) == (4, 2, 2)
    assert finished["event"] == "step_finished"
    assert (finished["outcome"], finished["elapsed_s"]) == ("succeeded", 28.4)
    assert (finished["total"], finished["settled"], finished["failed"]) == (4, 2, 1)
    assert "text_line" not in finished


async def test_quiet_logged_lines_keep_only_warnings_as_warning_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(0, "json")
    logged, _ = _logged(quiet=True)
    logged.note("emulator listening on http://127.0.0.1:1 (in-process, loopback only)")
    logged.step_started(_target(), _step(), StepTiming(timeout_s=1.0))
    logged.note("warning: param 'token' looks secret")
    [only] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (only["level"], only["message"]) == ("WARNING", "warning: param 'token' looks secret")
