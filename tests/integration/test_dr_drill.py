"""The DR drill runbook end to end against the embedded emulator: pause, resume, verify, RTO."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from harness import FINAL, REPO, fast_copy, jobs_of, run_cli

from engine.report.contract import validate_report

DRILL = REPO / "runbooks" / "dr-drill.yaml"
RTO_OUTPUTS = ("rto_p50_s", "rto_p95_s", "rto_max_s", "drill_rto_p95_s")


def run_drill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *params: str
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    code, report, stats, _ = run_drill_out(tmp_path, capsys, *params)
    return code, report, stats


def run_drill_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *params: str
) -> tuple[int, dict[str, Any], dict[str, Any], str]:
    runbook = fast_copy(DRILL, tmp_path / "dr-drill.yaml", timeout="3s")
    reports = tmp_path / "reports"
    args = ["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05"]
    for param in params:
        args += ["--param", param]
    code, out, _ = run_cli([*args, "--report-dir", str(reports), "-q"], capsys)
    report = json.loads((reports / "report.json").read_text())
    stats = json.loads((reports / "emulator-stats.json").read_text())
    assert validate_report(report) == []
    return code, report, stats, out


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
        # The steady_state block ran before the fault and after the recovery, in that order,
        # and the first measured nothing: no job was retried before it.
        ids = [s["id"] for s in target["steps"]]
        assert ids.index("steady_state_before_holds") < ids.index("pause")
        assert (
            ids.index("verify_recovery") < ids.index("steady_state_after") < ids.index("within_rto")
        )
        assert step_of(target, "steady_state_before")["outputs"]["rto_p95_s"] == 0.0
        assert step_of(target, "steady_state_after")["outputs"]["recovered_ratio"] == 1.0
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
        p95 = step_of(target, "verify_recovery")["outputs"]["drill_rto_p95_s"]
        assert check["message"] == (
            "the 95th percentile of pause-to-recovery time exceeds the RTO budget: "
            f"steps.verify_recovery.drill_rto_p95_s = {p95:.6g} > params.rto_budget = 0"
        )
        assert step_of(target, "recovered")["status"] == "succeeded"
    paused = paused_ids(report)
    assert paused
    assert {j["disposition"] for j in jobs_of(report) if j["id"] in paused} == {"recovered"}
    assert set(stats["pause_requests_per_job"].values()) == {1}


def test_the_drill_passes_with_its_paused_jobs_timed_from_pause_to_recovery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _, out = run_drill_out(tmp_path, capsys, "outage=0.3s")

    assert code == 0
    drill = report["drill"]
    assert drill["verdict"] == "passed", drill["why"]
    assert drill["why"].startswith("all 6 paused job(s) recovered, pause-to-recovery p95 ")
    assert "within the budget 300 s" in drill["why"]
    assert {(j["project"], j["id"]) for j in drill["paused"]} == {
        (t["name"], j["id"])
        for t in report["targets"]
        for j in t["jobs"]
        if any(e["kind"] == "pause_acknowledged" for e in j["events"])
    }
    for job in drill["paused"]:
        assert job["disposition"] == "recovered"
        # Run-relative times in order: paused, then resumed after the outage, then recovered.
        assert 0 < job["paused_t"] < job["resumed_t"] < job["recovered_t"]
        assert job["resumed_t"] - job["paused_t"] >= 0.3
        assert job["pause_to_recovery_s"] == pytest.approx(
            job["recovered_t"] - job["paused_t"], abs=0.002
        )
    outages = sorted(j["pause_to_recovery_s"] for j in drill["paused"])
    assert drill["rto_max_s"] == outages[-1]
    assert drill["rto_p50_s"] == outages[2]  # nearest rank of 6: the 3rd
    assert drill["rto_p95_s"] == outages[-1]
    assert drill["budget"] == {
        "step": "within_rto",
        "that": "${{ steps.verify_recovery.drill_rto_p95_s <= params.rto_budget }}",
        "measured": "steps.verify_recovery.drill_rto_p95_s",
        "budget_s": 300.0,
        "held": True,
    }
    assert {c["status"] for c in drill["checks"]} == {"succeeded"}
    assert len(drill["checks"]) == 4 * len(report["targets"])  # before, after, recovered, rto
    assert f"drill passed: {drill['why']}" in out
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert markdown.index("## Drill: passed") < markdown.index("## What was done")
    page = (tmp_path / "reports" / "report.html").read_text()
    assert page.index(">passed</span></h2>") < page.index("<h2>What was done</h2>")
    assert ">drill: outage</span>" in page


def test_a_drill_over_a_one_second_budget_fails_saying_measured_against_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The outage alone (1.2 s) is over the budget: the verdict cannot depend on timing luck.
    code, report, _, out = run_drill_out(tmp_path, capsys, "outage=1.2s", "rto_budget=1s")

    assert code == 1
    drill = report["drill"]
    assert drill["verdict"] == "failed"
    p95 = drill["rto_p95_s"]
    assert p95 > 1.2
    assert drill["why"] == (
        f"pause-to-recovery p95 {p95:.3g} s > budget 1 s (step 'within_rto' failed in 2 projects)"
    )
    assert drill["budget"]["budget_s"] == 1.0
    assert drill["budget"]["held"] is False
    failed = [c for c in drill["checks"] if c["status"] == "failed"]
    assert [c["step"] for c in failed] == ["within_rto", "within_rto"]
    for check in failed:
        assert re.fullmatch(
            "the 95th percentile of pause-to-recovery time exceeds the RTO budget: "
            r"steps\.verify_recovery\.drill_rto_p95_s = [0-9.]+ > params\.rto_budget = 1",
            check["message"],
        ), check["message"]
    assert f"drill failed: {drill['why']}" in out
    assert "a step failed" not in out
