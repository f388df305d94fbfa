"""A run killed with SIGKILL before, during and after its batch-retry requests, then resumed.

The emulator runs in its own process and outlives the killed run, as the real service would.
Each test kills the run at a point read off its journal (and the emulator's counters), resumes
it with ``runbook resume``, and checks that the report accounts for every job the run selected
and that no job was named by more than one batch-retry-task request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import (
    FINAL,
    cli_command,
    fetch,
    jobs_of,
    resume_in_a_subprocess,
    runbook_for,
    serve_emulator,
)

STEPS = """\
  - id: select
    action: drs.select_jobs
  - id: settle
    action: sleep
    with:
      duration: {settle}
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{{{ steps.select.jobs }}}}
      batch_size: 2
      reconcile_grace: 2s
  - id: verify
    action: drs.verify_status
    timeout: 10s
    with:
      jobs: ${{{{ steps.retry.accepted }}}}
      poll_interval: 0.3s
"""

Journal = list[dict[str, Any]]


@pytest.fixture
def slow_answers() -> Iterator[dict[str, Any]]:
    """An emulator whose batch-retry-task answers come 1.5 s after the retry was applied."""
    with serve_emulator(
        "--projects", "2", "--jobs", "12", "--seed", "5", "--time-scale", "2",
        "--faults", "answer_delay=1500ms",
    ) as described:  # fmt: skip
        yield described


def _journal(run_dir: Path) -> Journal:
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _events(journal: Journal, kind: str) -> list[str]:
    return [
        job["id"]
        for line in journal
        if line["type"] == "jobs"
        for job in line["jobs"]
        for event in job["events"]
        if event["kind"] == kind
    ]


def _finished_steps(journal: Journal, step: str) -> int:
    return sum(
        1 for line in journal if line["type"] == "step" and line["outcome"]["step_id"] == step
    )


def _kill_when(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], *, within_s: float = 30.0
) -> None:
    """SIGKILL the run as soon as ``ready()`` holds (polled, with a deadline)."""
    deadline = time.monotonic() + within_s
    while not ready():
        assert proc.poll() is None, "the run ended before the point it was to be killed at"
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _kill_run_when(
    emulator: dict[str, Any],
    runbook: Path,
    run_dir: Path,
    ready: Callable[[], bool],
    extra: Sequence[str] = (),
) -> dict[str, str]:
    """`runbook run` against the emulator, SIGKILLed once ``ready()``; the environment it had."""
    env = {**os.environ, "DRS_AUTH_TOKEN": emulator["token"]}
    command = cli_command(
        "run", str(runbook), "--endpoint", emulator["url"], "--report-dir", str(run_dir), *extra
    )
    with subprocess.Popen(
        [*command, "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        _kill_when(proc, ready)
    assert proc.returncode == -signal.SIGKILL
    return env


def _run_killed_then_resumed(
    emulator: dict[str, Any],
    tmp_path: Path,
    ready: Callable[[Path, dict[str, Any]], bool],
    *,
    settle: str = "0s",
    extra: Sequence[str] = (),
    resume_after_s: float = 0.0,
) -> tuple[dict[str, Any], dict[str, Any], Journal]:
    """Start a run, kill it when ``ready(run_dir, stats)``, resume it (``resume_after_s``
    later); (report, stats, journal as the kill left it)."""
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", STEPS.format(settle=settle))
    run_dir = tmp_path / "run"
    stats_url = f"{emulator['url']}/_emulator/stats"
    env = _kill_run_when(
        emulator, runbook, run_dir, lambda: ready(run_dir, fetch(stats_url)), extra
    )
    killed = _journal(run_dir)
    assert not (run_dir / "report.json").exists()  # SIGKILL: no report, only the journal
    time.sleep(resume_after_s)
    report = resume_in_a_subprocess(run_dir, env)
    return report, fetch(stats_url), killed


def _assert_nothing_lost(
    report: dict[str, Any], stats: dict[str, Any], emulator: dict[str, Any]
) -> None:
    jobs = jobs_of(report)
    assert report["interrupted"] is False
    assert len(report["resumed_at"]) == 1
    assert all(job["disposition"] in FINAL for job in jobs), [j["disposition"] for j in jobs]
    retried = [j for j in jobs if j["disposition"] != "skipped"]
    assert retried, "the run selected nothing: the test proves nothing"
    # Every job the run selected was named by at most one batch-retry-task request.
    per_job = stats["retry_requests_per_job"]
    assert max(per_job.values()) == 1, per_job
    assert set(per_job) <= {j["id"] for j in jobs}
    # Every job that was sent ends with what became of it, not an intermediate state.
    for job in jobs:
        if job["id"] in per_job:
            assert job["disposition"] in {
                "recovered", "failed_again", "timed_out", "retry_rejected",
            }, job  # fmt: skip


def test_killed_before_any_retry_request_resumes_and_retries_each_job_once(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    def selected_not_sent(run_dir: Path, stats: dict[str, Any]) -> bool:
        journal = _journal(run_dir)
        return _finished_steps(journal, "select") == 2 and stats["mutating_requests"] == 0

    report, stats, killed = _run_killed_then_resumed(
        slow_answers, tmp_path, selected_not_sent, settle="2s"
    )
    assert _events(killed, "retry_sent") == []
    _assert_nothing_lost(report, stats, slow_answers)
    selected = set(_events(killed, "selected"))
    assert selected == set(stats["retry_requests_per_job"])  # the resumed run sent them all


def test_a_sharded_run_resumes_with_its_own_shard(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    def selected_not_sent(run_dir: Path, stats: dict[str, Any]) -> bool:
        journal = _journal(run_dir)
        return _finished_steps(journal, "select") == 1 and stats["mutating_requests"] == 0

    report, stats, killed = _run_killed_then_resumed(
        slow_answers, tmp_path, selected_not_sent, settle="2s", extra=("--shard", "2/2")
    )
    assert report["shard"] == "2/2"
    second = slow_answers["projects"][1]["project_id"]
    assert [t["project_id"] for t in report["targets"]] == [second]
    assert all(job["disposition"] in FINAL for job in jobs_of(report))
    selected = set(_events(killed, "selected"))
    assert selected == set(stats["retry_requests_per_job"])  # the resumed run sent them all
    assert set(stats["retry_requests_per_job"].values()) == {1}


def test_killed_while_a_retry_request_awaits_its_answer_reconciles_without_resending(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    def applied_unanswered(run_dir: Path, stats: dict[str, Any]) -> bool:
        return stats["mutating_requests"] >= 1 and not _events(
            _journal(run_dir), "retry_acknowledged"
        )

    report, stats, killed = _run_killed_then_resumed(slow_answers, tmp_path, applied_unanswered)
    in_flight = set(_events(killed, "retry_sent"))
    assert in_flight, "killed before the intent reached the journal"
    assert not _events(killed, "retry_acknowledged")
    _assert_nothing_lost(report, stats, slow_answers)
    by_id = {j["id"]: j for j in jobs_of(report)}
    for job_id in in_flight:
        kinds = [e["kind"] for e in by_id[job_id]["events"]]
        # Learnt from its status after the resume; the request was not sent again.
        assert "retry_reconciled" in kinds, kinds
        assert kinds.count("retry_sent") == 1


@pytest.fixture(params=[5, 11])
def failing_again_at_once(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """An emulator whose jobs fail again within about a second of their first retry, and whose
    retry answers come 1.5 s late (the run is killed while it awaits one); two seeds."""
    with serve_emulator(
        "--projects", "2", "--jobs", "12", "--seed", str(request.param), "--time-scale", "0.3",
        "--fail-again-rate", "1", "--faults", "answer_delay=1500ms",
    ) as described:  # fmt: skip
        yield described


def test_jobs_failing_again_at_once_are_not_retried_twice_by_a_resume_10s_later(
    failing_again_at_once: dict[str, Any], tmp_path: Path
) -> None:
    # Their status after the resume is failed, as if the retry had never arrived: only
    # batch-detail's update_time, after the intent, tells the two apart (issue 14, item 6).
    def applied_unanswered(run_dir: Path, stats: dict[str, Any]) -> bool:
        return stats["mutating_requests"] >= 1 and not _events(
            _journal(run_dir), "retry_acknowledged"
        )

    report, stats, killed = _run_killed_then_resumed(
        failing_again_at_once, tmp_path, applied_unanswered, resume_after_s=10.0
    )
    in_flight = set(_events(killed, "retry_sent"))
    assert in_flight, "killed before the intent reached the journal"
    _assert_nothing_lost(report, stats, failing_again_at_once)  # one request per job at most
    by_id = {j["id"]: j for j in jobs_of(report)}
    arrived_before_the_kill = 0
    for job_id in in_flight & set(stats["retry_requests_per_job"]):
        job = by_id[job_id]
        assert job["disposition"] == "failed_again", job
        sends = [e for e in job["events"] if e["kind"] == "retry_sent"]
        if len(sends) == 2:
            # Its intent was journaled but its batch had not left when the run was killed (the
            # emulator saw one request for it, asserted above): the evidence said it had not
            # arrived, so the resume sent it, once, and it was answered.
            assert any(e["kind"] == "retry_acknowledged" for e in job["events"]), job["events"]
            continue
        arrived_before_the_kill += 1
        reconciled = [e for e in job["events"] if e["kind"] == "retry_reconciled"]
        assert reconciled, job["events"]
        detail = reconciled[-1]["detail"]
        assert "so it arrived and the job failed again" in detail or "status went from" in detail
    assert arrived_before_the_kill, "no retry arrived before the kill: the test proves nothing"


def test_killed_between_batches_sends_only_the_rest(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    def first_batch_answered(run_dir: Path, stats: dict[str, Any]) -> bool:
        return len(_events(_journal(run_dir), "retry_acknowledged")) >= 2

    report, stats, killed = _run_killed_then_resumed(slow_answers, tmp_path, first_batch_answered)
    acknowledged = set(_events(killed, "retry_acknowledged"))
    _assert_nothing_lost(report, stats, slow_answers)
    by_id = {j["id"]: j for j in jobs_of(report)}
    for job_id in acknowledged:
        assert [e["kind"] for e in by_id[job_id]["events"]].count("retry_sent") == 1


def test_killed_after_every_retry_while_verifying_picks_verification_up(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    def verifying(run_dir: Path, stats: dict[str, Any]) -> bool:
        journal = _journal(run_dir)
        return _finished_steps(journal, "retry") == 2 and bool(_events(journal, "status_observed"))

    report, stats, killed = _run_killed_then_resumed(slow_answers, tmp_path, verifying)
    _assert_nothing_lost(report, stats, slow_answers)
    sent_before = _events(killed, "retry_sent")
    assert sorted(sent_before) == sorted(stats["retry_requests_per_job"])  # none after resume
    steps = {s["id"]: s for t in report["targets"] for s in t["steps"]}
    assert steps["verify"]["status"] == "succeeded"
    recovered = [j for j in jobs_of(report) if j["disposition"] == "recovered"]
    assert recovered
    # The clock ran on across the kill: recovery times count from the acknowledgement.
    assert all(j["time_to_recover_s"] > 0 for j in recovered)


def test_resume_refuses_a_finished_run_and_a_run_in_use(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    read_only = STEPS.split("  - id: retry")[0]  # select, then a pause to find it busy in
    # settle long enough that a loaded machine still finds the run busy
    runbook = runbook_for(slow_answers, tmp_path / "rb.yaml", read_only.format(settle="5s"))
    run_dir = tmp_path / "run"
    env = {**os.environ, "DRS_AUTH_TOKEN": slow_answers["token"]}
    command = cli_command(
        "run", str(runbook), "--endpoint", slow_answers["url"], "--report-dir", str(run_dir)
    )
    with subprocess.Popen(
        [*command, "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        deadline = time.monotonic() + 30
        while not (run_dir / "journal.jsonl").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        busy = subprocess.run(
            cli_command("resume", str(run_dir)), env=env, capture_output=True, text=True
        )
        assert busy.returncode == 2
        assert "in use by another runbook process" in busy.stderr
        assert proc.wait(timeout=60) == 0
    again = subprocess.run(
        cli_command("resume", str(run_dir)), env=env, capture_output=True, text=True
    )
    assert again.returncode == 2
    assert "already finished; there is nothing to resume" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_target_that_failed_before_the_interruption_stays_failed_after_the_resume(
    slow_answers: dict[str, Any], tmp_path: Path
) -> None:
    first = slow_answers["projects"][0]["project_id"]
    steps = f"""\
  - id: select
    action: drs.select_jobs
  - id: check
    action: assert
    with:
      that: ${{{{ target.project_id != '{first}' }}}}
      message: the first project fails here
  - id: nap
    action: sleep
    with:
      duration: 2s
"""
    runbook = runbook_for(slow_answers, tmp_path / "rb.yaml", steps)
    with open(runbook, "a", encoding="utf-8") as text:
        text.write("rollback:\n  - id: undo\n    action: sleep\n    with:\n      duration: 0s\n")
    run_dir = tmp_path / "run"
    env = _kill_run_when(
        slow_answers, runbook, run_dir, lambda: _finished_steps(_journal(run_dir), "undo") == 1
    )
    resumed = subprocess.run(
        cli_command("resume", str(run_dir), "-q"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert resumed.returncode == 1, resumed.stderr
    failed, other = report["targets"]
    assert [(s["id"], s["status"]) for s in failed["steps"]] == [
        ("select", "succeeded"), ("check", "failed"), ("nap", "skipped"), ("undo", "succeeded"),
    ]  # fmt: skip
    assert [s["status"] for s in other["steps"]] == ["succeeded"] * 3 + ["skipped"]
    started = [x for x in _journal(run_dir) if x["type"] == "step_started" and x["step"] == "undo"]
    assert len(started) == 1  # the rollback that finished before the kill was not run again
