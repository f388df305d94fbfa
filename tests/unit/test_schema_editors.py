"""The published runbook schema in standard tools (the ``jsonschema`` package, check-jsonschema):
every example passes, typos and bad literals fail, and an expression is taken exactly where the
engine takes one. The schema is generated from the engine's typed source and never stale."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

from engine.actions.catalog import CATALOG
from engine.errors import RunbookInvalidError
from engine.runbook import load_runbook
from engine.runbook import schema_build as build_module
from engine.runbook.parse import JsonPath
from engine.runbook.schema import (
    SCHEMA_FILE,
    expression_paths,
    load_schema,
    load_source,
    schema_path,
    schema_text,
    with_definitions,
)
from engine.runbook.schema_build import build, finite_number_keywords, main, published_text
from engine.schema_files import schema_id

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "runbooks").glob("*.yaml"))
INVALID = Path(__file__).parent / "invalid"
CORPUS = sorted(INVALID.glob("*.yaml"))

# The invalid corpus as a standard tool sees it (the engine refuses every one of them).
# Schema-level: the published schema refuses the file, at these paths (jsonschema's, "/"-joined).
SCHEMA_LEVEL: dict[str, set[str]] = {
    "alias": {"steps/1"},  # the aliased value sits under an unknown key, 'extra'
    "assert_not_boolean": {"steps/2/with/that"},  # text without ${{ }}: neither boolean nor one
    "bad_duration": {"steps/2/timeout"},
    "bad_on_failure": {"steps/1/on_failure"},
    "bad_project_id": {"targets/0/project_id"},
    "notify_inline_url": {
        "notify/0",
        "notify/0/url",
        "notify/1/url_env",
        "notify/2/events/0",
        "notify/2/format",
    },
    "bad_rate": {"rate_limit"},
    "infinite_timeout": {"steps/2/timeout"},  # .inf: above the largest float
    "non_finite_numbers": {  # .nan, 1e999 (inf in YAML 1.2; a string in 1.1), 1.0e+999, -.inf
        "max_error_ratio",
        "steps/1/timeout",
        "steps/2/timeout",
        "steps/2/with/poll_interval",
        "steps/2/with/max_delay",
    },
    "bad_status": {"steps/0/with/statuses"},
    "batch_size_zero": {"steps/1/with/batch_size"},
    "comments_only": {""},
    "empty": {""},
    "env_bad_name": {"env/0"},
    "expr_unterminated": {"steps/1/with/jobs"},  # no closing }}: not an expression string
    "many_problems": {
        "concurrency",
        "language",
        "steps/1/with",
        "steps/1/with/batch_size",
        "steps/2/with/poll_interval",
        "targets/0/region",
    },
    "max_jobs_zero": {"max_jobs"},
    "missing_jobs": {"steps/2/with"},
    "missing_steps": {""},
    "non_string_key": {""},
    "param_bad_duration_default": {"params/deadline/default"},
    "param_bad_name": {"params"},
    "param_default_wrong_type": {"params/batch_size/default"},
    "param_items_on_scalar": {"params/stage"},
    "param_unknown_type": {"params/batch_size/type"},
    "pause_sample_zero": {"steps/1/with/pause_mode", "steps/1/with/sample"},
    "pause_without_jobs": {"steps/0/with"},
    "reference_outside_jobs": {"steps/0/with/db_use_type"},
    "retries_out_of_range": {"steps/1/retries/backoff", "steps/1/retries/max_attempts"},
    "rollback_problems": {"rollback/1/with/batch_size"},
    "sleep_bad_duration": {"steps/0/with", "steps/0/with/duration"},
    "step_level_typo": {"steps/1"},
    "stop_when_problems": {
        "stop_when/1/count",
        "stop_when/2",
        "stop_when/3",
        "stop_when/4",
        "stop_when/5/above",
        "stop_when/6/error_code",
    },
    "target_without_region": {"targets/0"},
    "top_level_list": {""},
    "typo_with_key": {"steps/1/with"},
    "unknown_action": {"steps/1/action"},
    "unknown_top_key": {""},
    "unsupported_version": {"version"},
    "wrong_type_batch_size": {"steps/1/with/batch_size"},
    "zero_durations": {"steps/1/timeout", "steps/1/with/poll_interval"},
    "zero_rate": {"rate_limit"},
    "zero_rates": {"rate_limit", "accounts/prod/rate_limit"},
}
# Engine-level: the shape is right; only the engine's own checks refuse them (an expression's
# syntax, names and type; duplicates, references; an expression where nothing evaluates it, such
# as a target's name, which a string field takes as text).
ENGINE_LEVEL = {
    "and_not_boolean",
    "chained_comparison",
    "duplicate_step_id",
    "duplicate_target",
    "duplicate_yaml_key",  # a standard reader keeps one of the values (ruamel.yaml refuses it)
    "env_not_allowed",
    "expr_compare_list",
    "expr_number_for_integer",
    "expr_unexpected_character",
    "expr_unknown_function",
    "expr_unknown_namespace",
    "expr_unknown_param",
    "expression_in_target",
    "format_missing_argument",
    "forward_reference",
    "interpolate_list",
    "invalid_expression",
    "jobs_from_count",
    "param_default_not_in_enum",
    "param_required_with_default",
    "self_reference",
    "target_unknown_field",  # ${{ target.zone }}: no such field
    "unknown_output",
    "unknown_reference_step",
    "when_interpolated",
    "when_not_boolean",
}
# Not YAML that a standard reader reads: no schema is asked.
UNREADABLE = {"not_utf8", "syntax_error", "tabs", "unsupported_tag"}


def _document(path: Path) -> Any:
    return yaml.safe_load(path.read_bytes())


def _published() -> jsonschema.Draft202012Validator:
    """The published schema in jsonschema's standard Draft 2020-12 validator (no engine keyword)."""
    return jsonschema.Draft202012Validator(dict(load_schema()))


