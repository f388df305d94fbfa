"""Valid runbooks load into the model; expressions and durations; no input crashes the loader."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actions.catalog import CATALOG as OUTPUT_TYPES
from engine.api.types import Language
from engine.errors import Location, RunbookInvalidError
from engine.runbook import (
    Expression,
    Runbook,
    Scope,
    Step,
    StepRetries,
    StopKind,
    Target,
    load_runbook,
    parse,
    resolve,
)
from engine.runbook.parse import read_yaml
from engine.units import parse_duration, parse_rate

CATALOG = OUTPUT_TYPES

VALID = """\
# yaml-language-server: $schema=../schemas/runbook.schema.json
version: 1
name: retry-failed-jobs
description: Retry failed and resume paused DRS jobs, then verify.
concurrency: 3
language: zh-cn
targets:
  - project_id: 0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b
    region: cn-north-4
    name: orders-prod
  - project_id: 1a2b3c4d5e6f708192a3b4c5d6e7f809
    endpoint: https://drs.internal.example:8443
steps:
  - id: select
    name: Select failed jobs
    action: drs.select_jobs
    with:
      db_use_type: [migration, sync, cloudDataGuard]
      statuses: [INCRE_TRANSFER_FAILED, FULL_TRANSFER_FAILED, PAUSING]
      name: "orders-*"
      engine_type: mysql
      retryable_only: true
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 10
      is_sync_re_edit: false
  - id: verify
    action: drs.verify_status
    timeout: 10m
    with:
      jobs: ${{steps.retry.accepted}}
      poll_interval: 5s
"""

MINIMAL = """\
version: 1
name: minimal
targets:
  - project_id: 0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b
    region: cn-north-4
steps:
  - id: verify
    action: drs.verify_status
    timeout: 90
    with:
      jobs: [job-1, job-2]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_runbook_loads_into_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    runbook = load_runbook(path, CATALOG)

    def at(line: int, col: int) -> Location:
        return Location(path=str(path), line=line, col=col)

    assert runbook == Runbook(
        path=str(path),
        version=1,
        name="retry-failed-jobs",
        description="Retry failed and resume paused DRS jobs, then verify.",
        concurrency=3,
        language="zh-cn",
        targets=(
            Target(
                project_id="0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b",
                region="cn-north-4",
                endpoint=None,
                name="orders-prod",
                location=at(8, 5),
            ),
            Target(
                project_id="1a2b3c4d5e6f708192a3b4c5d6e7f809",
                region=None,
                endpoint="https://drs.internal.example:8443",
                name=None,
                location=at(11, 5),
            ),
        ),
        steps=(
            Step(
                id="select",
                name="Select failed jobs",
                action="drs.select_jobs",
                with_={
                    "db_use_type": ["migration", "sync", "cloudDataGuard"],
                    "statuses": ["INCRE_TRANSFER_FAILED", "FULL_TRANSFER_FAILED", "PAUSING"],
                    "name": "orders-*",
                    "engine_type": "mysql",
                    "retryable_only": True,
                },
                timeout_s=None,
                location=at(14, 5),
            ),
            Step(
                id="retry",
                name=None,
                action="drs.batch_retry",
                with_={
                    "jobs": runbook.steps[1].with_["jobs"],
                    "batch_size": 10,
                    "is_sync_re_edit": False,
                },
                timeout_s=None,
                location=at(23, 5),
            ),
            Step(
                id="verify",
                name=None,
                action="drs.verify_status",
                with_={
                    "jobs": runbook.steps[2].with_["jobs"],
                    "poll_interval": "5s",
                },
                timeout_s=600.0,
                location=at(29, 5),
            ),
        ),
    )
    assert [t.label for t in runbook.targets] == ["orders-prod", "1a2b3c4d5e6f708192a3b4c5d6e7f809"]
    expressions = [runbook.steps[1].with_["jobs"], runbook.steps[2].with_["jobs"]]
    assert all(isinstance(e, Expression) for e in expressions)
    assert [(e.text, e.location, e.static_type, e.whole) for e in expressions] == [
        ("${{ steps.select.jobs }}", at(26, 13), "list[string]", True),
        ("${{steps.retry.accepted}}", at(33, 13), "list[string]", True),
    ]


def test_defaults_are_filled_in_the_model_but_not_in_with(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, MINIMAL), CATALOG)
    assert runbook.concurrency == 8
    assert runbook.concurrency_per_target == 2
    assert runbook.language == "en-us"
    assert Language.EN_US.value == runbook.language  # the model spells the wire value out
    assert runbook.description is None
    [step] = runbook.steps
    assert dict(step.with_) == {"jobs": ["job-1", "job-2"]}
    assert step.timeout_s == 90.0


