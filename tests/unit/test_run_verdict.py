"""One verdict per run: a notification's ``verdict`` and the trace's ``runbook.verdict`` both
come from ``RunVerdict`` (the report's exit code), so they cannot disagree."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from reports import fleet, make_report

from engine.errors import EXIT_USAGE, StorageError
from engine.report.document import DrillReport, DrillVerdict, Report, RunVerdict
from engine.run.notify import RunRef, finished_document
from engine.telemetry import Telemetry

trace_sdk = pytest.importorskip("opentelemetry.sdk.trace")
trace_export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
REPO = Path(__file__).resolve().parents[2]


def _reports() -> dict[str, Report]:
    healthy = make_report({"orders": fleet("orders", ("recovered", "recovered"))})
    return {
        "exit 0": healthy,
        "exit 1": make_report(),  # jobs failed again, timed out: for a human
        # No run ends with 2 (a refused runbook never starts), but the verdict has one.
        "exit 2": dataclasses.replace(healthy, exit_code=EXIT_USAGE),
        "exit 130": make_report(interrupted=True),
        "storage failure": make_report(
            storage_failure=StorageError("cannot write journal.jsonl: no space left on device")
        ),
    }


def _traced(report: Report) -> dict[str, object]:
    spans = in_memory.InMemorySpanExporter()
    provider = trace_sdk.TracerProvider()
    provider.add_span_processor(trace_export.SimpleSpanProcessor(spans))
    telemetry = Telemetry(tracer_provider=provider)
    with telemetry.run_span(runbook=report.runbook.name, run_id=report.run_id, plan=False) as span:
        telemetry.run_finished(span, report)
    [run] = spans.get_finished_spans()
    assert run.attributes is not None
    return dict(run.attributes)


@pytest.mark.parametrize(
    ("case", "exit_code", "verdict"),
    [
        ("exit 0", 0, RunVerdict.OK),
        ("exit 1", 1, RunVerdict.NEEDS_A_HUMAN),
        ("exit 2", 2, RunVerdict.REFUSED),
        ("exit 130", 130, RunVerdict.INTERRUPTED),
        ("storage failure", 3, RunVerdict.STORAGE_FAILED),
    ],
)
def test_a_notification_and_the_trace_give_the_same_verdict(
    tmp_path: Path, case: str, exit_code: int, verdict: RunVerdict
) -> None:
    report = _reports()[case]
    about = RunRef(
        run_id=report.run_id, runbook_name="retry", runbook_path="rb.yaml", run_dir=tmp_path
    )

    told = finished_document(about, report, reports=[])

    assert report.exit_code == told["exit_code"] == exit_code
    traced = _traced(report)
    assert traced["runbook.exit_code"] == exit_code
    assert told["verdict"] == traced["runbook.verdict"] == verdict.value


def test_a_drill_that_passed_with_a_job_for_a_human_says_both_on_its_trace() -> None:
    drill = DrillReport(
        verdict=DrillVerdict.PASSED,
        why="every paused job recovered",
        paused=[],
        rto_p50_s=None,
        rto_p95_s=None,
        rto_max_s=None,
        budget=None,
        checks=[],
    )
    report = dataclasses.replace(make_report(), drill=drill)

    traced = _traced(report)

    assert (traced["runbook.verdict"], traced["runbook.drill.verdict"]) == (
        "needs_a_human",
        "passed",
    )


def test_an_exit_code_no_run_ends_with_has_no_verdict() -> None:
    with pytest.raises(ValueError, match="no run ends with exit code 4"):
        RunVerdict.of_exit_code(4)


def test_the_notification_schema_lists_every_verdict() -> None:
    schema = json.loads((REPO / "schemas" / "notification.schema.json").read_text())
    assert schema["properties"]["verdict"]["enum"] == [*(v.value for v in RunVerdict), None]
