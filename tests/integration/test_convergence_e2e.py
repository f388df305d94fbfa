"""Healthy as an operator judges it, end to end (issue 15): the example runbooks against the
embedded emulator's lag model and its own retries, through the `runbook` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import EXAMPLE, REPO, fast_copy, fetch, jobs_of, run_cli, runbook_for, serve_emulator

pytestmark = pytest.mark.contract

INCIDENT = REPO / "runbooks" / "incident-retry.yaml"
FAST = ["--emulator", "--emulator-time-scale", "0.05", "--yes"]


def test_the_demo_reports_jobs_that_run_but_stay_behind_as_lagging_with_their_delay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="3s")
    reports = tmp_path / "r"

    code, out, _ = run_cli(["run", str(runbook), *FAST, "--report-dir", str(reports)], capsys)

    report = json.loads((reports / "report.json").read_text())
    jobs = jobs_of(report)
    lagging = [j for j in jobs if j["disposition"] == "lagging"]
    # The demo fleet has a job in each project that recovers but stays minutes behind.
    assert len(lagging) == 3
    for job in lagging:
        assert job["last_status"] == "INCRE_TRANSFER_STARTED"
        assert job["delay_s"] > 60
        assert job["delay_max_s"] >= job["delay_s"]
        assert f"but {round(job['delay_s'])}s behind, over max_delay 60s" in job["reason"]
    recovered = [j for j in jobs if j["disposition"] == "recovered"]
    assert recovered
    # A recovered job was caught up (at most a minute behind) when it counted as recovered;
    # those in full transfer have no delay to judge.
    delayed = [j for j in recovered if j["delay_s"] is not None]
    assert delayed
    assert all(j["delay_s"] <= 60 for j in delayed)
    assert report["totals"]["lagging"] == 3
    assert code == 1
    markdown = (reports / "report.md").read_text()
    assert "delay (last / max)" in markdown
    assert all(f"`{j['id']}`" in markdown for j in lagging)
    assert "replication delay: median" in out
    junit = (reports / "junit.xml").read_text()
    assert junit.count('type="lagging"') == 3


def test_settle_leaves_the_services_own_retries_alone_and_says_which_jobs_it_brought_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = fast_copy(INCIDENT, tmp_path / "incident.yaml", timeout="3s", settle="3s")
    reports = tmp_path / "r"

    run_cli(["run", str(runbook), *FAST, "--report-dir", str(reports)], capsys)

    report = json.loads((reports / "report.json").read_text())
    stats = json.loads((reports / "emulator-stats.json").read_text())
    by_service = [j for j in jobs_of(report) if j["disposition"] == "recovered_by_service"]
    # The demo fleet's orders-prod has one job the service retries by itself, shortly after it
    # failed: the selection left it alone, and nothing was sent for it.
    assert [j["name"] for j in by_service] == ["payments-pg-sync-04"]
    job = by_service[0]
    assert "the service's own retry brought it back" in job["reason"]
    assert "before the runbook sent anything" in job["reason"]
    assert job["id"] not in stats["retry_requests_per_job"]
    assert [e["kind"] for e in job["events"]][:2] == ["selected", "settling"]
    assert report["totals"]["recovered_by_service"] == 1
    assert report["totals"]["ok"] >= 1


SETTLE_STEPS = """\
  - id: select
    action: drs.select_jobs
    with:
      statuses: [FULL_TRANSFER_FAILED, INCRE_TRANSFER_FAILED, START_JOB_FAILED]
      settle: 5s
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
  - id: verify
    action: drs.verify_status
    timeout: 10s
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 0.2s
"""


@pytest.mark.parametrize("success_rate", ["0", "1"])
def test_settle_waits_out_all_three_of_the_services_tries_before_it_retries(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    success_rate: str,
) -> None:
    # time scale 0.05: each try 1 s after the failure before it, the three over within 4 s of
    # the start, inside the 5 s settle whatever the polls see of them.
    args = ("--time-scale", "0.05", "--self-retry-success-rate", success_rate)
    with serve_emulator(*args) as emulator:
        runbook = runbook_for(emulator, tmp_path / "rb.yaml", SETTLE_STEPS)
        before = fetch(f"{emulator['url']}/_emulator/jobs")["jobs"]
        monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
        reports = tmp_path / "r"
        cli = ["run", str(runbook), "--endpoint", emulator["url"], "--report-dir", str(reports)]
        run_cli([*cli, "-q"], capsys)
        truth = {j["id"]: j for j in fetch(f"{emulator['url']}/_emulator/jobs")["jobs"]}
        stats = fetch(f"{emulator['url']}/_emulator/stats")
    report = json.loads((reports / "report.json").read_text())
    services = {j["id"] for j in before if j["service_retry"]}
    theirs = [j for j in jobs_of(report) if j["id"] in services]
    assert theirs, "the fleet has no job the service retries itself: the test proves nothing"
    for job in theirs:
        assert [e["kind"] for e in job["events"]][:2] == ["selected", "settling"]
        if success_rate == "1":  # the first try works: left to the service, nothing sent
            assert truth[job["id"]]["service_tries"] == 1
            assert job["disposition"] == "recovered_by_service"
            assert job["id"] not in stats["retry_requests_per_job"]
        else:  # all three fail: the run retried it once, after the last (none called off)
            assert truth[job["id"]]["service_tries"] == 3
            assert job["disposition"] == "recovered"
            assert stats["retry_requests_per_job"][job["id"]] == 1
            assert truth[job["id"]]["retries_accepted"] == 1


DRILL_STEPS = """\
  - id: select
    action: drs.select_jobs
    with:
      db_use_type: [migration, sync]
      statuses: [INCRE_TRANSFER_STARTED]
      retryable_only: false
  - id: steady
    action: drs.verify_status
    timeout: 10s
    with:
      jobs: ${{ steps.select.jobs }}
      poll_interval: 0.3s
  - id: pause
    action: drs.pause_jobs
    with:
      jobs: ${{ steps.select.jobs }}
      sample: 2
      pause_mode: target
  - id: resume
    action: drs.batch_retry
    with:
      jobs: ${{ steps.pause.paused }}
  - id: verify
    action: drs.verify_status
    timeout: 20s
    with:
      jobs: ${{ steps.resume.accepted }}
      poll_interval: 0.3s
      max_delay: 1m