def test_model_is_frozen_and_hashable(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, MINIMAL), CATALOG)
    with pytest.raises(AttributeError):
        runbook.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        runbook.steps[0].with_["jobs"] = []  # type: ignore[index]
    assert len({*runbook.targets, *runbook.steps}) == 2


def test_source_map_locates_values_and_keys(tmp_path: Path) -> None:
    parsed = read_yaml(write(tmp_path, VALID))
    assert parsed.data["steps"][1]["with"]["batch_size"] == 10
    value = parsed.source.value(("steps", 1, "with", "batch_size"))
    key = parsed.source.key(("steps", 1, "with", "batch_size"))
    assert (value.line, value.col, key.line, key.col) == (27, 19, 27, 7)
    # a path the file does not have falls back to its nearest ancestor
    assert parsed.source.value(("steps", 1, "with", "absent")) == parsed.source.value(
        ("steps", 1, "with")
    )


def test_timestamps_stay_strings(tmp_path: Path) -> None:
    parsed = read_yaml(write(tmp_path, "name: 2024-01-01\nat: 2024-01-01T10:00:00Z\n"))
    assert parsed.data == {"name": "2024-01-01", "at": "2024-01-01T10:00:00Z"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("250ms", 0.25),
        ("2h", 7200.0),
        ("1.5m", 90.0),
        ("0s", 0.0),
        (30, 30.0),
        (0.2, 0.2),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration(value: int | float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "10", "10 m", "-1s", "1d", "s", "1e3s", -1, math.inf, math.nan, True]
)
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="expected a"):
        parse_duration(value)


def test_resolve_evaluates_nested_expressions_and_leaves_the_rest(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, VALID), CATALOG)
    scope = Scope(
        params={},
        target={"project_id": "p", "region": None, "name": "p", "endpoint": None},
        steps={"select": {"jobs": ["j1", "j2"], "count": 2}, "retry": {"accepted": ["j1"]}},
        env={},
    )
    value = {"nested": [{"n": runbook.steps[1].with_["jobs"]}], "text": "plain", "n": 1}
    assert resolve(value, scope) == {"nested": [{"n": ["j1", "j2"]}], "text": "plain", "n": 1}
    assert resolve(runbook.steps[2].with_, scope) == {"jobs": ["j1"], "poll_interval": "5s"}


def test_step_controls_and_run_limits_load_with_their_defaults(tmp_path: Path) -> None:
    text = VALID.replace(
        "targets:\n",
        "params:\n  min_jobs:\n    type: integer\n    default: 1\n"
        "env: [CHANGE_TICKET]\nrate_limit: 300/m\nmax_jobs: 50\ntargets:\n",
    ).replace(
        "  - id: retry\n    action: drs.batch_retry\n",
        "  - id: retry\n    action: drs.batch_retry\n"
        "    when: ${{ steps.select.count >= params.min_jobs and env.CHANGE_TICKET != '' }}\n"
        "    retries:\n      max_attempts: 3\n      backoff: 2s\n    on_failure: continue\n",
    )
    runbook = load_runbook(write(tmp_path, text), CATALOG)
    assert runbook.rate_limit_per_s == 5.0
    assert runbook.max_jobs == 50
    assert runbook.env == ("CHANGE_TICKET",)
    [param] = runbook.params
    assert (param.name, param.type, param.default, param.required) == (
        "min_jobs",
        "integer",
        1,
        False,
    )
    select, retry, verify = runbook.steps
    assert retry.retries == StepRetries(max_attempts=3, backoff_s=2.0, max_backoff_s=30.0)
    assert retry.on_failure == "continue"
    assert retry.when is not None
    assert retry.when.static_type == "boolean"
    assert (select.when, select.retries, select.on_failure) == (None, StepRetries(), "abort")
    assert verify.retries == StepRetries(max_attempts=1, backoff_s=1.0, max_backoff_s=30.0)


@pytest.mark.parametrize(
    ("value", "per_second"),
    [("20/s", 20.0), ("300/m", 5.0), ("1/h", 1 / 3600), ("0.5/s", 0.5), (" 2 / s ", 2.0)],
)
def test_parse_rate(value: str, per_second: float) -> None:
    assert parse_rate(value) == pytest.approx(per_second)


@pytest.mark.parametrize("value", ["", "20", "20/sec", "0/s", "-1/s", "1/d", "/s", "1e3/s"])
def test_parse_rate_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate(value)


