"""Every file the user names is read bounded, and every number has an upper bound (issue 14,
items 4 and 8): what validate accepts, a run can carry out."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from engine.actions.registry import REGISTRY
from engine.actions.spec import DEFAULT_STEP_TIMEOUT_S
from engine.bounded import FileRefusedError, read_file
from engine.cli import main
from engine.errors import Diagnostic, Location, UsageError
from engine.rules import Rule
from engine.run.inputs import GUARD_RAILS, read_credentials_file
from engine.runbook.diagnostics import render_diagnostics
from engine.runbook.params import MAX_GUARD_RAIL, MAX_INTEGER
from engine.runbook.schema import schema_text
from engine.units import MAX_DURATION_S, parse_duration

RUNBOOK = """\
version: 1
name: bounds
max_jobs: {max_jobs}
params:
  batch_size: {{type: integer, default: 10}}
targets:
  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    timeout: {timeout}
"""


def write(tmp_path: Path, *, max_jobs: str = "10", timeout: str = "5m") -> Path:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK.format(max_jobs=max_jobs, timeout=timeout))
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["validate", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exited.value.code or 0), out + err


def run(capsys: pytest.CaptureFixture[str], path: str, *args: str) -> tuple[int, str]:
    """A run whose inputs are refused before anything starts (no emulator, no report)."""
    with pytest.raises(SystemExit) as exited:
        main(["run", path, "--emulator", "--yes", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert not (Path(path).parent / "runbook-reports").exists()
    return int(exited.value.code or 0), out + err


def test_a_valid_runbook_is_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = validate(capsys, str(write(tmp_path)))
    assert code == 0


def test_validate_of_dev_zero_is_one_diagnostic_not_an_endless_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code, out = validate(capsys, "/dev/zero")
    assert code == 2
    assert "/dev/zero:1:1: cannot read runbook: it is a character device" in out
    assert time.monotonic() - started < 5


def test_validate_of_a_fifo_does_not_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "rb.yaml"
    os.mkfifo(fifo)
    code, out = validate(capsys, str(fifo))
    assert code == 2
    assert "it is a FIFO, not a regular file" in out


def test_a_runbook_over_the_cap_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    code, out = validate(capsys, str(path))
    assert code == 2
    assert "runbook is larger than 1024 KiB" in out


def test_diagnostics_read_no_more_than_the_parser(tmp_path: Path) -> None:
    # The source line under a diagnostic comes from a bounded read: a diagnostic naming a
    # device or a huge file renders without its line instead of reading it whole.
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" * (300_000))
    for path in ("/dev/zero", str(big)):
        where = Location(path=path, line=1, col=1)
        problem = Diagnostic(location=where, message="a problem", rule=Rule.SCHEMA)
        rendered = render_diagnostics([problem])
        assert rendered.splitlines()[0] == f"{path}:1:1: a problem"
        assert len(rendered) < 200


def test_read_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(FileRefusedError, match="Is a directory"):
        read_file(tmp_path, limit=10)
    with pytest.raises(FileRefusedError, match="No such file"):
        read_file(tmp_path / "absent", limit=10)
    (tmp_path / "f").write_bytes(b"12345")
    assert read_file(tmp_path / "f", limit=5) == b"12345"
    with pytest.raises(FileRefusedError) as caught:
        read_file(tmp_path / "f", limit=4)
    assert caught.value.oversize


def test_a_params_file_that_is_a_fifo_is_a_diagnostic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    code, out = run(capsys, str(write(tmp_path)), "--params-file", str(fifo))
    assert code == 2
    assert "FIFO" in out


@pytest.mark.parametrize(
    ("max_jobs", "expected"),
    [("1" * 400, "must be <= 1000000, got 1111"), ("1000001", "must be <= 1000000, got 1000001")],
)
def test_max_jobs_has_an_upper_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], max_jobs: str, expected: str
) -> None:
    code, out = validate(capsys, str(write(tmp_path, max_jobs=max_jobs)))
    assert code == 2
    assert f"rb.yaml:3:11: max_jobs: {expected}" in out


@pytest.mark.parametrize("timeout", ["1" + "0" * 40, "1.0e+40", "169h", "604801", "10081m"])
def test_durations_are_at_most_seven_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], timeout: str
) -> None:
    code, out = validate(capsys, str(write(tmp_path, timeout=timeout)))
    assert code == 2
    assert "rb.yaml:12:14: step 'select' (drs.select_jobs): timeout: must be at most 7 days" in out


def test_seven_days_exactly_is_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = validate(capsys, str(write(tmp_path, timeout="168h")))
    assert code == 0


def test_parse_duration_bounds() -> None:
    assert parse_duration("168h") == 7 * 86400
    with pytest.raises(ValueError, match="at most 7 days"):
        parse_duration(7 * 86400 + 1)
    assert parse_duration(10**12, limit_s=None) == 10**12


@pytest.mark.parametrize("value", ["9" * 5000, "9007199254740992", "-9007199254740992"])
def test_integer_params_are_bounded_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    started = time.monotonic()
    code, out = run(capsys, str(write(tmp_path)), "--param", f"batch_size={value}")
    assert code == 2
    assert "expected an integer between -9007199254740991 and 9007199254740991" in out
    assert len(out) < 1000  # the 5,000 digits are not repeated back whole
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("option", ["--max-jobs", "--max-jobs-total", "--max-errors"])
def test_guard_rail_options_are_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(write(tmp_path)), "--emulator", "--yes", option, "1" * 400])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert "Traceback" not in out + err
    assert "1000000" in err
    assert not (tmp_path / "runbook-reports").exists()


def test_a_credentials_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text("token: secret-token-value\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match=r"open to others \(mode 0644\).*chmod 600") as caught:
        read_credentials_file(path)
    assert "secret-token-value" not in str(caught.value)
    path.chmod(0o600)
    assert read_credentials_file(path).token == "secret-token-value"


def test_a_credentials_file_is_read_bounded(tmp_path: Path) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text("token: " + "x" * (64 * 1024) + "\n")
    path.chmod(0o600)
    with pytest.raises(UsageError, match="larger than 64 KiB"):
        read_credentials_file(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UsageError, match="FIFO"):
        read_credentials_file(fifo)


def test_the_schema_bounds_are_the_engines_constants() -> None:
    # One home per bound: the schema must say what the Python code enforces.
    schema = json.loads(schema_text())
    props = schema["properties"]
    for key in GUARD_RAILS:
        assert props[key]["maximum"] == MAX_GUARD_RAIL, key
    text = json.dumps(schema)
    assert f'"maxSeconds": {int(MAX_DURATION_S)}' in text
    assert f'"maximum": {MAX_INTEGER}' in text
    assert f'"minimum": -{MAX_INTEGER}' in text


def test_every_step_has_a_deadline_unless_it_bounds_itself() -> None:
    # select_jobs had none: a slow server held a run for ever (issue 14, item 3).
    timeouts = {name: action.default_timeout_s for name, action in REGISTRY.items()}
    assert timeouts["drs.select_jobs"] == DEFAULT_STEP_TIMEOUT_S == 1800.0
    assert timeouts["drs.verify_status"] == 600.0
    assert timeouts["sleep"] is None  # its own duration, at most 7 days
    unbounded = {name for name, t in timeouts.items() if t is None}
    assert unbounded <= {"sleep", "approve"}  # approve is a gate the executor answers
