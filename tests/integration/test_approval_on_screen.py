"""The approval prompt and its answer stay on the screen, as tmux shows it after the run.

A byte stream alone cannot show this: the live table moves the cursor up to redraw itself, and
whether it overwrote the prompt depends on how far. tmux plays the terminal: the test reads its
pane and scrollback after the run, as a human scrolling back would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from harness import REPO, fast_copy

from engine.run.approval import approver_identity

PROMPT = "go ahead? [y/N]: y"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """``tmux -L SOCKET``: a server of this test's own, killed at the end."""
    command = ["tmux", "-L", f"runbook-test-{uuid.uuid4().hex[:12]}", "-f", os.devnull]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, check=False)


def _screen(tmux: list[str]) -> str:
    """The pane and its whole scrollback, as text (what a human scrolling back sees)."""
    captured = subprocess.run(
        [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "run"],
        capture_output=True,
        text=True,
        check=True,
    )
    return captured.stdout


def _wait_for(tmux: list[str], pattern: str, *, within_s: float) -> str:
    deadline = time.monotonic() + within_s
    while True:
        screen = _screen(tmux)
        if re.search(pattern, screen):
            return screen
        assert time.monotonic() < deadline, f"no {pattern!r} on the screen:\n{screen}"
        time.sleep(0.1)


def test_the_prompt_and_its_answer_stay_in_the_scrollback(tmux: list[str], tmp_path: Path) -> None:
    runbook = fast_copy(REPO / "runbooks" / "incident-retry.yaml", tmp_path / "incident.yaml")
    done = tmp_path / "exit-code"
    # CI (set by every CI service) and NO_COLOR ask for plain lines; TERM, COLUMNS and LINES
    # must be the pane's own, not those of the terminal (or none) pytest runs under
    unset = ("CI", "NO_COLOR", "TMUX", "TERM", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    run = " ".join(
        shlex.quote(part)
        for part in (
            sys.executable, "-c", "from engine.cli import main; main()", "run", str(runbook),
            "--emulator", "--emulator-time-scale", "0.05", "--report-dir", str(tmp_path / "r"),
        )
    )  # fmt: skip
    script = tmp_path / "run.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.isidentifier())
    # unset again in the pane: the tmux server inherits the environment of whoever started
    # it (pytest's, CI=true included) and hands it to its panes, with a COLUMNS/LINES of its
    # own (80x24) that rich would prefer to the pane's real size
    script.write_text(
        f"{exports}unset CI NO_COLOR COLUMNS LINES\n"
        f"{run}\necho $? > {shlex.quote(str(done))}\nsleep 600\n"
    )
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "run", "-x", "160", "-y", "40", f"sh {script}"],
        check=True,
        env=env,
    )
    subprocess.run([*tmux, "set-option", "-t", "run", "history-limit", "10000"], check=True)

    before = _wait_for(tmux, r"go ahead\? \[y/N\]:", within_s=60)
    subprocess.run([*tmux, "send-keys", "-t", "run", "y", "Enter"], check=True)
    deadline = time.monotonic() + 90
    while not done.exists():
        assert time.monotonic() < deadline, _screen(tmux)
        time.sleep(0.2)
    screen = _screen(tmux)

    assert done.read_text().strip() in ("0", "1"), screen
    assert "reports: " in screen  # the run ended and printed its summary
    # the prompt and its answer are still there, once, after the run ended
    assert screen.count(PROMPT) == 1, screen
    prompt_at = screen.index(PROMPT)
    assert "Retry these jobs in production?" in screen[:prompt_at]
    # the table left above the prompt has the numbers of the moment: every project selected,
    # and the jobs it has no verdict on are the jobs the approval is about
    to_act = re.search(r"approval 'approve': (\d+) job\(s\) to act on in 2 project", before)
    assert to_act is not None, before
    tables = re.findall(r"(\d+)/(\d+) settled", screen[:prompt_at])
    assert tables, screen
    *_, (settled, selected) = tables
    assert int(selected) - int(settled) == int(to_act[1]), screen[:prompt_at]
    # and the run went on below it: its progress and summary come after the answer
    assert "settled" in screen[prompt_at:]
    assert screen.index("reports: ") > prompt_at
    # and the approval is on record: who, when, how
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    [decision] = report["approvals"]
    assert (decision["step"], decision["approved"], decision["how"]) == (
        "approve",
        True,
        "terminal",
    )
    assert decision["approved_by"] == approver_identity()  # user@host, or the CI actor
    assert datetime.fromisoformat(decision["approved_at"]).tzinfo is not None
    assert decision["plan_hash"] is None