def _error_paths(validator: jsonschema.Draft202012Validator, document: Any) -> set[str]:
    return {"/".join(map(str, error.absolute_path)) for error in validator.iter_errors(document)}


def _offline() -> dict[str, str]:
    """The environment for check-jsonschema: a download attempt meets a closed loopback port."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    for name in ("http_proxy", "https_proxy"):
        env[name] = env[name.upper()] = "http://127.0.0.1:9"
    return env


def _check_jsonschema(*files: Path) -> dict[str, Any]:
    """check-jsonschema's JSON verdict on ``files``, offline."""
    command = [sys.executable, "-m", "check_jsonschema", "-o", "json"]
    command += ["--schemafile", str(schema_path()), *map(str, files)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_offline())
    assert done.returncode in (0, 1), done.stderr
    verdict: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) is (verdict["status"] == "ok")
    return verdict


# ----------------------------------------------------------------------------- generated


def test_the_published_schema_is_what_the_generator_writes() -> None:
    assert schema_path().name == SCHEMA_FILE
    assert schema_path().read_text(encoding="utf-8") == published_text(), (
        "schemas/runbook.schema.json is stale: run python -m engine.runbook.schema_build"
    )
    assert schema_text() == published_text()
    assert main(["--check"]) == 0


def test_the_check_mode_fails_on_a_stale_file_and_the_generator_rewrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / SCHEMA_FILE
    target.write_text(published_text().replace('"minimum": 1,', '"minimum": 2,', 1))
    monkeypatch.setattr(build_module, "published_path", lambda: target)
    assert main(["--check"]) == 1
    assert capsys.readouterr().err == (
        f"{target}: stale, not what runbook.source.schema.json gives "
        "(hint: run python -m engine.runbook.schema_build)\n"
    )
    assert main([]) == 0
    assert capsys.readouterr().out == f"{target}: written\n"
    assert target.read_text() == published_text()
    assert main(["--check"]) == 0
    assert main([]) == 0
    assert capsys.readouterr().out == f"{target}: up to date\n"


