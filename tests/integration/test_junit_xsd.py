"""junit.xml of real runs against the emulator, validated against the strict xUnit schema
(tests/vendor/junit-10.xsd, offline): the demo, a drill whose asserts hold and fail, a run with
an assert that cannot be evaluated, and a declined approval."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from harness import EXAMPLE, REPO, fast_copy, run_cli
from junit_xsd import junit_errors

DRILL = REPO / "runbooks" / "dr-drill.yaml"
INCIDENT = REPO / "runbooks" / "incident-retry.yaml"
FAST = ["--emulator", "--emulator-time-scale", "0.05", "-q"]


def _junit(run_dir: Path) -> tuple[str, ET.Element]:
    xml = (run_dir / "junit.xml").read_text(encoding="utf-8")
    return xml, ET.fromstring(xml)


def _cases(root: ET.Element, prefix: str) -> list[ET.Element]:
    return [c for c in root.iter("testcase") if c.get("name", "").startswith(prefix)]


def test_the_demo_run_writes_junit_valid_against_the_strict_xsd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As CI runs it: from the checkout, the runbook by its relative path.
    (tmp_path / "runbooks").mkdir()
    fast_copy(EXAMPLE, tmp_path / "runbooks" / EXAMPLE.name)
    monkeypatch.chdir(tmp_path)

    code, _, err = run_cli(["run", f"runbooks/{EXAMPLE.name}", *FAST, "--report-dir", "r"], capsys)

    assert code == 1, err  # the seeded fleet has jobs that never recover
    xml, root = _junit(tmp_path / "r")
    assert junit_errors(xml) == []
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["orders-prod", "payments-prod", "analytics-eu"]
    assert {s.get("file") for s in suites} == {"runbooks/retry-failed-jobs.yaml"}
    assert int(root.get("failures", "0")) > 0
    assert sum(int(s.get("skipped", "0")) for s in suites) > 0  # dual-active parents


def test_a_drill_whose_asserts_hold_and_fail_gives_passed_cases_and_a_failure_each_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runbook = fast_copy(DRILL, tmp_path / "dr-drill.yaml", timeout="3s")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    args = ["run", str(runbook), *FAST, "--param", "outage=0.1s", "--param", "rto_budget=0"]

    code, _, err = run_cli([*args, "--report-dir", str(tmp_path / "r")], capsys)

    assert code == 1, err
    xml, root = _junit(tmp_path / "r")
    assert junit_errors(xml) == []
    for suite in root.findall("testsuite"):
        asserts = {c.get("name"): c for c in _cases(suite, "assert ")}
        # In step order: the steady state is checked again right behind the recovery's verify.
        assert list(asserts) == [
            "assert steady_state_before_holds: The steady state holds before the fault",
            "assert steady_state_after_holds: The steady state holds after the fault",
            "assert recovered: At least 99% of the paused jobs recovered",
            "assert within_rto: Recovery within the RTO budget",
        ], suite.get("name")
        *held, within_rto = asserts.values()
        assert [list(c) for c in held] == [[], [], []]  # the pass criteria, green
        [failure] = list(within_rto)
        assert failure.tag == "failure"
        assert failure.get("type") == "assertion_failed"
        text = (failure.text or "").splitlines()
        assert text[0] == failure.get("message")
        assert text[0].startswith(
            "the 95th percentile of pause-to-recovery time exceeds the RTO budget: "
            "steps.verify_recovery.drill_rto_p95_s = "
        )
        assert text[1:] == [
            "that: ${{ steps.verify_recovery.drill_rto_p95_s <= params.rto_budget }}",
            text[2],
            "budget: 0 s",
        ]
        assert text[2].startswith("measured: steps.verify_recovery.drill_rto_p95_s = ")
        assert (suite.get("tests"), suite.get("failures")) == (
            str(len(list(suite.iter("testcase")))),
            "1",
        )
        assert suite.get("errors") == "0"
        assert suite.get("file") == str(runbook)  # outside the working directory: as recorded


UNEVALUABLE = """\
version: 1
name: checks
env: [RUNBOOK_JUNIT_TEST_UNSET]
targets:
  - name: orders-prod
    project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
  - id: some
    name: Something was selected
    action: assert
    on_failure: continue
    with:
      that: ${{ steps.select.count > 0 }}
  - id: none
    action: assert
    on_failure: continue
    with:
      that: ${{ steps.select.count == 0 }}
      message: jobs need a retry
  - id: ticket
    action: assert
    with:
      that: ${{ env.RUNBOOK_JUNIT_TEST_UNSET != '' }}
"""


def test_an_assert_that_cannot_be_evaluated_is_an_error_and_a_false_one_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNBOOK_JUNIT_TEST_UNSET", raising=False)
    runbook = tmp_path / "checks.yaml"
    runbook.write_text(UNEVALUABLE, encoding="utf-8")

    code, _, err = run_cli(["run", str(runbook), *FAST, "--report-dir", str(tmp_path / "r")],
                           capsys)  # fmt: skip

    assert code == 1, err
    xml, root = _junit(tmp_path / "r")
    assert junit_errors(xml) == []
    some, none, ticket = _cases(root, "assert ")
    assert some.get("name") == "assert some: Something was selected"
    assert list(some) == []
    [failure] = list(none)
    assert (failure.tag, failure.get("type")) == ("failure", "assertion_failed")
    assert (failure.get("message") or "").startswith("jobs need a retry: steps.select.count = ")
    [error] = list(ticket)
    assert (error.tag, error.get("type")) == ("error", "step_failed")
    assert "RUNBOOK_JUNIT_TEST_UNSET" in (error.get("message") or "")
    [suite] = root.findall("testsuite")
    assert suite.get("errors") == "1"


def test_a_declined_approval_writes_junit_valid_against_the_strict_xsd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(click, "confirm", lambda *args, **kwargs: False)
    runbook = fast_copy(INCIDENT, tmp_path / INCIDENT.name, timeout="3s")

    code, _, err = run_cli(["run", str(runbook), *FAST, "--report-dir", str(tmp_path / "r")],
                           capsys)  # fmt: skip

    assert code == 1, err
    xml, root = _junit(tmp_path / "r")
    assert junit_errors(xml) == []
    # Nothing was sent: every selected job is a failure (not retried), none an error.
    assert int(root.get("failures", "0")) > 0
    assert root.get("errors") == "0"
