"""Plan files end to end (issue 16): plan against an emulator, change the world, apply.

The emulator runs in its own process, so the fleet the plan saw is the fleet apply meets; the
test changes one planned job between the two, as an operator or the service might.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, fetch, jobs_of, run_cli, runbook_for, serve_emulator

pytestmark = pytest.mark.contract


def retry_directly(emulator: dict[str, Any], project: str, job_id: str) -> None:
    """Someone else retries a job between the plan and its apply."""
    request = urllib.request.Request(
        f"{emulator['url']}/v3/{project}/jobs/batch-retry-task",
        data=json.dumps({"jobs": [{"job_id": job_id}]}).encode(),
        headers={"Content-Type": "application/json", "X-Auth-Token": emulator["token"]},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["results"][0]["status"] == "success"


def planned_jobs(plan: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """job id -> (project id, status planned on), over every step of every target."""
    return {
        job["id"]: (project, job["status"])
        for project, steps in plan["planned"].items()
        for jobs in steps.values()
        for job in jobs
    }


def test_apply_sends_only_planned_jobs_and_leaves_a_changed_one_drifted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_emulator("--projects", "2", "--jobs", "20", "--seed", "4") as emulator:
        monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
        runbook = runbook_for(emulator, tmp_path / "rb.yaml")
        plan_file = tmp_path / "plan.json"
        code, out, _ = run_cli(
            ["plan", str(runbook), "--endpoint", emulator["url"], "--out", str(plan_file)], capsys
        )
        assert code == 0, out
        assert f"plan written to {plan_file}" in out
        plan = json.loads(plan_file.read_text())
        planned = planned_jobs(plan)
        assert len(planned) >= 4
        # Each planned job with the job_action it was planned on (for the review).
        entries = [
            job for steps in plan["planned"].values() for jobs in steps.values() for job in jobs
        ]
        assert all("RETRY" in job["job_action"]["available_actions"] for job in entries)
        failed = [j for j, (_, status) in planned.items() if status.endswith("FAILED")]
        changed = failed[0]
        retry_directly(emulator, planned[changed][0], changed)
        before = dict(fetch(f"{emulator['url']}/_emulator/stats")["retry_requests_per_job"])

        # --yes as scripts pass it to run too: allowed, and the plan is still the approval.
        code, out, _ = run_cli(
            ["apply", str(plan_file), "--endpoint", emulator["url"], "-q", "--yes",
             "--report-dir", str(tmp_path / "r")],
            capsys,
        )  # fmt: skip
        after = fetch(f"{emulator['url']}/_emulator/stats")["retry_requests_per_job"]

    sent_by_apply = {j for j, n in after.items() if n > before.get(j, 0)}
    assert sent_by_apply == set(planned) - {changed}  # exactly the other planned jobs
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    jobs = {j["id"]: j for j in jobs_of(report)}
    assert jobs[changed]["disposition"] == "drifted"
    assert jobs[changed]["reason"].startswith(f"planned on {planned[changed][1]}, now ")
    assert report["plan_hash"] == plan["plan_hash"]
    assert [a["how"] for a in report["approvals"]] == ["plan"]
    assert report["approvals"][0]["plan_hash"] == plan["plan_hash"]
    assert report["approvals"][0]["approved_by"]
    assert code == 1  # a drifted job needs a human: plan again
    # A plan is applied once: a second apply would re-send jobs that failed again.
    code, _, err = run_cli(["apply", str(plan_file), "--emulator"], capsys)
    assert code == 2
    assert "was planned against http://127.0.0.1" in err  # and not against the emulator
    code, _, err = run_cli(["apply", str(plan_file), "--endpoint", emulator["url"]], capsys)
    assert code == 2
    assert "was applied already" in err


def test_a_stale_edited_or_foreign_plan_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_emulator("--projects", "1", "--jobs", "10", "--seed", "4") as emulator:
        monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
        runbook = runbook_for(emulator, tmp_path / "rb.yaml")
        plan_file = tmp_path / "plan.json"
        endpoint = ["--endpoint", emulator["url"]]
        assert run_cli(["plan", str(runbook), *endpoint, "--out", str(plan_file)], capsys)[0] == 0
        document = json.loads(plan_file.read_text())

        def refused(*extra: str) -> str:
            code, _, err = run_cli(["apply", str(plan_file), *endpoint, *extra], capsys)
            assert code == 2
            return err

        assert "older than --max-age" in refused("--max-age", "0.001s")
        edited = dict(document, params={"smuggled": 1})
        plan_file.write_text(json.dumps(edited))
        assert "the plan was edited after it was made" in refused()
        plan_file.write_text(json.dumps(document))
        runbook.write_text(runbook.read_text() + "\n# changed\n")
        assert f"the runbook {runbook} changed since the plan was made" in refused()
        plan_file.write_text("not json")
        assert "not a plan file" in refused()
        mutating = fetch(f"{emulator['url']}/_emulator/stats")["mutating_requests"]
    assert mutating == 0


def test_a_plans_progress_lines_say_what_it_would_send_never_that_it_succeeded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runbook = REPO / "runbooks" / "incident-retry.yaml"
    code, out, err = run_cli(["plan", str(runbook), "--emulator"], capsys)
    assert code == 0, err
    retry_lines = [line for line in err.splitlines() if "] retry " in line]
    finished = [line for line in retry_lines if "started" not in line]
    assert len(finished) == 2, err  # one per project
    for line in finished:
        assert "planned: would send " in line, line
        assert "succeeded" not in line
        assert "accepted" not in line
    # The count on stderr is the plan's own ("would send 7 job(s) in 1 batch(es)").
    sends = [line.split("would send ")[1].split(" job(s)")[0] for line in finished]
    assert sends == [
        line.split("would send ")[1].split(" job(s)")[0]
        for line in out.splitlines()
        if "retry (drs.batch_retry) would send" in line
    ]
    # The select step did run (read-only), and says so.
    assert any("] select succeeded in " in line for line in err.splitlines())


def test_a_plans_funnel_and_engine_filter_are_its_own_lines_not_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runbook = REPO / "runbooks" / "incident-retry.yaml"
    code, out, err = run_cli(["plan", str(runbook), "--emulator"], capsys)
    assert code == 0, err
    assert "WARNING" not in err
    assert "funnel:" not in err
    assert "engine_type not sent" not in err
    # Under each target's select step in the plan, on stdout, without -v.
    notes = [line.strip() for line in out.splitlines() if line.startswith("    notice: ")]
    assert sum(n.startswith("notice: funnel: ") for n in notes) == 2, out
    assert sum(n.startswith("notice: engine_type not sent: ") for n in notes) == 2, out
    assert any("a run waits up to" in n for n in notes), out


def test_apply_help_says_the_plan_is_the_approval_and_its_limits_hold(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(["apply", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())  # click wraps the help
    assert "--yes is allowed and changes nothing" in text
    assert "Takes no --target/--skip-target, params or shard: the plan's own limits hold" in text
    assert "-y, --yes" in out
