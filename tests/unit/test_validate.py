"""Invalid runbooks: every problem as a whole ``FILE:LINE:COL: message`` line, in source order."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import EXIT_USAGE, RunbookInvalidError
from engine.runbook import load_runbook
from engine.runbook.schema import load_schema, schema_actions

INVALID = Path(__file__).parent / "invalid"

CATALOG = {
    "drs.select_jobs": frozenset({"jobs", "skipped", "count"}),
    "drs.batch_retry": frozenset({"accepted", "rejected"}),
    "drs.verify_status": frozenset({"recovered", "failed", "timed_out", "recovered_ratio"}),
}

# fixture name -> the diagnostic lines after "FILE:"
EXPECTED: dict[str, list[str]] = {
    "alias": [
        "12:12: yaml aliases are not allowed in runbooks, got *sel"
        " (hint: write the value out in full)",
    ],
    "bad_duration": [
        "16:14: step 'verify' (drs.verify_status): timeout: expected a duration such as 250ms,"
        " 90s, 10m or 2h, or a number of seconds, got '10 minutes'",
    ],
    "bad_project_id": [
        "4:17: targets[0]: project_id: expected a project id of 32 lowercase hexadecimal"
        " characters, got '0F3C-1A9E'",
    ],
    "bad_status": [
        "10:41: step 'select' (drs.select_jobs): with.statuses[1]: unknown value"
        " 'INCRE_TRANSFER_FAILD' (hint: did you mean 'INCRE_TRANSFER_FAILED'?)",
    ],
    "batch_size_zero": [
        "13:19: step 'retry' (drs.batch_retry): with.batch_size: must be >= 1, got 0",
    ],
    "comments_only": ["1:1: runbook is empty"],
    "duplicate_step_id": [
        "9:9: duplicate step id 'select' (first defined at line 7)",
        "18:13: step 'verify' (drs.verify_status): with.jobs: unknown step 'retry'"
        " in ${{ steps.retry.accepted }}",
    ],
    "duplicate_target": [
        "6:17: targets[1]: duplicate project_id '0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b'"
        " (first defined at line 4)",
    ],
    "duplicate_yaml_key": ["3:1: duplicate key 'name' (first defined at line 2)"],
    "empty": ["1:1: runbook is empty"],
    "forward_reference": [
        "12:13: step 'retry' (drs.batch_retry): with.jobs: step 'verify' is defined after"
        " this step",
    ],
    "infinite_timeout": [
        "16:14: step 'verify' (drs.verify_status): timeout: expected a finite number, got .inf",
    ],
    "invalid_expression": [
        "12:13: step 'retry' (drs.batch_retry): with.jobs: invalid expression"
        " '${{ steps.select }}': expected ${{ steps.<id>.<output> }}",
    ],
    "many_problems": [
        "3:14: concurrency: must be >= 1, got 0",
        "4:11: language: expected one of en-us, zh-cn, got 'fr-fr'",
        "7:13: targets[0]: region: expected a region such as cn-north-4 or ap-southeast-1,"
        " got 'north'",
        "14:13: step 'retry' (drs.batch_retry): with.jobs: unknown step 'selct'"
        " in ${{ steps.selct.jobs }} (hint: did you mean 'select'?)",
        "15:19: step 'retry' (drs.batch_retry): with.batch_size: must be <= 100, got 101",
        "16:7: step 'retry' (drs.batch_retry): unknown key 'batch_sise'"
        " (hint: did you mean 'batch_size'?)",
        "22:22: step 'verify' (drs.verify_status): with.poll_interval: must be >= 0, got -1",
    ],
    "missing_jobs": [
        "18:7: step 'verify' (drs.verify_status): 'with.jobs' is a required property",
    ],
    "missing_steps": ["1:1: 'steps' is a required property"],
    "non_string_key": [
        "2:1: mapping keys must be strings, got 1 (an integer in YAML) (hint: quote the key: '1')",
        "3:1: mapping keys must be strings, got on (a boolean in YAML) (hint: quote the key: 'on')",
    ],
    "not_utf8": ["2:7: runbook is not UTF-8 text: byte 0xff"],
    "reference_outside_jobs": [
        "10:13: step 'select' (drs.select_jobs): with.name: expected a glob; references are"
        " only allowed in jobs, got '${{ steps.retry.accepted }}'",
        "11:20: step 'select' (drs.select_jobs): with.db_use_type: expected one of migration,"
        " sync, cloudDataGuard, got 'mysql'",
    ],
    "self_reference": [
        "18:13: step 'verify' (drs.verify_status): with.jobs: step 'verify' cannot use its own"
        " outputs",
    ],
    "step_level_typo": [
        "14:5: step 'retry' (drs.batch_retry): unknown key 'batch_size'"
        " (hint: 'batch_size' is a parameter of drs.batch_retry: move it under 'with:')",
    ],
    "syntax_error": ["3:8: invalid yaml: expected ',' or ']', but got ':'"],
    "tabs": ["5:1: tab character in indentation (hint: indent with spaces)"],
    "target_without_region": [
        "4:5: targets[0]: a target needs 'region' or 'endpoint' (or both)",
    ],
    "top_level_list": [
        "1:1: runbook must be a mapping (version, name, targets, steps), got a list",
    ],
    "typo_with_key": [
        "13:7: step 'retry' (drs.batch_retry): unknown key 'batch_sise'"
        " (hint: did you mean 'batch_size'?)",
    ],
    "unknown_action": [
        "10:13: step 'retry': unknown action 'drs.batch_rety'"
        " (hint: did you mean 'drs.batch_retry'?)",
    ],
    "unknown_output": [
        "12:13: step 'retry' (drs.batch_retry): with.jobs: step 'select' (drs.select_jobs)"
        " has no output 'job'; outputs: count, jobs, skipped (hint: did you mean 'jobs'?)",
    ],
    "unknown_reference_step": [
        "18:13: step 'verify' (drs.verify_status): with.jobs: unknown step 'rety'"
        " in ${{ steps.rety.accepted }} (hint: did you mean 'retry'?)",
    ],
    "unknown_top_key": [
        "1:1: 'steps' is a required property",
        "6:1: unknown key 'stpes' (hint: did you mean 'steps'?)",
    ],
    "unsupported_tag": ["2:7: unsupported yaml tag '!!python/object:os.system'"],
    "unsupported_version": [
        "1:10: version: expected version 1, the only runbook format this engine reads",
    ],
    "wrong_type_batch_size": [
        "13:19: step 'retry' (drs.batch_retry): with.batch_size: 'ten' is not of type 'integer'",
    ],
}


def problems(path: Path) -> list[str]:
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(path, CATALOG)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.format_message().splitlines()


def test_every_fixture_has_expected_diagnostics() -> None:
    assert sorted(p.stem for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_runbook_reports_every_problem_at_its_node(name: str) -> None:
    path = INVALID / f"{name}.yaml"
    assert problems(path) == [f"{path}:{line}" for line in EXPECTED[name]]


def test_unknown_action_says_nothing_about_its_with(tmp_path: Path) -> None:
    text = (INVALID / "unknown_action.yaml").read_text()
    path = tmp_path / "rb.yaml"
    path.write_text(text.replace("batch_size: 10", "batch_sise: ten\n      jobs2: ${{ x }}"))
    assert problems(path) == [
        f"{path}:10:13: step 'retry': unknown action 'drs.batch_rety'"
        " (hint: did you mean 'drs.batch_retry'?)",
    ]


def test_missing_file_is_a_diagnostic_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert problems(path) == [f"{path}:1:1: cannot read runbook: No such file or directory"]


def test_directory_is_a_diagnostic(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}:1:1: cannot read runbook: Is a directory"]


def test_file_larger_than_one_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n")
    assert problems(path) == [f"{path}:1:1: runbook is larger than 1024 KiB"]


def test_alias_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    [line] = problems(path)
    assert line.startswith(f"{path}:2:8: yaml aliases are not allowed in runbooks, got *a")


def test_deep_nesting_is_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 500_000 + "]" * 500_000 + "\n")  # just under 1 MiB
    assert problems(path) == [f"{path}:1:67: runbook is nested too deeply (more than 64 levels)"]


def test_schema_actions_are_the_catalog_actions() -> None:
    from engine.actions import CATALOG as ENGINE_CATALOG

    assert schema_actions() == set(ENGINE_CATALOG) == set(CATALOG)
    assert dict(ENGINE_CATALOG) == CATALOG


def test_schema_is_closed_and_documented() -> None:
    """additionalProperties: false on every object, and a description on every property."""

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for name, prop in node.get("properties", {}).items():
                assert "description" in prop, f"{where}.{name}"
            for key, value in node.items():
                if key not in ("if", "then"):  # conditions name properties described elsewhere
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(load_schema(), "schema")
