"""Log lines: --log-format text|json, timestamps, the run's context, and redaction in both."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import cli, configure_logging, main, say
from engine.errors import UsageError
from engine.logs import JsonFormatter, TextFormatter, run_context
from engine.redact import REDACTED, keep_secret
from engine.session import _as_run

INCIDENT = Path(__file__).resolve().parents[2] / "runbooks" / "incident-retry.yaml"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
log = logging.getLogger("engine.test_logs")


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


# --------------------------------------------------------------- what the command says


def _main(args: list[str]) -> int:
    """``runbook ARGS`` in-process; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    code = exited.value.code
    return code if isinstance(code, int) else 1


def test_what_the_command_says_is_its_bare_text_in_text_and_a_record_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(0, "text")  # -v not given: the command's words are shown all the same
    say("wrote out.md", file="out.md")
    say("two\nlines", text="  indented\n  as shown")
    assert capsys.readouterr().err == "wrote out.md\n  indented\n  as shown\n"

    configure_logging(0, "json")
    with run_context(run_id="r-1"):
        say("wrote out.md", file="out.md")
    say("two\nlines", text="  indented\n  as shown")
    first, second = _lines(capsys)
    assert re.fullmatch(TIMESTAMP, first.pop("ts"))
    assert first == {
        "level": "INFO",
        "logger": "engine.cli",
        "message": "wrote out.md",
        "run_id": "r-1",
        "file": "out.md",
    }
    assert second["message"] == "two\nlines"  # one line of JSON all the same
    assert "text_line" not in second


def test_what_the_command_says_is_redacted_in_both_formats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "tok-" + secrets.token_hex(12)
    keep_secret(secret)
    for log_format in ("text", "json"):
        configure_logging(0, log_format)
        say(f"server said {secret}", detail=f"x{secret}")
        err = capsys.readouterr().err
        assert secret not in err, log_format
        assert REDACTED in err, log_format


def test_an_opentelemetry_traceback_is_cut_to_its_last_line_unless_vv(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exporter = logging.getLogger("opentelemetry.sdk.trace.export")
    for log_format in ("text", "json"):
        configure_logging(0, log_format)
        try:
            raise ConnectionError("connection refused")
        except ConnectionError:
            exporter.exception("Exception while exporting Span.")
            log.exception("an engine bug")  # the engine's own keep their stack
        err = capsys.readouterr().err
        sdk, engine = err.split("\n", 1)
        assert "Exception while exporting Span. (ConnectionError: connection refused)" in sdk
        assert "Traceback" in engine, log_format
        if log_format == "json":
            assert "exc" not in json.loads(sdk)
        assert err.count("Traceback") == 1, log_format
    configure_logging(2, "json")
    try:
        raise ConnectionError("connection refused")
    except ConnectionError:
        exporter.exception("Exception while exporting Span.")
    [record] = _lines(capsys)
    assert "Traceback" in record["exc"]


def test_usage_errors_and_engine_errors_are_records_in_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _main(["--log-format", "json", "run", str(INCIDENT), "--max-jobs", "x"]) == 2
    [usage] = _lines(capsys)
    assert usage["level"] == "ERROR"
    assert usage["message"] == "Invalid value for '--max-jobs': 'x' is not a valid integer range."

    # after the subcommand, it is read before the options beside it
    assert _main(["run", str(INCIDENT), "--max-jobs", "x", "--log-format", "json"]) == 2
    assert [r["message"] for r in _lines(capsys)] == [usage["message"]]

    assert _main(["--log-format", "json", "no-such-command"]) == 2
    [unknown] = _lines(capsys)
    assert unknown["message"] == "No such command 'no-such-command'."

    monkeypatch.setenv("RUNBOOK_LOG_FORMAT", "json")  # before the command line is read
    assert _main(["--bogus"]) == 2
    [bogus] = _lines(capsys)
    assert bogus["message"].startswith("No such option '--bogus'")

    def refused(*args: object) -> None:
        error = UsageError("cannot write the journal")
        error.run_id = "20250501T093012Z-ab12"  # as engine.session leaves it on the way out
        raise error

    monkeypatch.setattr("engine.cli.checking.load_runbook", refused)
    assert _main(["validate", str(INCIDENT)]) == 2
    [engine] = _lines(capsys)
    assert engine["message"] == "runbook: cannot write the journal"
    assert engine["run_id"] == "20250501T093012Z-ab12"


def test_in_text_errors_read_as_click_and_the_engine_word_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _main(["run", str(INCIDENT), "--max-jobs", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: ")
    assert err.endswith(
        "\n\nError: Invalid value for '--max-jobs': 'x' is not a valid integer range.\n"
    )


def test_diagnostics_are_one_record_each_with_their_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: x\ntargets: []\nsteps: []\n", encoding="utf-8")
    assert _main(["run", str(broken), "--emulator", "--log-format", "json"]) == 2
    records = _lines(capsys)
    assert records
    for record in records:
        assert record["level"] == "ERROR"
        assert record["file"] == str(broken)
        assert record["message"].startswith(f"{broken}:{record['line']}:{record['col']}: ")
        assert record["severity"] == "error"
        assert record["rule"]
    assert {r["line"] for r in records} == {3, 4}

    assert _main(["run", str(broken), "--emulator"]) == 2
    text = capsys.readouterr().err
    assert f"{broken}:3:10: targets: must not be empty\n  targets: []\n           ^\n" in text


def test_a_crash_is_its_traceback_in_text_and_a_critical_record_in_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("engine.cli.checking.load_runbook", crash)
    assert _main(["validate", str(INCIDENT)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("RuntimeError: a bug\n")

    assert _main(["--log-format", "json", "validate", str(INCIDENT)]) == 1
    [record] = _lines(capsys)
    assert (record["level"], record["message"]) == (
        "CRITICAL",
        "runbook crashed: RuntimeError: a bug",
    )
    assert record["exc"].startswith("Traceback (most recent call last):")


def test_an_engine_error_leaving_a_run_names_it() -> None:
    with pytest.raises(UsageError) as raised, _as_run("20250501T093012Z-ab12"):
        raise UsageError("the accounts' projects changed")
    assert raised.value.run_id == "20250501T093012Z-ab12"


def test_python_warnings_are_lines_of_the_log_format_too() -> None:
    probe = (
        "import warnings\n"
        "from engine.cli import configure_logging\n"
        "configure_logging(0, 'json')\n"
        "warnings.warn('careful', UserWarning)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    [record] = [json.loads(line) for line in done.stderr.splitlines()]
    assert (record["level"], record["logger"]) == ("WARNING", "py.warnings")
    assert "UserWarning: careful" in record["message"]
