"""The DR drill runbook end to end against the embedded emulator: pause, resume, verify, RTO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import FINAL, REPO, fast_copy, jobs_of, run_cli

DRILL = REPO / "runbooks" / "dr-drill.yaml"
RTO_OUTPUTS = ("rto_p50_s", "rto_p95_s", "rto_max_s", "drill_rto_p95_s")


def run_drill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *params: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    runbook = fast_copy(DRILL, tmp_path / "dr-drill.yaml", timeout="3s")
    reports = tmp_path / "reports"
    args = ["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05"]
    for param in params:
        args += ["--param", param]
    code, _, _ = run_cli([*args, "--report-dir", str(reports), "-q"], capsys)
    report = json.loads((reports / "report.json").read_text())
    stats = json.loads((reports / "emulator-stats.json").read_text())
    return code, report, stats


def step_of(target: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in target["steps"] if s["id"] == step_id)


def paused_ids(report: dict[str, Any]) -> set[str]:
    return {
        j["id"]
        for j in jobs_of(report)
        if any(e["kind"] == "pause_acknowledged" for e in j["events"])
    }


def test_drill_pauses_a_sample_resumes_it_and_every_paused_job_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, stats = run_drill(tmp_path, capsys, "outage=0.3s")

    assert code == 0
    assert report["exit_code"] == 0
    paused = paused_ids(report)
    assert len(paused) == 3 * len(report["targets"])  # sample: 3 per project
    for target in report["targets"]:
        ran = [s for s in target["steps"] if s["id"] != "undo_pause"]  # rollback: none failed
        assert all(s["status"] == "succeeded" for s in ran), target["steps"]
        outputs = step_of(target, "verify_recovery")["outputs"]
        assert outputs["recovered"] == 3
        assert outputs["recovered_ratio"] == 1.0
        for name in RTO_OUTPUTS:
            assert isinstance(outputs[name], float), name
        assert 0 < outputs["rto_p50_s"] <= outputs["rto_p95_s"] <= outputs["rto_max_s"]
        # From the pause: the outage itself plus the time to recover after the resume.
        assert outputs["drill_rto_p95_s"] >= 0.3
        assert outputs["drill_rto_p95_s"] > outputs["rto_p95_s"]
        # The steady-state check measured nothing: no job was retried before it.
        assert step_of(target, "steady")["outputs"]["rto_p95_s"] == 0.0
    # Every paused job was resumed and recovered; time to recover runs from the resume.
    for job in jobs_of(report):
        assert job["disposition"] in FINAL
        if job["id"] in paused:
            assert job["disposition"] == "recovered", job
            assert job["time_to_recover_s"] is not None
            assert job["time_to_recover_s"] > 0
        else:
            assert job["disposition"] in {"healthy", "skipped"}, job
    # Exactly one pause and one resume request per paused job, and nothing else mutated.
    assert stats["pause_requests_per_job"] == dict.fromkeys(paused, 1)
    assert stats["retry_requests_per_job"] == dict.fromkeys(paused, 1)


def test_drill_over_its_rto_budget_fails_the_assertion_yet_leaves_nothing_paused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, stats = run_drill(tmp_path, capsys, "outage=0.1s", "rto_budget=0")

    assert code == 1
    assert report["exit_code"] == 1
    for target in report["targets"]:
        check = step_of(target, "within_rto")
        assert check["status"] == "failed"
        assert check["message"] == (
            "the 95th percentile of pause-to-recovery time exceeds the RTO budget"
        )
        assert step_of(target, "recovered")["status"] == "succeeded"
    paused = paused_ids(report)
    assert paused
    assert {j["disposition"] for j in jobs_of(report) if j["id"] in paused} == {"recovered"}
    assert set(stats["pause_requests_per_job"].values()) == {1}


ROLLBACK_DRILL = """\
version: 1
name: rollback
max_errors: 0
targets:
  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED]
      retryable_only: false
  - id: pause
    action: drs.pause_jobs
    with:
      jobs: ${{ steps.select.jobs }}
      sample: 2
  - id: refused   # a dual-active parent: DRS.M00307 spends the whole error budget
    action: drs.batch_retry
    on_failure: continue
    with:
      jobs: ['9fda6d87-1614-7392-a547-787c8b4jb101']
  - id: broken
    action: assert
    with:
      that: ${{ length(steps.pause.rejected) == 1 }}
      message: the drill's check failed
  - id: never
    action: sleep
    with:
      duration: 1s
rollback:
  - id: undo_pause
    action: drs.batch_retry
    with:
      jobs: ${{ steps.pause.paused }}
  - id: undo_verified
    action: drs.verify_status
    timeout: 5s
    with:
      jobs: ${{ steps.undo_pause.accepted }}
      poll_interval: 0.2s
"""


def test_a_failed_step_runs_the_rollback_steps_which_resume_what_was_paused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = tmp_path / "rollback.yaml"
    runbook.write_text(ROLLBACK_DRILL)
    reports = tmp_path / "reports"
    args = ["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05", "-q"]
    code, _, _ = run_cli([*args, "--report-dir", str(reports)], capsys)
    report = json.loads((reports / "report.json").read_text())
    stats = json.loads((reports / "emulator-stats.json").read_text())

    assert code == 1
    (target,) = report["targets"]
    statuses = {s["id"]: s["status"] for s in target["steps"]}
    assert statuses == {
        "select": "succeeded",
        "pause": "succeeded",
        "refused": "succeeded",
        "broken": "failed",
        "never": "skipped",
        "undo_pause": "succeeded",
        "undo_verified": "succeeded",
    }
    assert [s["id"] for s in target["steps"]][-2:] == ["undo_pause", "undo_verified"]
    paused = paused_ids(report)
    assert len(paused) == 2
    # The rollback resumed them although the run's error budget was spent: it has its own.
    assert set(stats["retry_requests_per_job"]) == {*paused, "9fda6d87-1614-7392-a547-787c8b4jb101"}
    by_id = {j["id"]: j for j in jobs_of(report)}
    assert {by_id[j]["disposition"] for j in paused} == {"recovered"}


def test_rollback_steps_do_not_run_when_nothing_failed_nor_in_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = run_drill(tmp_path, capsys, "outage=0.1s")
    assert code == 0
    for target in report["targets"]:
        undo = step_of(target, "undo_pause")
        assert undo["status"] == "skipped"
        assert undo["message"] == "not run: no step failed"
    runbook = fast_copy(DRILL, tmp_path / "plan.yaml")
    code, out, _ = run_cli(["plan", str(runbook), "--emulator", "-q"], capsys)
    assert code == 0
    assert "undo_pause (drs.batch_retry): not run: a plan makes no changes to undo" in out