def test_the_generator_changes_only_values_that_may_be_expressions() -> None:
    source: dict[str, Any] = {
        "$id": "https://example.test/runbook.source.schema.json",
        "type": "object",
        "properties": {
            "max_jobs": {"type": "integer"},
            "steady_state": {"type": "object", "properties": {"ids": {"$ref": "#/$defs/ids"}}},
        },
        "$defs": {
            "ids": {"type": "array", "items": {"enum": ["a", "b"]}},
            "step": {
                "allOf": [
                    {
                        "if": {"properties": {"action": {"const": "go"}}},
                        "then": {"properties": {"with": {"$ref": "#/$defs/go_with"}}},
                    }
                ]
            },
            "go_with": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "n": {"description": "how many", "type": "integer", "default": 1},
                    "label": {"type": "string", "minLength": 1},
                    "tags": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
        },
    }
    untouched = copy.deepcopy(source)
    published = build(source)
    assert source == untouched
    expression = {"$ref": "#/$defs/expression"}
    assert published["$id"] == "urn:drs-runbook:schema:runbook.schema.json"
    assert published["properties"]["max_jobs"] == {"type": "integer"}
    assert published["$defs"]["ids"] == source["$defs"]["ids"]  # still typed where it is used
    go_with = published["$defs"]["go_with"]["properties"]
    assert go_with["n"] == {
        "description": "how many",
        "default": 1,
        "anyOf": [{"type": "integer"}, expression],
    }
    assert go_with["label"] == {"type": "string", "minLength": 1}  # any string is already fine
    assert go_with["tags"]["anyOf"][0]["additionalProperties"] == {
        "anyOf": [{"type": "integer"}, expression]
    }
    assert published["properties"]["steady_state"]["properties"]["ids"] == {
        "anyOf": [{"$ref": "#/$defs/ids_with_expressions"}, expression]
    }
    assert published["$defs"]["ids_with_expressions"]["items"] == {
        "anyOf": [{"enum": ["a", "b"]}, expression]
    }
    validator = jsonschema.Draft202012Validator(published)
    assert validator.is_valid({"steady_state": {"ids": ["a", "${{ params.id }}"]}})
    assert validator.is_valid({"steady_state": {"ids": "${{ params.ids }}"}})
    assert not validator.is_valid({"steady_state": {"ids": ["c"]}})
    assert not validator.is_valid({"max_jobs": "${{ params.n }}"})


