"""OpenTelemetry of real runs against the emulator, read in memory: the span tree, the counters
against report.json, and nothing of opentelemetry loaded when telemetry is off."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLE, REPO, fast_copy, runbook_for, serve_emulator

from engine.run.inputs import EmulatorSettings
from engine.session import RunOutcome, run_runbook_async
from engine.telemetry import FLUSH_BOUND_S, Telemetry, resource

trace_sdk = pytest.importorskip("opentelemetry.sdk.trace")
trace_export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
metrics_sdk = pytest.importorskip("opentelemetry.sdk.metrics")
metrics_export = pytest.importorskip("opentelemetry.sdk.metrics.export")

FAST = EmulatorSettings(seed=3, jobs=12, time_scale=0.05)
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Collected:
    """In-memory providers, as a caller of the Python API would wire its own."""

    def __init__(self) -> None:
        self.spans = in_memory.InMemorySpanExporter()
        self.reader = metrics_export.InMemoryMetricReader()
        tracer_provider = trace_sdk.TracerProvider(resource=resource())
        tracer_provider.add_span_processor(trace_export.SimpleSpanProcessor(self.spans))
        meter_provider = metrics_sdk.MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def sums(self, metric: str, *, by: str | None = None) -> Counter[str]:
        """A counter's value per value of attribute ``by`` (or in all, under "")."""
        found: Counter[str] = Counter()
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for point in m.data.data_points:
                            key = "" if by is None else str(point.attributes[by])
                            found[key] += point.value if hasattr(point, "value") else point.count
        return found


@pytest.fixture(autouse=True)
def _no_collector_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _api_spans(collected: Collected) -> list[Any]:
    return [s for s in collected.spans.get_finished_spans() if s.name.startswith("POST ")]


def _report(outcome: RunOutcome) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((outcome.run_dir / "report.json").read_text())
    return report


def _jobs_by_disposition(report: dict[str, Any]) -> Counter[str]:
    return Counter(job["disposition"] for t in report["targets"] for job in t["jobs"])


async def test_an_emulator_run_is_one_trace_run_targets_steps_calls(tmp_path: Path) -> None:
    collected = Collected()
    runbook = fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="2s")
    outcome = await run_runbook_async(
        runbook,
        emulator=FAST,
        report_dir=tmp_path / "run",
        yes=True,
        telemetry=collected.telemetry,
    )
    report = _report(outcome)

    (run,) = collected.named("runbook.run")
    assert run.parent is None
    assert run.attributes["runbook.run_id"] == report["run_id"]
    assert run.attributes["runbook.name"] == report["runbook"]["name"]
    assert run.attributes["runbook.exit_code"] == outcome.exit_code
    verdict = {0: "ok", 1: "needs_a_human"}[outcome.exit_code]  # as its notification says
    assert run.attributes["runbook.verdict"] == verdict
    assert "runbook.drill.verdict" not in run.attributes  # not a drill
    assert run.resource.attributes["service.name"] == "drs-runbook"

    targets = collected.named("runbook.target")
    assert sorted(t.attributes["runbook.project_id"] for t in targets) == sorted(
        t["project_id"] for t in report["targets"]
    )
    assert all(t.parent.span_id == run.context.span_id for t in targets)
    assert all(t.context.trace_id == run.context.trace_id for t in targets)
    by_target = {t.context.span_id: t.attributes["runbook.project_id"] for t in targets}

    steps = collected.named("runbook.step")
    assert {s.parent.span_id for s in steps} <= set(by_target)
    for target in report["targets"]:
        ran = {
            s.attributes["runbook.step.id"]: s.attributes["runbook.step.status"]
            for s in steps
            if by_target[s.parent.span_id] == target["project_id"]
        }
        expected = {s["id"]: s["status"] for s in target["steps"] if s["attempts"] > 0}
        assert ran == expected

    calls = _api_spans(collected)
    step_ids = {s.context.span_id: s.attributes["runbook.step.id"] for s in steps}
    assert calls
    assert all(c.parent.span_id in step_ids for c in calls)  # every call under its step
    # Each request sent is one span, as the report counts them.
    assert len(calls) == sum(report["api_calls"].values())
    routes = Counter("POST " + c.attributes["url.template"] for c in calls)
    assert dict(routes) == report["api_calls"]
    assert {step_ids[c.parent.span_id] for c in calls if "batch-retry" in c.name} == {"retry"}
    for call in calls:
        assert call.attributes["http.response.status_code"] == 200
        assert len(call.attributes["drs.request_id"]) == 32  # the emulator's uuid4 hex
        assert "://" not in json.dumps(dict(call.attributes))  # a template, never the URL

    assert collected.sums("runbook.requests")[""] == len(calls)
    assert collected.sums("runbook.jobs", by="runbook.disposition") == _jobs_by_disposition(report)
    recovered = [
        j["time_to_recover_s"]
        for t in report["targets"]
        for j in t["jobs"]
        if j["time_to_recover_s"] is not None
    ]
    assert recovered
    assert collected.sums("runbook.time_to_recover")[""] == len(recovered)


