"""When telemetry is on, and what a run without the [otel] extra does when asked for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.telemetry import enabled_by


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "TRUE"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, False),
    ],
)
def test_an_otlp_endpoint_turns_telemetry_on(env: dict[str, str], on: bool) -> None:
    assert enabled_by(env) is on


_WITHOUT_THE_EXTRA = """
import logging, sys
sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from engine.telemetry import from_env
print(from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}))
"""


def test_asked_for_without_the_extra_it_warns_and_runs_without() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_EXTRA], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "None\n"
    assert child.stderr == (
        "OTEL_EXPORTER_OTLP_ENDPOINT is set but the [otel] extra is not installed (no "
        "opentelemetry.exporter), so the run goes on without telemetry; install the otel extra "
        "from where drs-runbook was installed (pip install '<your source>[otel]', such as "
        "'.[otel]' in a checkout) or pip install opentelemetry-sdk "
        "opentelemetry-exporter-otlp-proto-http\n"
    )
    # One sentence, and no package name that no public index has
    assert child.stderr.count("; ") == 1
    assert "drs-runbook[otel]" not in child.stderr
