"""Fixtures of the integration tests: a standalone emulator process on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def emulator() -> Iterator[dict[str, Any]]:
    """`runbook emulator` in a subprocess (fast transitions); yields its first-line description."""
    command = [
        sys.executable, "-c", "from engine.cli import main; main()", "emulator",
        "--projects", "2", "--jobs", "15", "--seed", "3", "--time-scale", "0.05",
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            yield json.loads(proc.stdout.readline())
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def emulator_token(emulator: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The emulator, with its pre-issued token in DRS_AUTH_TOKEN for `--endpoint` runs."""
    monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
    return emulator
