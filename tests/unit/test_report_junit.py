"""JUnit XML from a report: suites per project, cases per job per verify step, typed failures."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from reports import JobSpec, fleet, jobs_of, make_report

from engine.report.junit import to_junit


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


def test_testsuites_carry_the_totals() -> None:
    root = ET.fromstring(to_junit(make_report()))
    # Per project: 2 recovered, failed_again, timed_out, retry_rejected fail, 1 skipped.
    assert root.get("tests") == "12"
    assert root.get("failures") == "6"
    assert root.get("errors") == "0"
    assert root.get("skipped") == "2"
    assert root.get("time") == "30.500"
    assert root.get("name") == "runbook retry-failed-jobs"


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
