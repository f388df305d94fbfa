"""Log lines: --log-format text|json, timestamps, the run's context, and redaction in both."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import cli, configure_logging
from engine.logs import JsonFormatter, TextFormatter, run_context
from engine.redact import REDACTED, keep_secret

INCIDENT = Path(__file__).resolve().parents[2] / "runbooks" / "incident-retry.yaml"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
log = logging.getLogger("engine.test_logs")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    engine, root = logging.getLogger("engine"), logging.getLogger()
    level, handlers, root_handlers = engine.level, engine.handlers[:], root.handlers[:]
    yield
    engine.setLevel(level)
    engine.handlers[:] = handlers
    root.handlers[:] = root_handlers


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every line of stderr, each of which must be one JSON object."""
    err = capsys.readouterr().err
    assert err.endswith("\n")
    return [json.loads(line) for line in err.splitlines()]


def test_a_json_line_has_the_four_fields_and_the_context_it_was_logged_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(1, "json")
    with run_context(run_id="20250501T093012Z-ab12", target="prod-a"), run_context(step="select"):
        log.info(
            "listed %d jobs", 3, extra={"request_id": "r-1", "route": "POST /x", "status": 200}
        )
    log.warning("outside any run")

    inside, outside = _lines(capsys)
    assert re.fullmatch(TIMESTAMP, inside.pop("ts"))
    assert inside == {
        "level": "INFO",
        "logger": "engine.test_logs",
        "message": "listed 3 jobs",
        "run_id": "20250501T093012Z-ab12",
        "target": "prod-a",
        "step": "select",
        "request_id": "r-1",
        "route": "POST /x",
        "status": 200,
    }
    assert set(outside) == {"ts", "level", "logger", "message"}  # the context ended


def test_a_secret_in_an_extra_field_the_message_or_a_traceback_is_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "sk-" + secrets.token_hex(12)
    keep_secret(secret)
    for log_format in ("json", "text"):
        configure_logging(0, log_format)
        with run_context(target=f"t-{secret}"):
            log.warning("answer %s", secret, extra={"request_id": f"id-{secret}"})
        try:
            raise ValueError(f"server said {secret}")
        except ValueError:
            log.exception("failed")
        err = capsys.readouterr().err
        assert secret not in err, log_format
        # text shows the message and the traceback; json the extra fields too
        assert err.count(REDACTED) == (4 if log_format == "json" else 2), log_format
        if log_format == "json":
            first, second = (json.loads(line) for line in err.splitlines())
            assert first["request_id"] == f"id-{REDACTED}"
            assert first["target"] == f"t-{REDACTED}"
            assert first["message"] == f"answer {REDACTED}"
            assert f"ValueError: server said {REDACTED}" in second["exc"]


def test_a_text_line_opens_with_a_utc_timestamp_in_milliseconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(1, "text")
    log.info("hello")
    line = capsys.readouterr().err
    assert re.fullmatch(TIMESTAMP + r" INFO engine\.test_logs: hello\n", line)


async def test_tasks_started_in_a_context_log_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(1, "json")

    async def one(n: int) -> None:
        log.info("task %d", n)

    with run_context(run_id="r"):
        async with asyncio.TaskGroup() as group:
            for n in range(3):
                group.create_task(one(n))
    lines = _lines(capsys)
    assert sorted(line["message"] for line in lines) == ["task 0", "task 1", "task 2"]
    assert all(line["run_id"] == "r" for line in lines)


def _formatter() -> logging.Formatter | None:
    return logging.getLogger().handlers[0].formatter


@pytest.mark.parametrize(
    ("args", "env", "formatter"),
    [
        (["--log-format", "json", "validate", str(INCIDENT)], {}, JsonFormatter),
        (["validate", str(INCIDENT), "--log-format", "json", "-v"], {}, JsonFormatter),
        (["validate", str(INCIDENT)], {"RUNBOOK_LOG_FORMAT": "json"}, JsonFormatter),
        # after the subcommand wins over the environment and over before it
        (["validate", str(INCIDENT), "--log-format", "text"], {"RUNBOOK_LOG_FORMAT": "json"},
         TextFormatter),
        (["--log-format", "json", "validate", str(INCIDENT), "--log-format", "text"], {},
         TextFormatter),
        (["validate", str(INCIDENT)], {}, TextFormatter),
    ],
)  # fmt: skip
def test_log_format_is_taken_before_or_after_the_subcommand_and_from_the_environment(
    args: list[str], env: dict[str, str], formatter: type[logging.Formatter]
) -> None:
    result = CliRunner(env=env).invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert type(_formatter()) is formatter


def test_log_format_after_the_subcommand_keeps_the_verbosity_before_it() -> None:
    result = CliRunner().invoke(cli, ["-vv", "validate", str(INCIDENT), "--log-format", "json"])
    assert result.exit_code == 0, result.output
    assert logging.getLogger("engine").level == logging.DEBUG
    assert type(_formatter()) is JsonFormatter


def test_an_unknown_log_format_in_the_environment_is_a_usage_error() -> None:
    result = CliRunner(env={"RUNBOOK_LOG_FORMAT": "xml"}).invoke(cli, ["validate", str(INCIDENT)])
    assert result.exit_code == 2
    assert "Invalid value for '--log-format': 'xml'" in result.output
