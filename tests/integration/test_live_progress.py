"""Live progress on a terminal (a pty here), plain lines in CI, no colour with NO_COLOR."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from harness import EXAMPLE, fast_copy, run_cli

CURSOR_UP = "\x1b[1A"
GREEN = "\x1b[32m"


def _on_a_terminal(runbook: Path, tmp_path: Path, **env: str) -> tuple[int, str]:
    """Run on a pseudo-terminal, as a human would; (exit code, everything it printed)."""
    master, slave = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")}
    command = [
        sys.executable, "-c", "from engine.cli import main; main()", "run", str(runbook),
        "--emulator", "--emulator-time-scale", "0.05", "--report-dir", str(tmp_path / "r"),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env={**environ, **env}
    ) as proc:
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    os.close(master)
    return code, out.decode(errors="replace")


@pytest.fixture
def runbook(tmp_path: Path) -> Path:
    return fast_copy(EXAMPLE, tmp_path / "demo.yaml", timeout="1s")


def test_a_terminal_gets_a_table_redrawn_in_place(runbook: Path, tmp_path: Path) -> None:
    code, out = _on_a_terminal(runbook, tmp_path)
    assert code == 1  # the demo fleet has jobs that do not recover
    assert CURSOR_UP in out  # redrawn in place
    assert "20/20 settled" in out
    for column in ("selected", "retried", "recovered", "failed"):
        assert column in out
    assert GREEN in out
    assert "reports: " in out


def test_no_color_keeps_the_table_without_colour(runbook: Path, tmp_path: Path) -> None:
    _, out = _on_a_terminal(runbook, tmp_path, NO_COLOR="1")
    assert "20/20 settled" in out
    assert GREEN not in out


def test_ci_gets_plain_lines_even_on_a_terminal(runbook: Path, tmp_path: Path) -> None:
    _, out = _on_a_terminal(runbook, tmp_path, CI="true")
    assert CURSOR_UP not in out
    assert "[orders-prod] select succeeded in" in out


def test_quiet_means_quiet_no_progress_and_no_emulator_lines(
    runbook: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05", "-q",
         "--report-dir", str(tmp_path / "q")],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert err == ""  # no progress, no "emulator listening on ...", no "emulator saw ..."
    assert "need a human" in out  # the summary is still the output


def test_ci_lines_are_stamped_and_say_the_deadline(runbook: Path, tmp_path: Path) -> None:
    _, out = _on_a_terminal(runbook, tmp_path, CI="true")
    started = re.search(
        r"(?m)^\d\d:\d\d:\d\dZ \[orders-prod\] verify \(drs\.verify_status\) started, "
        r"timeout 1s, until \d\d:\d\d:\d\dZ",
        out,
    )
    assert started is not None, out
    assert re.search(
        r"(?m)^\d\d:\d\d:\d\dZ \[orders-prod\] verify done in .*: \d+ of 7 jobs need a human", out
    )
    assert "verify succeeded" not in out  # the demo's verify leaves jobs needing a human


def test_json_logs_on_a_terminal_are_records_not_a_table(runbook: Path, tmp_path: Path) -> None:
    code, out = _on_a_terminal(runbook, tmp_path, RUNBOOK_LOG_FORMAT="json")
    assert code == 1
    assert CURSOR_UP not in out
    logged, _, summary = out.replace("\r\n", "\n").partition("\nrun ")  # stdout's summary
    records = [json.loads(line) for line in logged.splitlines()]  # every line before it
    assert any(r["logger"] == "engine.progress" and r["event"] == "step_finished" for r in records)
    assert "need a human" in summary