def test_the_generator_refuses_values_it_cannot_give_an_expression() -> None:
    source: dict[str, Any] = {
        "$id": "https://example.test/runbook.source.schema.json",
        "properties": {"steady_state": {"type": "object"}},
        "$defs": {
            "step": {
                "allOf": [
                    {
                        "if": {"properties": {"action": {"const": "go"}}},
                        "then": {"properties": {"with": {"$ref": "#/$defs/go_with"}}},
                    }
                ]
            },
            "go_with": {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        },
    }
    with pytest.raises(ValueError, match=r"^\$defs/go_with: values under if, then would take no"):
        build(source)
    source["$defs"]["go_with"] = {"type": "object"}
    source["$defs"]["expression"] = {"type": "string"}
    with pytest.raises(ValueError, match=r"\$defs/expression is the generator's own name"):
        build(source)


def test_expressions_are_offered_only_where_the_engine_evaluates_them() -> None:
    """Every expression alternative is in an action's with: or in steady_state:, never in a
    target, a param, a step's own keys or the top level."""
    allowed = (
        *(f"/$defs/{name}/" for name in with_definitions(load_source()).values()),
        "/properties/steady_state/",
    )

    def walk(node: object, pointer: str) -> Iterator[str]:
        if isinstance(node, dict):
            if {"$ref": "#/$defs/expression"} in node.get("anyOf", []):
                yield pointer
            for key, value in node.items():
                yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{pointer}/{index}")

    found = list(walk(dict(load_schema()), ""))
    assert "/$defs/batch_retry_with/properties/batch_size" in found
    assert "/$defs/select_jobs_with/properties/statuses/anyOf/0/items" in found
    assert "/properties/steady_state/properties/poll_interval" in found
    # the check's own deadline is a step's timeout: literal, as the engine reads it
    assert "/properties/steady_state/properties/timeout" not in found
    assert [pointer for pointer in found if not pointer.startswith(allowed)] == []


def test_an_expression_in_the_steady_states_timeout_is_refused_by_both_not_a_crash(
    tmp_path: Path,
) -> None:
    drill = (REPO / "runbooks" / "dr-drill.yaml").read_text(encoding="utf-8")
    assert drill.count("\n  timeout: 30s\n") == 1
    path = tmp_path / "drill.yaml"
    path.write_text(drill.replace("\n  timeout: 30s\n", "\n  timeout: ${{ params.outage }}\n"))
    assert _error_paths(_published(), _document(path)) == {"steady_state/timeout"}
    with pytest.raises(RunbookInvalidError) as refused:
        load_runbook(path, CATALOG)
    [problem] = refused.value.diagnostics
    assert (problem.location.line, problem.location.col) == (34, 12)
    assert problem.message.startswith("steady_state.timeout: expected a duration")
    # and where it may be, the published schema takes it
    path.write_text(
        drill.replace("\n  poll_interval: 2s\n", "\n  poll_interval: ${{ params.outage }}\n", 1)
    )
    assert _error_paths(_published(), _document(path)) == set()


# ----------------------------------------------------------------------------- examples, corpus


def test_the_published_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(dict(load_schema()))
    assert load_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_valid_under_the_published_schema(path: Path) -> None:
    assert _error_paths(_published(), _document(path)) == set()


def test_the_corpus_is_classified_whole() -> None:
    stems = {path.stem for path in CORPUS}
    assert len(stems) == len(SCHEMA_LEVEL) + len(ENGINE_LEVEL) + len(UNREADABLE)
    assert stems == SCHEMA_LEVEL.keys() | ENGINE_LEVEL | UNREADABLE


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_the_invalid_corpus_fails_the_published_schema_where_its_shape_is_wrong(
    path: Path,
) -> None:
    if path.stem in UNREADABLE:
        with pytest.raises(yaml.YAMLError):
            _document(path)
        return
    assert _error_paths(_published(), _document(path)) == SCHEMA_LEVEL.get(path.stem, set())
    with pytest.raises(RunbookInvalidError):
        load_runbook(path, CATALOG)


def _at(document: Any, at: JsonPath) -> Any:
    for part in at:
        document = document[part]
    return document


@pytest.mark.parametrize("path", [*EXAMPLES, *CORPUS], ids=[p.stem for p in [*EXAMPLES, *CORPUS]])
def test_the_published_schema_refuses_what_the_engines_schema_step_refuses(path: Path) -> None:
    """The engine validates with the typed source and leaves an expression to the type checks;
    the published schema must come to the same verdict, in one standard validator."""
    if path.stem in UNREADABLE:
        return
    document = _document(path)
    pattern = re.compile(load_schema()["$defs"]["expression"]["pattern"])
    expressions = (
        {at for at in expression_paths(document) if pattern.search(_at(document, at))}
        if isinstance(document, dict)
        else set()
    )
    typed = jsonschema.Draft202012Validator(dict(load_source()))
    engine_refuses = any(
        not any(tuple(error.absolute_path)[: len(at)] == at for at in expressions)
        for error in typed.iter_errors(document)
    ) or any(True for _ in _non_finite(document))  # the engine's check step: JSON has no .inf
    assert _published().is_valid(document) is not engine_refuses


def _non_finite(node: object) -> Iterator[float]:
    if isinstance(node, float) and not math.isfinite(node):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _non_finite(value)
    elif isinstance(node, list):
        for value in node:
            yield from _non_finite(value)


def test_check_jsonschema_accepts_every_example_offline() -> None:
    assert len(EXAMPLES) >= 4
    verdict = _check_jsonschema(*EXAMPLES)
    assert verdict == {"status": "ok", "errors": []}


def test_check_jsonschema_sorts_the_corpus_as_the_schema_does() -> None:
    verdict = _check_jsonschema(*CORPUS)
    failed = {Path(error["filename"]).stem for error in verdict["errors"]}
    unparsed = {Path(error["filename"]).stem for error in verdict.get("parse_errors", [])}
    assert failed == SCHEMA_LEVEL.keys()
    assert unparsed == UNREADABLE | {"duplicate_yaml_key"}  # ruamel.yaml refuses duplicates


def test_check_jsonschema_accepts_the_published_schema_as_a_schema() -> None:
    command = [sys.executable, "-m", "check_jsonschema", "--check-metaschema", str(schema_path())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_offline())
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------- one field at a time

RUNBOOK = """\
version: 1
name: editors
max_jobs: 50
params:
  batch_size: {type: integer, default: 10}
  poll: {type: duration, default: 5s}
  statuses: {type: array, default: [INCRE_TRANSFER_FAILED]}
  status: {type: string, default: PAUSING}
targets:
  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    with:
      statuses: [INCRE_TRANSFER_FAILED]
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 10
  - id: verify
    action: drs.verify_status
    timeout: 10m
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 5s
"""

# name -> (a line of RUNBOOK, what it becomes)
REFUSED: dict[str, tuple[str, str]] = {
    "typo_in_with": ("      batch_size: 10", "      batch_sise: 10"),
    "typo_in_a_step": ("    timeout: 10m", "    timout: 10m"),
    "typo_at_the_top": ("max_jobs: 50", "max_job: 50"),
    "max_jobs_ten": ("max_jobs: 50", 'max_jobs: "ten"'),
    "timeout_not_a_duration": ("    timeout: 10m", "    timeout: 5 minutes-ish"),
    "batch_size_ten": ("      batch_size: 10", "      batch_size: ten"),
    "poll_interval_not_a_duration": ("      poll_interval: 5s", "      poll_interval: 5 minutes"),
    "status_misspelt": ("      statuses: [INCRE_TRANSFER_FAILED]", "      statuses: [INCRE_FAILD]"),
    # Where nothing evaluates an expression, the published schema takes none either.
    "expression_in_max_jobs": ("max_jobs: 50", "max_jobs: ${{ params.batch_size }}"),
    "expression_in_a_steps_timeout": ("    timeout: 10m", "    timeout: ${{ params.poll }}"),
    "expression_in_a_default": (
        "  batch_size: {type: integer, default: 10}",
        "  batch_size: {type: integer, default: '${{ params.status }}'}",
    ),
    "expression_in_a_project_id": (
        "  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10",
        "  - project_id: ${{ params.status }}",
    ),
}
ACCEPTED: dict[str, tuple[str, str]] = {
    "as_written": ("max_jobs: 50", "max_jobs: 50"),
    "batch_size_expression": ("      batch_size: 10", "      batch_size: ${{ params.batch_size }}"),
    "poll_interval_expression": (
        "      poll_interval: 5s",
        "      poll_interval: ${{ params.poll }}",
    ),
    "statuses_expression": (
        "      statuses: [INCRE_TRANSFER_FAILED]",
        "      statuses: ${{ params.statuses }}",
    ),
    "one_status_expression": (
        "      statuses: [INCRE_TRANSFER_FAILED]",
        "      statuses: [INCRE_TRANSFER_FAILED, '${{ params.status }}']",
    ),
}


def _variants(tmp_path: Path, cases: Mapping[str, tuple[str, str]]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name, (line, replacement) in cases.items():
        assert RUNBOOK.count(f"\n{line}\n") == 1, name
        path = tmp_path / f"{name}.yaml"
        path.write_text(RUNBOOK.replace(f"\n{line}\n", f"\n{replacement}\n"))
        files[name] = path
    return files


def test_typos_and_bad_literals_fail_and_expressions_in_with_pass(tmp_path: Path) -> None:
    refused, accepted = _variants(tmp_path, REFUSED), _variants(tmp_path, ACCEPTED)
    for name, path in refused.items():
        assert not _published().is_valid(_document(path)), name
        with pytest.raises(RunbookInvalidError):
            load_runbook(path, CATALOG)
    for name, path in accepted.items():
        assert _error_paths(_published(), _document(path)) == set(), name
        load_runbook(path, CATALOG)  # the engine agrees
    verdict = _check_jsonschema(*refused.values(), *accepted.values())
    assert {Path(error["filename"]).stem for error in verdict["errors"]} == refused.keys()
    assert verdict.get("parse_errors", []) == []


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref":
                yield str(value)
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "schemas").glob("*.json")))
def test_a_schemas_id_is_a_name_no_server_answers_for_and_its_refs_are_local(name: str) -> None:
    schema = json.loads((REPO / "schemas" / name).read_text(encoding="utf-8"))
    assert schema["$id"] == schema_id(name) == f"urn:drs-runbook:schema:{name}"
    refs = set(_refs(schema))
    assert all(ref.startswith("#/") for ref in refs), sorted(refs)
    # They resolve against that $id in the registry of a schema alone: nothing is fetched.
    jsonschema.Draft202012Validator.check_schema(schema)
    resource = referencing.Resource.from_contents(schema)
    resolver = referencing.Registry().with_resource(schema["$id"], resource).resolver()
    for ref in sorted(refs):
        found = resolver.lookup(schema["$id"] + ref).contents
        assert isinstance(found, Mapping), ref
        assert found, ref


