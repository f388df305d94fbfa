"""Durations: the parser and the runbook schema accept the same words, and mean the same time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.cli import main
from engine.schema_files import schema_path
from engine.units import parse_duration

ACCEPTED = {
    "250ms": 0.25,
    "90s": 90.0,
    "1.5s": 1.5,
    "10m": 600.0,
    "10min": 600.0,
    "2h": 7200.0,
    "1h30m": 5400.0,
    "1h30min": 5400.0,
    "1m30s": 90.0,
    "2h0m5s": 7205.0,
    "1s500ms": 1.5,
    "0s": 0.0,
}
REFUSED = ["", "s", "10", "10 minutes", "30m1h", "1h1h", "10mins", "1.s", "-5s", "1 h", "5sec"]


def _schema_pattern(name: str) -> re.Pattern[str]:
    schema = json.loads(schema_path("runbook.schema.json").read_text(encoding="utf-8"))
    return re.compile(schema["$defs"][name]["pattern"])


@pytest.mark.parametrize(("text", "seconds"), ACCEPTED.items())
def test_a_duration_with_units_largest_first_is_its_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert _schema_pattern("duration").search(text), f"the schema refuses {text!r}"


@pytest.mark.parametrize("text", REFUSED)
def test_parser_and_schema_refuse_the_same_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 250ms, 90s, 10min or 1h30m"):
        parse_duration(text)
    assert _schema_pattern("duration").search(text) is None, f"the schema accepts {text!r}"


@pytest.mark.parametrize(("text", "positive"), [("0s", False), ("0h30m", True), ("0.0s", False)])
def test_positive_durations_are_the_non_zero_ones(text: str, positive: bool) -> None:
    assert (_schema_pattern("positive_duration").search(text) is not None) is positive
    assert (parse_duration(text) > 0) is positive


RUNBOOK = """\
version: 1
name: long-waits
targets:
  - project_id: 0123456789abcdef0123456789abcdef
    region: ap-southeast-1
steps:
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
  - id: verify
    action: drs.verify_status
    timeout: 1h30m
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 10min
"""


def test_a_runbook_may_say_10min_and_1h30m(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(path)])
    _, err = capsys.readouterr()
    assert exited.value.code == 0, err
    assert f"{path}: ok" in err
