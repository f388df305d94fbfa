"""Runbooks end to end through the `runbook` command, against the emulator on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLE, FINAL, fast_copy, fetch, jobs_of, run_cli, runbook_for, serve_emulator


def test_example_runbook_against_embedded_emulator_accounts_for_every_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "retry.yaml")
    reports = tmp_path / "reports"

    code, out, err = run_cli(
        [
            "run",
            str(runbook),
            "--emulator",
            "--emulator-time-scale",
            "0.05",
            "--report-dir",
            str(reports),
        ],
        capsys,
    )

    report = json.loads((reports / "report.json").read_text())
    stats = json.loads((reports / "emulator-stats.json").read_text())
    jobs = jobs_of(report)
    dispositions = {j["disposition"] for j in jobs}
    # Every job has a final disposition; the seeded fleet has each kind of outcome.
    assert dispositions <= FINAL
    assert {"recovered", "failed_again", "timed_out", "skipped"} <= dispositions
    assert code == 1
    assert report["exit_code"] == 1
    assert len(report["targets"]) == 3
    # Dual-active parents are skipped, never sent; their children are.
    parents = [j for j in jobs if j["reason"] and "dual-active parent" in j["reason"]]
    assert parents
    assert all(j["disposition"] == "skipped" for j in parents)
    children = [j for j in jobs if j["parent_id"] and j["disposition"] != "skipped"]
    assert children
    # Exactly one retry request per retried job, and only selected jobs were retried.
    per_job = stats["retry_requests_per_job"]
    retried = {j["id"] for j in jobs if any(e["kind"] == "retry_sent" for e in j["events"])}
    assert set(per_job) == retried
    assert set(per_job.values()) == {1}
    assert not {p["id"] for p in parents} & set(per_job)
    # Time to recover is recorded for each recovered job.
    recovered = [j for j in jobs if j["disposition"] == "recovered"]
    assert all(j["time_to_recover_s"] is not None and j["time_to_recover_s"] > 0 for j in recovered)
    assert report["time_to_recover_s"]["count"] == len(recovered)
    # The terminal summary and the Markdown report name every job that needs a human.
    markdown = (reports / "report.md").read_text()
    for job in jobs:
        assert job["id"] in markdown
        if job["disposition"] in {"failed_again", "timed_out"}:
            assert job["id"] in out
    assert "need a human" in out
    assert "[orders-prod] verify" in err
    # Before the first change, the run shows what it is about to change, in every project.
    shown = err.index("about to change 'retry': 20 job(s) to act on in 3 project(s)")
    assert shown < err.index("[orders-prod] retry (drs.batch_retry) started")


def test_valid_runbook_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["validate", str(EXAMPLE)], capsys)
    assert code == 0
    assert out == ""
    assert f"{EXAMPLE}: ok" in err


def test_validate_reports_duplicate_id_and_unknown_reference_with_locations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text()
    text = text.replace("  - id: retry\n", "  - id: select\n", 1)
    text = text.replace("${{ steps.retry.accepted }}", "${{ steps.retrry.accepted }}")
    bad.write_text(text)
    lines = text.splitlines()
    dup_line = next(i for i, line in enumerate(lines, 1) if line == "  - id: select" and i > 30)
    ref_line = next(i for i, line in enumerate(lines, 1) if "steps.retrry" in line)

    code, out, _ = run_cli(["validate", str(bad)], capsys)

    assert code == 2
    printed = out.splitlines()
    assert any(p.startswith(f"{bad}:{dup_line}:9: duplicate step id 'select'") for p in printed), (
        out
    )
    assert any(
        p.startswith(f"{bad}:{ref_line}:") and "unknown step 'retrry'" in p for p in printed
    ), out
    assert "Traceback" not in out


def test_run_refuses_an_invalid_runbook_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("batch_size: 100", "batch_size: ten"))
    code, _out, err = run_cli(
        ["run", str(bad), "--emulator", "--report-dir", str(tmp_path / "r")], capsys
    )
    assert code == 2
    assert "with.batch_size" in err
    assert "'ten' is not of type 'integer'" in err
    assert not (tmp_path / "r").exists()


def test_run_without_credentials_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DRS_AUTH_TOKEN", "DRS_IAM_USER", "DRS_IAM_PASSWORD", "DRS_IAM_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_cli(["run", str(EXAMPLE), "--endpoint", "http://127.0.0.1:9"], capsys)
    assert code == 2
    assert err.startswith("runbook: no credentials: set DRS_AUTH_TOKEN")
    assert "Traceback" not in err


# --------------------------------------------------------------------------- standalone emulator


def test_emulator_first_line_describes_it_and_binds_loopback(
    emulator: dict[str, Any],
) -> None:
    described = emulator
    assert described["url"].startswith("http://127.0.0.1:")
    assert {"url", "projects", "token", "user", "password", "domain"} <= set(described)
    assert len(described["projects"]) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", p["project_id"]) for p in described["projects"])


def test_rerun_against_the_same_emulator_is_safe(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    described = emulator
    monkeypatch.setenv("DRS_AUTH_TOKEN", described["token"])
    runbook = runbook_for(described, tmp_path / "rb.yaml")
    url = described["url"]

    first_code, _, _ = run_cli(
        ["run", str(runbook), "--endpoint", url, "--report-dir", str(tmp_path / "one"), "-q"],
        capsys,
    )
    after_first = fetch(f"{url}/_emulator/stats")["retry_requests_per_job"]
    first = json.loads((tmp_path / "one" / "report.json").read_text())
    failed_again = {j["id"] for j in jobs_of(first) if j["disposition"] == "failed_again"}
    timed_out = {j["id"] for j in jobs_of(first) if j["disposition"] == "timed_out"}

    second_code, _, _ = run_cli(
        ["run", str(runbook), "--endpoint", url, "--report-dir", str(tmp_path / "two"), "-q"],
        capsys,
    )
    after_second = fetch(f"{url}/_emulator/stats")["retry_requests_per_job"]
    second = json.loads((tmp_path / "two" / "report.json").read_text())

    assert first_code == 1
    assert set(after_first.values()) == {1}
    # The second run retries only what failed again; recovered and stuck jobs are left alone.
    sent_again = {job_id for job_id, n in after_second.items() if n == 2}
    assert sent_again == failed_again
    assert not timed_out & {j["id"] for j in jobs_of(second) if j["disposition"] != "skipped"}
    assert all(after_second.get(j, 0) == after_first.get(j, 0) for j in timed_out)
    # A job that failed again once recovers on its second retry in the emulator.
    assert {j["id"] for j in jobs_of(second) if j["disposition"] == "recovered"} == failed_again
    assert second_code == 0


PAUSE_STEPS = """\
  - id: running
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_STARTED, INCRE_TRANSFER_FAILED]
      retryable_only: false
  - id: pause
    action: drs.pause_jobs
    with:
      jobs: ${{ steps.running.jobs }}
      pause_mode: target
