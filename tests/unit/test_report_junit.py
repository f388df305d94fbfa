"""JUnit XML from a report: suites per project, cases per job per verify step and per assert,
typed failures, valid against the strict xUnit schema (junit-10.xsd)."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from junit_xsd import junit_errors
from reports import JobSpec, fleet, jobs_of, make_report

from engine.report.document import (
    DrillBudget,
    DrillReport,
    DrillVerdict,
    OutputFigure,
    Report,
    StepReport,
)
from engine.report.files import write_lines
from engine.report.junit import runbook_file, to_junit
from engine.report.render import render_lines
from engine.run.result import StepStatus


def _cases(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall("./testsuite/testcase")


def test_one_suite_per_project_and_one_case_per_job_per_verify_step() -> None:
    report = make_report()
    root = ET.fromstring(to_junit(report))

    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.findall("testsuite")] == ["orders-prod", "pay"]
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(jobs_of(report))  # one verify step
    assert all(c.get("name", "").endswith(" verify") for c in cases)
    assert {c.get("classname") for c in cases} == {"orders-prod", "pay"}
    for job in jobs_of(report):
        assert sum(1 for c in cases if f"[{job.id}]" in c.get("name", "")) == 1


def test_testsuites_carry_the_totals_and_each_suite_its_skipped_count_and_timestamp() -> None:
    root = ET.fromstring(to_junit(make_report()))
    # Per project: 2 recovered, failed_again, timed_out, retry_rejected fail, 1 skipped.
    assert root.get("tests") == "12"
    assert root.get("failures") == "6"
    assert root.get("errors") == "0"
    assert root.get("time") == "30.500"
    assert root.get("name") == "runbook retry-failed-jobs"
    # junit-10.xsd allows neither on <testsuites>: they are on each suite.
    assert root.get("skipped") is None
    assert root.get("timestamp") is None
    suites = root.findall("testsuite")
    assert [s.get("skipped") for s in suites] == ["1", "1"]
    assert {s.get("timestamp") for s in suites} == {"2026-11-29T06:00:00+00:00"}


def test_failure_carries_the_error_code_and_the_reason() -> None:
    cases = _cases(to_junit(make_report()))
    [rejected] = [c for c in cases if "orders-retry-rejected" in c.get("name", "")]
    failure = rejected.find("failure")
    assert failure is not None
    assert failure.get("type") == "DRS.M05004"
    assert failure.get("message") == (
        "retry_rejected: the job is not in a state that allows retry (DRS.M05004)"
    )
    assert "retry_rejected  (retry)  DRS.M05004" in (failure.text or "")


def test_failure_without_a_code_is_typed_with_the_disposition() -> None:
    cases = _cases(to_junit(make_report()))
    [timed_out] = [c for c in cases if "orders-timed-out" in c.get("name", "")]
    failure = timed_out.find("failure")
    assert failure is not None
    assert failure.get("type") == "timed_out"
    assert failure.get("message", "").startswith("timed_out: still STARTJOBING")


def test_recovered_case_passes_with_its_time_to_recover_and_skipped_says_why() -> None:
    cases = _cases(to_junit(make_report()))
    [recovered] = [c for c in cases if c.get("name", "").startswith("orders-recovered-1 ")]
    assert list(recovered) == []
    assert recovered.get("time") == "3.000"
    [skipped] = [c for c in cases if "orders-skipped" in c.get("name", "")]
    marker = skipped.find("skipped")
    assert marker is not None
    assert marker.get("message") == "RETRY not in available_actions (offered: DELETE)"


def test_without_a_verify_step_each_job_is_one_case_for_the_run() -> None:
    report = make_report(verify=False)
    cases = _cases(to_junit(report))
    assert len(cases) == len(jobs_of(report))
    assert all(c.get("name", "").endswith(" run") for c in cases)
    # Accepted but never verified is not a pass.
    failed_types = {f.get("type") for c in cases if (f := c.find("failure")) is not None}
    assert failed_types == {"not_verified", "DRS.M05004"}


def test_failed_step_is_an_error_case() -> None:
    root = ET.fromstring(to_junit(make_report(failed_step=("pay", "select"))))
    [error] = root.findall("./testsuite/testcase/error")
    assert error.get("message") == "DRS answered 500 three times"
    assert root.get("errors") == "1"


def test_names_are_escaped_and_control_characters_dropped() -> None:
    spec = JobSpec(job_id="j1", name='<script>alert("x")</script> & \x07bell', fate="timed_out")
    xml = to_junit(make_report({"a&b <prod>": [spec]}))

    [case] = _cases(xml)
    assert case.get("name") == '<script>alert("x")</script> & \ufffdbell [j1] verify'
    assert case.get("classname") == "a&b <prod>"
    assert "<script>" not in xml


def test_a_lone_surrogate_in_a_name_is_replaced_and_the_file_is_written_valid(
    tmp_path: Path,
) -> None:
    # A job name decoded with surrogateescape, or a server's "\ud800" JSON escape: UTF-8 cannot
    # encode it, so junit.xml could not be written at all.
    spec = JobSpec(job_id="j1", name="orders-\ud800-\udfff", fate="timed_out")
    report = make_report({"prod \udc80": [spec]})
    path = tmp_path / "junit.xml"

    write_lines(path, render_lines(report, "junit"))  # as write_reports writes junit.xml

    xml = path.read_text(encoding="utf-8")
    [case] = ET.parse(path).getroot().findall("./testsuite/testcase")
    assert case.get("name") == "orders-\ufffd-\ufffd [j1] verify"
    assert case.get("classname") == "prod \ufffd"
    assert junit_errors(xml) == []


def test_two_verify_steps_give_two_cases_per_job() -> None:
    report = make_report({"p": fleet("p", ("recovered", "timed_out"))})
    target = report.targets[0]
    again = dataclasses.replace(target.steps[-1], id="verify_again")
    report = dataclasses.replace(
        report, targets=[dataclasses.replace(target, steps=[*target.steps, again])]
    )

    cases = _cases(to_junit(report))

    assert [c.get("name", "").rsplit(" ", 1)[1] for c in cases] == [
        "verify",
        "verify_again",
        "verify",
        "verify_again",
    ]
    # The recovered job passes both; the second step never saw it and it ended recovered.
    assert [c.find("failure") is None for c in cases] == [True, True, False, False]


def test_a_suite_lasts_from_its_first_step_to_its_last_not_the_sum_of_some() -> None:
    report = make_report()
    target = report.targets[0]
    select, *rest = target.steps
    # select at 0 for 0.2 s; a human took 25 s over an approval; verify then ran 3 s and was
    # interrupted; a step never run (0.0 s, "not run") does not shorten or lengthen it
    timed = [
        dataclasses.replace(select, started_t=0.0, duration_s=0.2),
        dataclasses.replace(rest[0], started_t=0.2, duration_s=25.0),
        dataclasses.replace(rest[-1], started_t=25.2, duration_s=3.0),
        dataclasses.replace(rest[-1], id="later", started_t=0.0, duration_s=0.0,
                            message="not run: run interrupted"),
    ]  # fmt: skip
    report = dataclasses.replace(
        report, targets=[dataclasses.replace(target, steps=timed), *report.targets[1:]]
    )
    suite = ET.fromstring(to_junit(report)).findall("testsuite")[0]
    assert suite.get("time") == "28.200"


# ------------------------------------------------------------------------------------- asserts


def _step(
    step_id: str,
    status: StepStatus,
    *,
    name: str | None = None,
    message: str | None = None,
    outputs: Mapping[str, OutputFigure] | None = None,
) -> StepReport:
    return StepReport(
        id=step_id,
        name=name,
        action="assert",
        attempts=0 if status is StepStatus.SKIPPED else 1,
        status=status,
        started_t=30.0,
        duration_s=0.0 if status is StepStatus.SKIPPED else 0.002,
        message=message,
        outputs=outputs if outputs is not None else {},
    )


HELD = _step(
    "recovered",
    StepStatus.SUCCEEDED,
    name="At least 99% of the jobs recovered",
    outputs={"passed": True},
)
NOT_HELD = _step(
    "within_rto",
    StepStatus.FAILED,
    message="over the RTO budget: steps.verify.drill_rto_p95_s = 6.04 > params.rto_budget = 1",
    outputs={"passed": False},
)
NOT_EVALUATED = _step(
    "broken",
    StepStatus.FAILED,
    message="rb.yaml:9:13: ${{ steps.verify.ratio >= 1 }}: step 'verify' has no output 'ratio'",
)
NOT_RUN = _step("after", StepStatus.SKIPPED, message="not run: an earlier step failed")


def _with_steps(
    report: Report, *extra: StepReport, outputs: dict[str, OutputFigure] | None = None
) -> Report:
    """The report with ``extra`` steps after the first target's, and its verify step's outputs
    replaced by ``outputs``."""
    target = report.targets[0]
    steps = [
        dataclasses.replace(s, outputs=outputs) if outputs and s.id == "verify" else s
        for s in target.steps
    ]
    changed = dataclasses.replace(target, steps=[*steps, *extra])
    return dataclasses.replace(report, targets=[changed, *report.targets[1:]])


def _assert_cases(xml: str) -> dict[str, ET.Element]:
    suite = ET.fromstring(xml).findall("testsuite")[0]
    return {
        case.get("name", ""): case
        for case in suite.findall("testcase")
        if case.get("name", "").startswith("assert ")
    }


def test_each_assert_is_a_case_held_empty_not_holding_a_failure_not_evaluated_an_error() -> None:
    report = _with_steps(make_report(), HELD, NOT_HELD, NOT_EVALUATED, NOT_RUN)
    xml = to_junit(report)

    cases = _assert_cases(xml)
    assert list(cases) == [
        "assert recovered: At least 99% of the jobs recovered",
        "assert within_rto",
        "assert broken",
        "assert after",
    ]
    held, not_held, broken, after = cases.values()
    assert list(held) == []  # a pass criterion CI shows green
    assert held.get("classname") == "orders-prod"
    assert held.get("time") == "0.002"
    [failure] = list(not_held)
    assert failure.tag == "failure"
    assert failure.get("type") == "assertion_failed"
    assert failure.get("message") == NOT_HELD.message
    assert "steps.verify.drill_rto_p95_s = 6.04 > params.rto_budget = 1" in (failure.text or "")
    [error] = list(broken)
    assert error.tag == "error"
    assert error.get("type") == "step_failed"
    assert error.get("message") == NOT_EVALUATED.message
    [skipped] = list(after)
    assert (skipped.tag, skipped.get("message")) == ("skipped", "not run: an earlier step failed")
    suite = ET.fromstring(xml).findall("testsuite")[0]
    # 6 job cases (3 failures, 1 skipped) and the 4 asserts; the failed assert is no step error.
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == [
        "10", "4", "1", "2",
    ]  # fmt: skip
    assert len(ET.fromstring(xml).findall("./testsuite/testcase/error")) == 1
    assert junit_errors(xml) == []


def test_an_rto_assert_failure_gives_its_expression_the_measured_value_and_the_budget() -> None:
    budget = DrillBudget(
        step="within_rto",
        that="${{ steps.verify.drill_rto_p95_s <= params.rto_budget }}",
        measured="steps.verify.drill_rto_p95_s",
        budget_s=1.0,
        held=False,
    )
    drill = DrillReport(
        verdict=DrillVerdict.FAILED,
        why="pause-to-recovery p95 6.04 s > budget 1 s (step 'within_rto' failed in orders-prod)",
        paused=[],
        rto_p50_s=None,
        rto_p95_s=None,
        rto_max_s=None,
        budget=budget,
        checks=[],
    )
    report = dataclasses.replace(
        _with_steps(make_report(), NOT_HELD, outputs={"drill_rto_p95_s": 6.04}), drill=drill
    )

    failure = _assert_cases(to_junit(report))["assert within_rto"].find("failure")

    assert failure is not None
    assert (failure.text or "").splitlines() == [
        "over the RTO budget: steps.verify.drill_rto_p95_s = 6.04 > params.rto_budget = 1",
        "that: ${{ steps.verify.drill_rto_p95_s <= params.rto_budget }}",
        "measured: steps.verify.drill_rto_p95_s = 6.04",
        "budget: 1 s",
    ]


def test_a_failed_assert_from_an_older_report_without_outputs_is_an_error_not_a_pass() -> None:
    old = dataclasses.replace(NOT_HELD, outputs={})
    case = _assert_cases(to_junit(_with_steps(make_report(), old)))["assert within_rto"]
    assert [child.tag for child in case] == ["error"]


# -------------------------------------------------------------------------------- file, schema


def test_each_suite_names_the_runbook_file_and_no_case_does() -> None:
    root = ET.fromstring(to_junit(make_report()))
    assert {s.get("file") for s in root.findall("testsuite")} == {"runbooks/retry.yaml"}
    # junit-10.xsd has no file attribute on a testcase.
    assert all(c.get("file") is None for c in root.iter("testcase"))


def test_the_runbook_file_is_relative_to_the_working_directory_when_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runbook_file(str(tmp_path / "runbooks" / "dr.yaml")) == "runbooks/dr.yaml"
    elsewhere = str(tmp_path.parent / "other" / "dr.yaml")
    assert runbook_file(elsewhere) == elsewhere
    assert runbook_file("../dr.yaml") == "../dr.yaml"


def _with_control_characters() -> Report:
    spec = JobSpec(job_id="j1", name='a\x07 <b> & "c"', fate="timed_out", delays=(3.0, 9.5))
    return make_report({"a&b <prod>": [spec, *fleet("p", ("recovered", "lagging"))]})


def _interrupted() -> Report:
    """A run cut short in its verify step: the step failed, the assert after it never ran."""
    report = make_report()
    target = report.targets[0]
    cut = [
        dataclasses.replace(s, status=StepStatus.FAILED, message="interrupted while running")
        if s.id == "verify"
        else s
        for s in target.steps
    ]
    changed = dataclasses.replace(target, steps=[*cut, NOT_RUN])
    return dataclasses.replace(
        report, interrupted=True, exit_code=130, targets=[changed, *report.targets[1:]]
    )


SHAPES: dict[str, Callable[[], Report]] = {
    "retry and verify": make_report,
    "no verify step": lambda: make_report(verify=False),
    "a failed step": lambda: make_report(failed_step=("pay", "select")),
    "asserts of every kind": lambda: _with_steps(
        make_report(), HELD, NOT_HELD, NOT_EVALUATED, NOT_RUN
    ),
    "escaping and delays": _with_control_characters,
    "no targets": lambda: make_report({}),
    "interrupted": _interrupted,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_junit_is_valid_against_the_strict_xunit_schema(shape: str) -> None:
    assert junit_errors(to_junit(SHAPES[shape]())) == []


def test_the_schema_check_rejects_what_the_strict_xsd_does() -> None:
    # The check can fail: the attributes this renderer used to put on <testsuites>.
    xml = to_junit(make_report()).replace("<testsuites ", '<testsuites skipped="2" ', 1)
    assert junit_errors(xml) == ["/testsuites: 'skipped' attribute not allowed for element"]
