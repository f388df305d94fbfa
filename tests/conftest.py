"""What every tier shares: the virtual clock, the contract marker, and (for the contract
tier) a standalone emulator process on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock
from harness import serve_emulator

from engine import redact

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is the contract tier: ``-m "not contract"`` skips it."""
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.contract)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with the secrets registry as the session left it before the test:
    ``engine.redact`` keeps secrets for the life of a process (what a run needs), so a token
    one test registers (say, "orders") would otherwise redact another test's target names."""
    forms, pattern = set(redact._forms), redact._pattern
    yield
    with redact._lock:
        redact._forms.clear()
        redact._forms.update(forms)
        redact._pattern = pattern
        redact.redact_word.cache_clear()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test leaves logging as it found it: ``configure_logging`` (the CLI's, called by
    tests of logs, progress and the commands) replaces the handlers of the root logger and sets
    the engine's level, which would otherwise carry into the next test of the worker."""
    engine, root = logging.getLogger("engine"), logging.getLogger()
    level, handlers, root_handlers = engine.level, engine.handlers[:], root.handlers[:]
    yield
    engine.setLevel(level)
    engine.handlers[:] = handlers
    root.handlers[:] = root_handlers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator() -> Iterator[dict[str, Any]]:
    """`runbook emulator` in a subprocess (fast transitions); yields its first-line description."""
    with serve_emulator(
        "--projects", "2", "--jobs", "15", "--seed", "3", "--time-scale", "0.05"
    ) as described:
        yield described


@pytest.fixture
def emulator_token(emulator: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The emulator, with its pre-issued token in DRS_AUTH_TOKEN for `--endpoint` runs."""
    monkeypatch.setenv("DRS_AUTH_TOKEN", emulator["token"])
    return emulator