"""


@pytest.mark.parametrize("parent_status", ["worst-child", "own"])
def test_a_dual_active_parent_is_never_sent_to_retry_or_pause_whatever_its_status_shows(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    parent_status: str,
) -> None:
    with serve_emulator("--time-scale", "0.05", "--parent-status", parent_status) as described:
        url = described["url"]
        monkeypatch.setenv("DRS_AUTH_TOKEN", described["token"])
        retry = runbook_for(described, tmp_path / "retry.yaml")
        pause = runbook_for(described, tmp_path / "pause.yaml", PAUSE_STEPS)
        for name, runbook in (("one", retry), ("two", retry), ("pause", pause)):
            cli = ["run", str(runbook), "--endpoint", url, "--yes", "-q"]
            run_cli([*cli, "--report-dir", str(tmp_path / name)], capsys)
        truth = fetch(f"{url}/_emulator/jobs")["jobs"]
        stats = fetch(f"{url}/_emulator/stats")
    parents = {j["parent_id"] for j in truth if j["parent_id"]}
    assert parents
    shown = {j["status"] for j in truth if j["id"] in parents}
    # After the retries, the parents show their children's recovery, or their own failure.
    if parent_status == "own":
        assert shown == {"INCRE_TRANSFER_FAILED"}
    else:
        assert "INCRE_TRANSFER_FAILED" not in shown
    sent = set(stats["retry_requests_per_job"]) | set(stats["pause_requests_per_job"])
    assert sent, "nothing was sent: the test proves nothing"
    assert not parents & sent
    assert any(j["parent_id"] in parents for j in truth if j["id"] in sent)  # children were
    for name in ("one", "two", "pause"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        for job in jobs_of(report):
            if job["id"] in parents:
                assert job["disposition"] == "skipped"
                assert "dual-active parent" in job["reason"]
