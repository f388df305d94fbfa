"""JSON log lines of a real run (-vv against the in-process emulator): every line parses, and
each request's line carries its request id, route and status with the run, target and step."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import EXAMPLE, fast_copy

from engine.cli import configure_logging
from engine.run.inputs import EmulatorSettings
from engine.session import run_runbook_async


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    engine, root = logging.getLogger("engine"), logging.getLogger()
    level, handlers, root_handlers = engine.level, engine.handlers[:], root.handlers[:]
    yield
    engine.setLevel(level)
    engine.handlers[:] = handlers
    root.handlers[:] = root_handlers


async def test_every_line_of_a_run_is_json_and_requests_carry_their_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    configure_logging(2, "json")
    outcome = await run_runbook_async(
        fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="2s"),
        emulator=EmulatorSettings(seed=3, jobs=8, time_scale=0.05),
        report_dir=tmp_path / "run",
        yes=True,
        formats=(),
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)

    requests = [line for line in lines if line["logger"] == "engine.api.client"]
    assert len(requests) == sum(outcome.report.api_calls.values())
    labels = {t.label for t in outcome.report.targets}
    steps = {s.id for t in outcome.report.targets for s in t.steps}
    for line in requests:
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
        assert line["route"].startswith("POST /v3/{project_id}/jobs")
        assert line["status"] == 200
        assert line["run_id"] == outcome.report.run_id
        assert line["target"] in labels
        assert line["step"] in steps
    assert {line["step"] for line in requests} == {"select", "retry", "verify"}