"""


def test_a_slow_pause_and_busy_refusals_run_end_to_end_without_a_job_sent_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator pauses 1 s after it acknowledges, and refuses a third of the mutating
    requests whole (DRS.M01503 400, DRS.M01504 202): the engine waits for each pause to take
    effect before the resume, re-sends only what was refused, and every paused job recovers."""
    faults = "too_frequent_rate=0.2,busy_rate=0.2"
    with serve_emulator(
        "--projects", "2", "--jobs", "20", "--seed", "5", "--pause-delay", "1s", "--faults", faults
    ) as emulator:
        runbook = runbook_for(emulator, tmp_path / "drill.yaml", DRILL_STEPS)
        monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
        args = ["--endpoint", emulator["url"], "--yes", "-q", "--report-dir", str(tmp_path / "r")]
        code, out, _ = run_cli(["run", str(runbook), *args], capsys)
        stats = fetch(f"{emulator['url']}/_emulator/stats")

    report = json.loads((tmp_path / "r" / "report.json").read_text())
    jobs = jobs_of(report)
    paused = [j for j in jobs if any(e["kind"] == "pause_acknowledged" for e in j["events"])]
    assert len(paused) == 4, out
    assert all(j["disposition"] == "recovered" for j in paused), out
    assert code == 0, out
    for job in paused:
        acknowledged = next(e["t"] for e in job["events"] if e["kind"] == "pause_acknowledged")
        assert job["paused_at_t"] - acknowledged >= 0.9  # timed from when it took effect
    assert report["api_resilience"]["busy"] > 0  # the refusals happened, and were re-sent
    assert set(stats["retry_requests_per_job"].values()) == {1}
    assert set(stats["pause_requests_per_job"].values()) == {1}