async def test_throttled_and_retried_requests_are_counted_as_the_report_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = "too_frequent_rate=0.6,error_rate=0.15"
    with serve_emulator(
        "--projects", "2", "--jobs", "15", "--seed", "3", "--time-scale", "0.05",
        "--faults", faults,
    ) as emulator:  # fmt: skip
        monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
        collected = Collected()
        outcome = await run_runbook_async(
            runbook_for(emulator, tmp_path / "rb.yaml"),
            endpoint=emulator["url"],
            report_dir=tmp_path / "run",
            yes=True,
            telemetry=collected.telemetry,
        )
    report = _report(outcome)
    resilience = report["api_resilience"]
    assert resilience["throttled"] > 0
    assert resilience["retries"] > 0
    assert collected.sums("runbook.throttled")[""] == resilience["throttled"]
    assert collected.sums("runbook.retries")[""] == resilience["retries"]
    assert collected.sums("runbook.jobs", by="runbook.disposition") == _jobs_by_disposition(report)

    calls = _api_spans(collected)
    refused = [c for c in calls if c.attributes.get("drs.error_code") == "DRS.M01503"]
    assert len(refused) == resilience["throttled"]
    assert all(c.status.status_code.name == "ERROR" for c in refused)
    assert all(c.attributes["http.response.status_code"] == 400 for c in refused)
    assert any(c.attributes.get("http.request.resend_count", 0) > 0 for c in calls)
    by_class = collected.sums("runbook.requests", by="http.status_class")
    assert by_class["4xx"] >= len(refused)
    assert by_class["5xx"] > 0  # error_rate: 500 DRS.M00004
    assert sum(by_class.values()) == len(calls)


_RUN_IN_A_CHILD = """
import json, sys, time
from engine.run.inputs import EmulatorSettings
from engine.session import run_runbook
started = time.monotonic()
outcome = run_runbook(sys.argv[1], emulator=EmulatorSettings(seed=3, jobs=6, time_scale=0.05),
                      report_dir=sys.argv[2], yes=True, formats=())
print(json.dumps({
    "exit_code": outcome.exit_code,
    "seconds": time.monotonic() - started,
    "otel": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
}))
"""


def _run_in_a_child(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    runbook = fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="1s")
    child = subprocess.run(
        [sys.executable, "-c", _RUN_IN_A_CHILD, str(runbook), str(tmp_path / "run")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    result: dict[str, Any] = json.loads(child.stdout)
    assert result["exit_code"] in (0, 1), child.stderr
    result["stderr"] = child.stderr
    return result


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env | extra


def test_without_an_endpoint_a_run_imports_nothing_of_opentelemetry(tmp_path: Path) -> None:
    assert _run_in_a_child(tmp_path, _environment())["otel"] == []


def test_a_collector_that_is_down_delays_the_end_of_a_run_by_the_bound_at_most(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = _run_in_a_child(
        tmp_path, _environment(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
    )
    assert "opentelemetry.sdk.trace" in result["otel"]  # on, as asked
    (tmp_path / "off").mkdir()
    without = _run_in_a_child(tmp_path / "off", _environment())
    assert result["seconds"] <= without["seconds"] + FLUSH_BOUND_S + 5
    assert time.monotonic() - started < 120
