"""report.json's contract: what build_report writes validates, and a broken report says where."""

from __future__ import annotations

import json
from typing import Any

from reports import JobSpec, as_json, make_report

from engine.ledger import Disposition, EventKind
from engine.report.contract import load_schema, schema_path, validate_report
from engine.report.document import Report, to_json


def test_built_report_validates_against_the_schema() -> None:
    report = make_report()
    assert validate_report(as_json(report)) == []
    # What report.json holds, read back, is the same document.
    assert Report.from_json(json.loads(to_json(report))) == report


def test_a_report_with_delays_and_a_lagging_job_validates_and_reads_back() -> None:
    specs = [
        JobSpec(job_id="lag", name="lag", fate="lagging", delays=(240.0, 400.0)),
        JobSpec(job_id="ok", name="ok", fate="recovered", delays=(2.0, 9.5)),
    ]
    report = make_report({"orders": specs})
    assert validate_report(as_json(report)) == []
    assert Report.from_json(json.loads(to_json(report))) == report


def test_report_of_a_runbook_without_verify_and_with_a_failed_step_validates() -> None:
    report = make_report(verify=False, failed_step=("pay", "retry"))
    assert validate_report(as_json(report)) == []


def test_optional_params_and_resumes_are_accepted() -> None:
    report = as_json(make_report())
    report["params"] = {"batch_size": 10, "statuses": ["INCRE_TRANSFER_FAILED"]}
    report["resumed_at"] = ["2026-11-29T06:10:00+00:00"]
    assert validate_report(report) == []


def test_broken_report_names_every_problem_with_its_path() -> None:
    report = as_json(make_report())
    report["report_version"] = 2
    del report["runbook"]["name"]
    report["targets"][0]["jobs"][1]["disposition"] = "fixed"
    report["targets"][1]["jobs"][0]["events"][0]["t"] = "soon"
    report["totals"]["hidden"] = 3

    problems = validate_report(report)

    assert "report_version: expected 1, got 2" in problems
    assert "runbook: missing 'name'" in problems
    assert 'targets[1].jobs[0].events[0].t: expected number, got string "soon"' in problems
    assert "totals: unexpected 'hidden'" in problems
    [disposition] = [p for p in problems if p.startswith("targets[0].jobs[1].disposition: ")]
    assert disposition.endswith(', got "fixed"')
    assert '"recovered"' in disposition
    assert len(problems) == 5


def test_missing_keys_are_named_once_however_many() -> None:
    report = as_json(make_report())
    job: dict[str, Any] = report["targets"][0]["jobs"][0]
    del job["events"], job["reason"]
    assert validate_report(report) == ["targets[0].jobs[0]: missing 'reason', 'events'"]


def test_resumed_at_must_be_timestamps() -> None:
    report = as_json(make_report())
    report["resumed_at"] = ["yesterday"]
    [problem] = validate_report(report)
    assert problem.startswith("resumed_at[0]: 'yesterday' does not match")


def test_schema_enumerates_every_disposition_and_event_kind() -> None:
    defs = load_schema()["$defs"]
    assert defs["disposition"]["enum"] == [d.value for d in Disposition]
    assert defs["event"]["properties"]["kind"]["enum"] == [k.value for k in EventKind]
    totals = defs["totals"]["properties"]
    assert {d.value for d in Disposition} <= set(totals)


def test_every_property_of_the_schema_is_described() -> None:
    undescribed: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    undescribed.append(f"{where}.{name}")
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    schema = load_schema()
    walk(schema, "")
    assert undescribed == []
    assert schema["properties"]["report_version"]["const"] == 1
    assert schema_path().name == "report.schema.json"


def test_a_report_repr_is_one_short_line_however_many_jobs() -> None:
    # asyncio.run formats its finished main task's result: a full repr costs 0.5 s at 100k jobs.
    report = make_report()
    assert repr(report) == "Report(run_id='20261129T060000Z-abcd', exit_code=1, targets=2, jobs=12)"
