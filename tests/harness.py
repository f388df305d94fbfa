"""What the integration tests share: driving the CLI, reading the emulator, writing runbooks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.ledger import Disposition, Outcome

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = sorted((REPO / "runbooks").glob("*.yaml"))
EXAMPLE = REPO / "runbooks" / "retry-failed-jobs.yaml"
# Every disposition a finished run may leave a job in (not the intermediate ones).
FINAL = frozenset(d.value for d in Disposition if d.outcome is not Outcome.PENDING)

RETRY_STEPS = """\
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 4
  - id: verify
    action: drs.verify_status
    timeout: 4s
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 0.2s
"""


def cli_command(*args: str) -> list[str]:
    """``runbook ARGS`` as a subprocess command line, with this interpreter."""
    return [sys.executable, "-c", "from engine.cli import main; main()", *args]


def resume_in_a_subprocess(run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """`runbook resume RUN_DIR -q` as a user would run it; the report it wrote."""
    resumed = subprocess.run(
        cli_command("resume", str(run_dir), "-q"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode in (0, 1), resumed.stderr
    assert (run_dir / "report.json").exists(), resumed.stderr + resumed.stdout
    report: dict[str, Any] = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return report


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``runbook ARGS`` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return json.loads(response.read())


def jobs_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [job for target in report["targets"] for job in target["jobs"]]


def fast_copy(
    source: Path, dest: Path, *, timeout: str = "4s", poll: str = "0.2s", settle: str = "1s"
) -> Path:
    """The runbook with a short verify deadline, poll interval and settle, for a fast
    emulator."""
    text = source.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(\s+timeout:).*$", rf"\1 {timeout}", text)
    text = re.sub(r"(?m)^(\s+poll_interval:).*$", rf"\1 {poll}", text)
    text = re.sub(r"(?m)^(\s+settle:).*$", rf"\1 {settle}", text)
    dest.write_text(text, encoding="utf-8")
    return dest


def runbook_for(
    described: dict[str, Any], path: Path, steps: str = RETRY_STEPS, head: str = ""
) -> Path:
    """A runbook whose targets are the projects of a running emulator."""
    targets = "".join(
        f"  - project_id: {p['project_id']}\n    region: {p['region']}\n"
        for p in described["projects"]
    )
    path.write_text(f"version: 1\nname: t\n{head}targets:\n{targets}steps:\n{steps}")
    return path


@contextmanager
def serve_emulator(*args: str) -> Iterator[dict[str, Any]]:
    """`runbook emulator ARGS` in a subprocess on a free loopback port; yields its first line."""
    command = [sys.executable, "-c", "from engine.cli import main; main()", "emulator", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            yield json.loads(proc.stdout.readline())
        finally:
            proc.terminate()
            proc.wait(timeout=10)
