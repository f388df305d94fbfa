"""-v/--verbose is taken before the subcommand and after it, by every subcommand."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import COMMANDS, cli

INCIDENT = Path(__file__).resolve().parents[2] / "runbooks" / "incident-retry.yaml"


@pytest.fixture(autouse=True)
def _engine_log_level() -> Iterator[None]:
    engine = logging.getLogger("engine")
    level, handlers = engine.level, engine.handlers[:]
    root = logging.getLogger()
    root_handlers = root.handlers[:]
    yield
    engine.setLevel(level)
    engine.handlers[:] = handlers
    root.handlers[:] = root_handlers


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_takes_verbose_after_its_name(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "-v", "--help"])
    assert result.exit_code == 0, result.output
    assert "-v, --verbose" in result.output


@pytest.mark.parametrize(
    ("args", "level"),
    [
        (["validate", str(INCIDENT), "-v"], logging.INFO),
        (["validate", str(INCIDENT), "--verbose", "--verbose"], logging.DEBUG),
        (["-v", "validate", str(INCIDENT), "-v"], logging.DEBUG),  # they add up
        (["validate", str(INCIDENT)], logging.WARNING),
    ],
)
def test_verbose_after_the_subcommand_sets_the_log_level(args: list[str], level: int) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert logging.getLogger("engine").level == level