# ----------------------------------------------------------------------------- robustness

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def load_or_invalid(path: Path) -> None:
    try:
        load_runbook(path, CATALOG)
    except RunbookInvalidError as exc:
        diagnostics = exc.diagnostics
    else:
        return
    assert diagnostics
    assert all(d.location.line >= 1 and d.location.col >= 1 for d in diagnostics)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    load_or_invalid(path)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\t\n ,?%@`~.0123$")), max_size=300))
def test_random_yaml_like_text_never_crashes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_invalid(path)


@FUZZ
@given(st.data())
def test_mutated_runbooks_never_crash(tmp_path: Path, data: st.DataObject) -> None:
    lines = VALID.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        mutation = data.draw(st.sampled_from(["drop", "dup", "edit", "swap"]))
        if mutation == "drop":
            del lines[index]
        elif mutation == "dup":
            lines.insert(index, lines[index])
        elif mutation == "swap":
            other = data.draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            at = data.draw(st.integers(0, len(lines[index])))
            insert = data.draw(st.text(max_size=5))
            lines[index] = lines[index][:at] + insert + lines[index][at:]
        if not lines:
            break
    path = tmp_path / "fuzz.yaml"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    load_or_invalid(path)


EXPRESSION_PIECES = [
    "${{", "}}", " ", "steps.select.jobs", "steps.select.count", "params.x", "env.X", "target.zone",
    "'a'", "1", "[", "]", "(", ")", ",", "==", ">", "and", "not", "in", "length(", "format(", "$",
    "{", "}", "'",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(EXPRESSION_PIECES), max_size=20), st.sampled_from(["jobs", "when"]))
def test_random_expressions_in_a_runbook_never_crash(
    tmp_path: Path, pieces: list[str], where: str
) -> None:
    expression = "".join(pieces).replace('"', "")
    line = f'    when: "{expression}"' if where == "when" else f'      jobs: "{expression}"'
    text = VALID.replace("      jobs: ${{ steps.select.jobs }}", line if where == "jobs" else "")
    if where == "when":
        text = text.replace("  - id: retry\n", f"  - id: retry\n{line}\n")
    load_or_invalid(write(tmp_path, text))


def _read_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    def read() -> object:
        try:
            parsed = read_yaml(path)
        except RunbookInvalidError as exc:
            return exc.diagnostics
        return parsed.data, parsed.source.values, parsed.source.keys

    fast = read()
    with monkeypatch.context() as patch:
        patch.setattr(parse, "_LIBYAML", None)
        pure = read()
    return fast, pure


def test_libyaml_and_the_pure_parser_read_every_corpus_file_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libyaml reads runbooks when PyYAML has it; it must yield the very data, locations and
    diagnostics the pure-Python parser does (on an error the pure one speaks for both)."""
    assert parse._LIBYAML is not None, "PyYAML without libyaml: the fast path is not tested"
    repo = Path(__file__).resolve().parents[2]
    files = [
        *sorted((repo / "runbooks").glob("*.yaml")),
        *sorted((repo / "tests" / "unit" / "invalid").glob("*.yaml")),
    ]
    assert len(files) > 50
    for path in files:
        fast, pure = _read_both_ways(path, monkeypatch)
        assert fast == pure, path.name


def test_stop_when_builds_one_condition_per_entry_with_its_place_and_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = MINIMAL.replace(
        "targets:",
        "stop_when:\n"
        "  - file: STOP\n"
        "  - file: ~/halt\n"
        "  - error_code: DRS.M01504\n"
        "    count: 5\n"
        "  - failed_again: 0\n"
        "  - {lagging: 3, above: 5m}\n"
        "targets:",
    )
    runbook = load_runbook(write(tmp_path, text), CATALOG)
    here, home, code, failed, lagging = runbook.stop_when
    assert (here.kind, here.path, here.written) == (
        StopKind.FILE,
        str(tmp_path / "STOP"),
        "file: STOP",
    )
    assert here.where == f"stop_when at {tmp_path / 'runbook.yaml'}:4:5"
    assert home.path == str(tmp_path / "home" / "halt")
    assert (code.kind, code.error_code, code.threshold) == (StopKind.ERROR_CODE, "DRS.M01504", 5)
    assert code.written == "error_code: DRS.M01504, count: 5"
    assert (failed.kind, failed.threshold) == (StopKind.FAILED_AGAIN, 0)
    assert (lagging.kind, lagging.threshold, lagging.above_s) == (StopKind.LAGGING, 3, 300.0)
    assert load_runbook(write(tmp_path, MINIMAL), CATALOG).stop_when == ()