@pytest.mark.parametrize("literal", [".inf", "-.inf", ".nan", "1e999", "1.0e+999"])
def test_every_number_of_the_published_schema_is_finite(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "ratio.yaml"
    path.write_text(
        RUNBOOK.replace("max_jobs: 50\n", f"max_jobs: 50\nmax_error_ratio: {literal}\n")
    )
    finite = tmp_path / "finite.yaml"
    finite.write_text(RUNBOOK.replace("max_jobs: 50\n", "max_jobs: 50\nmax_error_ratio: 0.25\n"))

    verdict = _check_jsonschema(path, finite)  # ruamel.yaml: YAML 1.2, 1e999 is a float

    assert {(Path(e["filename"]).name, e["path"]) for e in verdict["errors"]} == {
        ("ratio.yaml", "$.max_error_ratio")  # -.inf twice: below 0 and not finite
    }
    with pytest.raises(RunbookInvalidError):
        load_runbook(path, CATALOG)
    load_runbook(finite, CATALOG)


def test_the_generator_bounds_each_number_and_leaves_strings_and_data_alone() -> None:
    source: dict[str, Any] = {
        "$id": "urn:drs-runbook:schema:runbook.source.schema.json",
        "properties": {
            "ratio": {"type": "number", "maximum": 1, "examples": [{"type": "number"}]},
            "wait": {"type": ["number", "string"], "minimum": 0},
            "name": {"type": "string"},
            "steady_state": {"type": "object"},
        },
        "$defs": {"step": {"allOf": []}},
    }
    published = build(source)["properties"]
    guard = finite_number_keywords()["not"]
    assert guard["exclusiveMaximum"] == -sys.float_info.max
    assert published["ratio"] == {
        "type": "number",
        "maximum": 1,  # its own bound, tighter than the largest float
        "examples": [{"type": "number"}],  # data, not a schema
        "not": guard,
    }
    assert published["wait"]["maximum"] == sys.float_info.max
    assert published["wait"]["not"] == guard
    assert published["name"] == {"type": "string"}
    validator = jsonschema.Draft202012Validator({"properties": published})
    for number in (math.inf, -math.inf, math.nan):
        assert not validator.is_valid({"wait": number}), number
    assert validator.is_valid({"wait": 0.5, "ratio": 1})
    assert validator.is_valid({"wait": "90s"})
