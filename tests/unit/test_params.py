"""Params: declared in the runbook, bound from --param, a params file and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.actions.catalog import CATALOG as OUTPUT_TYPES
from engine.errors import RunbookInvalidError
from engine.runbook import Runbook, bind_params, load_runbook

RUNBOOK = """\
version: 1
name: params
params:
  batch_size:
    type: integer
    default: 10
  stage:
    type: string
    enum: [dev, prod]
    required: true
  ratio:
    type: number
    default: 0.5
  dry:
    type: boolean
    default: false
  deadline:
    type: duration
    default: 10m
  prefixes:
    type: array
    default: [orders]
  sizes:
    type: array
    items:
      type: integer
  note:
    type: string
    description: optional and without default, so null
targets:
  - project_id: 0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    with:
      name: "${{ join(params.prefixes, '') }}-${{ params.stage }}-*"
  - id: retry
    action: drs.batch_retry
    when: ${{ not params.dry and steps.select.count > 0 }}
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: ${{ params.batch_size }}
  - id: verify
    action: drs.verify_status
    timeout: 10m
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: ${{ params.deadline }}
"""


@pytest.fixture
def runbook(tmp_path: Path) -> Runbook:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK)
    return load_runbook(path, OUTPUT_TYPES)


def problems(runbook: Runbook, given: dict[str, str], params_file: Path | None = None) -> list[str]:
    with pytest.raises(RunbookInvalidError) as caught:
        bind_params(runbook, given, params_file)
    assert caught.value.exit_code == 2
    return [str(d).removeprefix(f"{runbook.path}:") for d in caught.value.diagnostics]


def test_params_are_in_the_model(runbook: Runbook) -> None:
    by_name = {p.name: p for p in runbook.params}
    assert list(by_name) == [
        "batch_size",
        "stage",
        "ratio",
        "dry",
        "deadline",
        "prefixes",
        "sizes",
        "note",
    ]
    assert by_name["deadline"].default == 600.0
    assert by_name["stage"].enum == ("dev", "prod")
    assert by_name["sizes"].items_type == "integer"
    assert by_name["sizes"].static_type == "list[integer]"
    assert by_name["note"].description == "optional and without default, so null"
    assert by_name["stage"].location.line == 7


def test_defaults_and_null_for_optional_params(runbook: Runbook) -> None:
    assert bind_params(runbook, {"stage": "dev"}) == {
        "batch_size": 10,
        "stage": "dev",
        "ratio": 0.5,
        "dry": False,
        "deadline": 600.0,
        "prefixes": ["orders"],
        "sizes": None,
        "note": None,
    }


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("batch_size", " 20 ", 20),
        ("ratio", "2", 2.0),
        ("dry", "yes", True),
        ("dry", "0", False),
        ("dry", "TRUE", True),
        ("deadline", "90s", 90.0),
        ("deadline", "30", 30.0),
        ("prefixes", "a, b,c", ["a", "b", "c"]),
        ("prefixes", '["a,b", "c"]', ["a,b", "c"]),
        ("prefixes", "", []),
        ("sizes", "[1, 2]", [1, 2]),
        ("sizes", "3,4", [3, 4]),
        ("note", " keep spaces ", " keep spaces "),
    ],
)
def test_param_text_is_parsed_per_type(
    runbook: Runbook, name: str, text: str, expected: Any
) -> None:
    assert bind_params(runbook, {"stage": "prod", name: text})[name] == expected


def test_precedence_param_over_file_over_default(runbook: Runbook, tmp_path: Path) -> None:
    file = tmp_path / "params.yaml"
    file.write_text("batch_size: 30\nratio: 1\nstage: prod\ndeadline: 2m\nsizes: [5]\n")
    bound = bind_params(runbook, {"batch_size": "40"}, file)
    assert (bound["batch_size"], bound["ratio"], bound["stage"]) == (40, 1.0, "prod")
    assert (bound["deadline"], bound["sizes"], bound["dry"]) == (120.0, [5], False)


def test_json_params_file(runbook: Runbook, tmp_path: Path) -> None:
    file = tmp_path / "params.json"
    file.write_text('{"stage": "dev", "prefixes": ["x", "y"], "dry": true}')
    bound = bind_params(runbook, {}, file)
    assert (bound["prefixes"], bound["dry"]) == (["x", "y"], True)


def test_every_problem_names_the_param(runbook: Runbook) -> None:
    assert problems(runbook, {"batch_size": "ten", "dry": "maybe", "stage": "test"}) == [
        "4:3: param 'batch_size': expected integer, got 'ten' (from --param)",
        "7:3: param 'stage': 'test' is not one of 'dev', 'prod' (from --param)",
        "14:3: param 'dry': expected boolean, got 'maybe' (from --param)",
    ]


def test_missing_required_param(runbook: Runbook) -> None:
    assert problems(runbook, {}) == [
        "7:3: param 'stage' is required (hint: give --param stage=VALUE or set it in a params file)"
    ]


def test_unknown_param_points_at_params_key_with_a_hint(runbook: Runbook) -> None:
    assert problems(runbook, {"stage": "dev", "batch_sise": "1"}) == [
        "3:1: unknown param 'batch_sise' (from --param) (hint: did you mean 'batch_size'?)"
    ]


def test_unknown_param_without_params_key_points_at_line_one(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    text = RUNBOOK.split("params:\n")[0] + "targets:" + RUNBOOK.split("targets:")[1]
    path.write_text(
        text.replace("${{ params.stage }}", "x")
        .replace("${{ join(params.prefixes, '') }}", "y")
        .replace("not params.dry and ", "")
        .replace("${{ params.batch_size }}", "10")
        .replace("${{ params.deadline }}", "5s")
    )
    runbook = load_runbook(path, OUTPUT_TYPES)
    assert problems(runbook, {"foo": "1"}) == [
        "1:1: unknown param 'foo' (from --param) (hint: the runbook declares no params)"
    ]


def test_params_file_problems_point_into_the_file(runbook: Runbook, tmp_path: Path) -> None:
    file = tmp_path / "params.yaml"
    file.write_text("stage: prod\nbatch_size: '10'\nsizes: [1, x]\nstagee: dev\n")
    with pytest.raises(RunbookInvalidError) as caught:
        bind_params(runbook, {}, file)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{file}:2:13: param 'batch_size': expected integer, got '10' (from {file})",
        f"{file}:3:8: param 'sizes': expected list[integer], got [1, \"x\"] (from {file})",
        f"{file}:4:1: unknown param 'stagee' (from params file) (hint: did you mean 'stage'?)",
    ]


def test_a_json_array_param_keeps_an_escaped_pair(runbook: Runbook) -> None:
    bound = bind_params(runbook, {"stage": "dev", "prefixes": '["\\ud83d\\ude00", "b"]'})
    assert bound["prefixes"] == ["\U0001f600", "b"]


def test_params_file_must_be_a_safe_yaml_mapping(runbook: Runbook, tmp_path: Path) -> None:
    file = tmp_path / "params.yaml"
    file.write_text("- stage\n")
    with pytest.raises(RunbookInvalidError) as caught:
        bind_params(runbook, {}, file)
    assert caught.value.format_message() == (
        f"{file}:1:1: params file must be a mapping (param name: value), got a list"
    )
    file.write_text("stage: !!python/object:os.system x\n")
    with pytest.raises(RunbookInvalidError, match="1 problem"):
        bind_params(runbook, {}, file)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("n=1_000", "param 'n': expected integer, got '1_000' (from --param)"),
        ("n=\u0663", "param 'n': expected integer, got '\u0663' (from --param)"),
        ("l=[null, true]", "param 'l': expected list[string], got '[null, true]' (from --param)"),
        ('l=[{"x": 1}]', "param 'l': expected list[string], got '[{\"x\": 1}]' (from --param)"),
        # No report or journal could write a lone surrogate: a byte that is not UTF-8 (what
        # surrogateescape makes of it) or the JSON escape of half a pair is refused.
        (
            "l=caf\udce9",
            "param 'l': the value is not UTF-8 text (byte 0xe9 at character 4) (from --param)",
        ),
        (
            'l=["ok", "\\ud800x"]',
            "param 'l': item 2 escapes \\ud800, half of a UTF-16 surrogate pair, not a "
            "character (from --param)",
        ),
    ],
)
def test_param_text_is_read_strictly(tmp_path: Path, given: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: p\nparams:\n  n: {type: integer, default: 1}\n"
        "  l: {type: array, items: {type: string}, default: []}\ntargets:\n"
        "  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10\n    region: cn-north-4\n"
        "steps:\n  - id: s\n    action: drs.select_jobs\n"
    )
    name, _, value = given.partition("=")
    with pytest.raises(RunbookInvalidError) as caught:
        bind_params(load_runbook(path, OUTPUT_TYPES), {name: value})
    assert [d.message for d in caught.value.diagnostics] == [expected]
