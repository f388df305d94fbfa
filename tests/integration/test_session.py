"""The application from plain Python, without click: ``engine.session.run_runbook``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLE, REPO, fast_copy, run_cli

from engine.errors import RunbookInvalidError, UsageError
from engine.report.document import to_json_bytes
from engine.session import EmulatorSettings, run_runbook

FAST = EmulatorSettings(time_scale=0.05)


def _counts(outputs: dict[str, Any]) -> dict[str, Any]:
    """A step's outputs without its times (time to recover differs by a poll or two)."""
    return {k: v for k, v in outputs.items() if not k.endswith("_s")}


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What two runs of one runbook against one seeded fleet agree on (not their times)."""
    return {
        "totals": report["totals"],
        "exit_code": report["exit_code"],
        "targets": [
            {
                "project_id": t["project_id"],
                "status": t["status"],
                "steps": [
                    (s["id"], s["status"], s["message"], _counts(s["outputs"])) for s in t["steps"]
                ],
                "jobs": [
                    (j["id"], j["disposition"], j["reason"], j["error_code"], j["last_status"])
                    for j in t["jobs"]
                ],
            }
            for t in report["targets"]
        ],
    }


def test_run_runbook_from_python_returns_exit_1_and_the_report_the_cli_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "retry-failed-jobs.yaml", timeout="2s")

    outcome = run_runbook(runbook, emulator=FAST, report_dir=tmp_path / "python", yes=True)
    code, _, _ = run_cli(
        ["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05", "--yes", "-q",
         "--report-dir", str(tmp_path / "cli")],
        capsys,
    )  # fmt: skip

    assert outcome.exit_code == code == 1  # the demo fleet has jobs that do not recover
    assert outcome.run_dir == tmp_path / "python"
    written = json.loads((tmp_path / "python" / "report.json").read_bytes())
    assert (tmp_path / "python" / "report.json").read_bytes() == to_json_bytes(outcome.report)
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())
    ours, theirs = _comparable(written), _comparable(cli)
    assert ours["totals"] == theirs["totals"]
    for mine, other in zip(ours["targets"], theirs["targets"], strict=True):
        assert mine["steps"] == other["steps"]
        assert mine["jobs"] == other["jobs"]
    assert [p.name for p in outcome.written] == [
        "report.json", "report.md", "report.html", "junit.xml", "emulator-stats.json",
    ]  # fmt: skip
    assert outcome.emulator_stats is not None
    assert outcome.report.totals.needs_attention > 0


def test_run_runbook_raises_for_invalid_input_before_anything_runs(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nsteps: nope\n", encoding="utf-8")
    with pytest.raises(RunbookInvalidError):
        run_runbook(broken, emulator=True, report_dir=tmp_path / "r")
    # An approval nobody can answer is refused up front: no run directory is made.
    with pytest.raises(UsageError, match="asks for approval"):
        run_runbook(REPO / "runbooks" / "incident-retry.yaml", emulator=True,
                    report_dir=tmp_path / "gate")  # fmt: skip
    assert not (tmp_path / "gate").exists()
    with pytest.raises(UsageError, match="cannot be used together"):
        run_runbook(EXAMPLE, emulator=True, endpoint="http://127.0.0.1:1")
