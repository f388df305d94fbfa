"""Invalid runbooks: every problem as a whole ``FILE:LINE:COL: message`` line, in source order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.actions.catalog import CATALOG as ENGINE_CATALOG
from engine.actions.catalog import CATALOG as OUTPUT_TYPES
from engine.actions.catalog import MUTATING as MUTATING_CATALOG
from engine.actions.registry import REGISTRY
from engine.errors import EXIT_USAGE, Diagnostic, Location, RunbookInvalidError
from engine.rules import Rule
from engine.runbook import (
    diagnostics_json,
    lint,
    load_runbook,
    render_diagnostics,
    schema_text,
)
from engine.runbook.model import PAUSE_ACTION
from engine.runbook.schema import load_schema, schema_actions

INVALID = Path(__file__).parent / "invalid"
EXAMPLE = Path(__file__).parents[2] / "runbooks" / "retry-failed-jobs.yaml"

CATALOG = {
    "drs.select_jobs": {"jobs": "list[string]", "skipped": "list[string]", "count": "integer"},
    "drs.batch_retry": {"accepted": "list[string]", "rejected": "list[string]"},
    "drs.verify_status": {
        "recovered": "list[string]",
        "failed": "list[string]",
        "timed_out": "list[string]",
        "lagging": "list[string]",
        "flapping": "list[string]",
        "recovered_ratio": "number",
        "rto_p50_s": "number",
        "rto_p95_s": "number",
        "rto_max_s": "number",
        "drill_rto_p95_s": "number",
        "delay_max_s": "number",
    },
    "drs.pause_jobs": {"paused": "list[string]", "rejected": "list[string]"},
    "sleep": {"slept_s": "number"},
    "approve": {"approved": "boolean"},
    "assert": {"passed": "boolean"},
}
MUTATING = {name: spec.mutating for name, spec in REGISTRY.items()}

# fixture name -> the diagnostic lines after "FILE:"
EXPECTED: dict[str, list[str]] = {
    "alias": [
        "12:12: yaml aliases are not allowed in runbooks, got *sel (hint: write the value"
        " out in full)",
    ],
    "and_not_boolean": [
        "11:34: step 'retry' (drs.batch_retry): when: 'and' needs boolean operands, got integer",
    ],
    "bad_duration": [
        "16:14: step 'verify' (drs.verify_status): timeout: expected a duration greater than"
        " zero, such as 250ms, 90s, 10min or 1h30m, or a number of seconds, got '10 minutes'",
    ],
    "bad_on_failure": [
        "11:17: step 'retry' (drs.batch_retry): on_failure: expected one of abort, continue,"
        " got 'ignore'",
    ],
    "bad_project_id": [
        "4:17: targets[0]: project_id: expected a project id of 32 lowercase hexadecimal"
        " characters, got '0F3C-1A9E'",
    ],
    "bad_rate": [
        "3:13: rate_limit: expected a rate greater than zero, such as 20/s, 300/m or 1/h, got"
        " '20/sec'",
    ],
    "bad_status": [
        "10:41: step 'select' (drs.select_jobs): with.statuses[1]: unknown value"
        " 'INCRE_TRANSFER_FAILD' (hint: did you mean 'INCRE_TRANSFER_FAILED'?)",
    ],
    "batch_size_zero": [
        "13:19: step 'retry' (drs.batch_retry): with.batch_size: must be >= 1, got 0",
    ],
    "chained_comparison": [
        "11:38: step 'retry' (drs.batch_retry): when: invalid expression: comparisons cannot"
        " be chained: '<' after '<' (hint: combine them with 'and')",
    ],
    "comments_only": [
        "1:1: runbook is empty",
    ],
    "duplicate_step_id": [
        "9:9: duplicate step id 'select' (first defined at line 7)",
        "18:23: step 'verify' (drs.verify_status): with.jobs: unknown step 'retry'",
    ],
    "rollback_problems": [
        "12:23: step 'retry' (drs.batch_retry): with.jobs: step 'undo' is defined after this step",
        "14:9: duplicate step id 'select' (first defined at line 7)",
        "15:13: rollback step 'select': a rollback runs unattended and cannot ask for approval"
        " (hint: put the approve step in steps:)",
        "19:29: rollback step 'undo' (drs.batch_retry): with.jobs: step 'retry' (drs.batch_retry)"
        " has no output 'acepted'; outputs: accepted, rejected (hint: did you mean 'accepted'?)",
        "20:19: rollback step 'undo' (drs.batch_retry): with.batch_size: 'ten' is not of type"
        " 'integer'",
    ],
    "duplicate_target": [
        "6:17: targets[1]: duplicate project_id '0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b' (first"
        " defined at line 4)",
    ],
    "duplicate_yaml_key": [
        "3:1: duplicate key 'name' (first defined at line 2)",
    ],
    "empty": [
        "1:1: runbook is empty",
    ],
    "env_bad_name": [
        "3:7: env[0]: expected an environment variable name of uppercase letters, digits and"
        " _, got 'home'",
    ],
    "env_not_allowed": [
        "11:29: step 'select' (drs.select_jobs): with.name: env 'STAGE' is not allowed"
        " (hint: did you mean 'STAGE_NAME'?)",
    ],
    "expr_compare_list": [
        "11:33: step 'retry' (drs.batch_retry): when: cannot compare list[string] with"
        " integer (hint: use length(...) to compare a list's size)",
    ],
    "expr_number_for_integer": [
        "17:19: step 'retry' (drs.batch_retry): with.batch_size: ${{ params.size }} is"
        " number, expected integer",
    ],
    "expr_unexpected_character": [
        "13:34: step 'retry' (drs.batch_retry): when: invalid expression: unexpected"
        " character '=' (hint: use '==' to compare)",
    ],
    "expr_unknown_function": [
        "11:15: step 'retry' (drs.batch_retry): when: unknown function 'lenght'; functions:"
        " contains, endsWith, filter, format, join, length, startsWith (hint: did you mean"
        " 'length'?)",
    ],
    "expr_unknown_namespace": [
        "12:17: step 'retry' (drs.batch_retry): with.jobs: unknown name 'step.select.jobs';"
        " names start with params., target., steps. or env. (hint: did you mean 'steps'?)",
    ],
    "expr_unknown_param": [
        "17:30: step 'retry' (drs.batch_retry): with.batch_size: unknown param 'batch_sise';"
        " params: batch_size (hint: did you mean 'batch_size'?)",
    ],
    "expr_unterminated": [
        "12:13: step 'retry' (drs.batch_retry): with.jobs: invalid expression: unterminated"
        " expression: missing '}}'",
    ],
    "expression_in_target": [
        "9:11: targets[0]: name: expressions are only allowed in a step's with: and when:",
    ],
    "format_missing_argument": [
        "14:24: step 'select' (drs.select_jobs): with.name: format(): {1} has no argument (1"
        " given)",
    ],
    "forward_reference": [
        "12:23: step 'retry' (drs.batch_retry): with.jobs: step 'verify' is defined after"
        " this step",
    ],
    "infinite_timeout": [
        "16:14: step 'verify' (drs.verify_status): timeout: expected a finite number, got .inf",
    ],
    "interpolate_list": [
        "14:18: step 'select' (drs.select_jobs): with.name: cannot interpolate list[string]"
        " into a string (hint: use join(list, ', ') or make the expression the whole value)",
    ],
    "invalid_expression": [
        "12:17: step 'retry' (drs.batch_retry): with.jobs: expected steps.<id>.<output>, got"
        " steps.select",
    ],
    "jobs_from_count": [
        "12:13: step 'retry' (drs.batch_retry): with.jobs: ${{ steps.select.count }} is"
        " integer, expected list[string]",
    ],
    "many_problems": [
        "3:14: concurrency: must be >= 1, got 0",
        "4:11: language: expected one of en-us, zh-cn, got 'fr-fr'",
        "7:13: targets[0]: region: expected a region such as cn-north-4 or ap-southeast-1,"
        " got 'north'",
        "14:23: step 'retry' (drs.batch_retry): with.jobs: unknown step 'selct' (hint: did"
        " you mean 'select'?)",
        "15:19: step 'retry' (drs.batch_retry): with.batch_size: must be <= 100, got 101",
        "16:7: step 'retry' (drs.batch_retry): unknown key 'batch_sise' (hint: did you mean"
        " 'batch_size'?)",
        "22:22: step 'verify' (drs.verify_status): with.poll_interval: must be > 0, got -1",
    ],
    "max_jobs_zero": [
        "3:11: max_jobs: must be >= 1, got 0",
    ],
    "missing_jobs": [
        "18:7: step 'verify' (drs.verify_status): 'with.jobs' is a required property",
    ],
    "missing_steps": [
        "1:1: 'steps' is a required property",
    ],
    "non_string_key": [
        "2:1: mapping keys must be strings, got 1 (an integer in YAML) (hint: quote the key: '1')",
        "3:1: mapping keys must be strings, got on (a boolean in YAML) (hint: quote the key: 'on')",
    ],
    "notify_inline_url": [
        "4:5: 'notify[0].url_env' is a required property",
        "4:10: notify[0].url: a webhook URL is a secret and is never written in a runbook: put"
        " it in an environment variable and name that variable with url_env",
        "5:14: notify[1].url_env: expected the name of the environment variable that holds the"
        " webhook URL (uppercase letters, digits and _), not the URL itself",
        "7:14: notify[2].events[0]: expected one of approval, stopped, finished, got 'aproval'"
        " (hint: did you mean 'approval'?)",
        "8:13: notify[2].format: expected one of json, slack, feishu, dingtalk, got 'teams'",
    ],
    "not_utf8": [
        "2:7: runbook is not UTF-8 text: byte 0xff",
    ],
    "param_bad_duration_default": [
        "6:14: params.deadline.default: expected a duration such as 250ms, 90s, 10min or 1h30m,"
        " or a number of seconds, got '10 minutes'",
    ],
    "param_bad_name": [
        "4:3: params: expected a param name of lowercase letters, digits and _, starting"
        " with a letter, got 'BatchSize'",
    ],
    "param_default_not_in_enum": [
        "7:14: params.stage.default: 'test' is not one of 'dev', 'prod'",
    ],
    "param_default_wrong_type": [
        "6:14: params.batch_size.default: 'ten' is not of type 'integer'",
    ],
    "param_items_on_scalar": [
        "5:5: params.stage: 'items' is only for params of type array",
    ],
    "param_required_with_default": [
        "7:5: params.stage: a required param cannot have a default (hint: drop 'default' or"
        " 'required: true')",
    ],
    "param_unknown_type": [
        "5:11: params.batch_size.type: expected one of string, integer, number, boolean,"
        " array, duration, got 'int' (hint: did you mean 'integer'?)",
    ],
    "reference_outside_jobs": [
        "10:24: step 'select' (drs.select_jobs): with.name: step 'retry' is defined after"
        " this step",
        "11:20: step 'select' (drs.select_jobs): with.db_use_type: expected one of"
        " migration, sync, cloudDataGuard, got 'mysql'",
    ],
    "retries_out_of_range": [
        "12:21: step 'retry' (drs.batch_retry): retries.max_attempts: must be <= 10, got 11",
        "13:16: step 'retry' (drs.batch_retry): retries.backoff: expected a duration such as"
        " 250ms, 90s, 10min or 1h30m, or a number of seconds, got '2 seconds'",
    ],
    "self_reference": [
        "18:23: step 'verify' (drs.verify_status): with.jobs: step 'verify' cannot use its"
        " own outputs",
    ],
    "step_level_typo": [
        "14:5: step 'retry' (drs.batch_retry): unknown key 'batch_size' (hint: 'batch_size'"
        " is a parameter of drs.batch_retry: move it under 'with:')",
    ],
    "syntax_error": [
        "3:8: invalid yaml: expected ',' or ']', but got ':'",
    ],
    "tabs": [
        "5:1: tab character in indentation (hint: indent with spaces)",
    ],
    "target_unknown_field": [
        "10:24: step 'select' (drs.select_jobs): with.name: target has no field 'zone';"
        " fields: endpoint, name, project_id, region",
    ],
    "target_without_region": [
        "4:5: targets[0]: a target needs 'region' or 'endpoint' (or both)",
    ],
    "top_level_list": [
        "1:1: runbook must be a mapping (version, name, targets, steps), got a list",
    ],
    "typo_with_key": [
        "13:7: step 'retry' (drs.batch_retry): unknown key 'batch_sise' (hint: did you mean"
        " 'batch_size'?)",
    ],
    "unknown_action": [
        "10:13: step 'retry': unknown action 'drs.batch_rety' (hint: did you mean"
        " 'drs.batch_retry'?)",
    ],
    "zero_durations": [
        "11:14: step 'verify' (drs.verify_status): timeout: expected a duration greater than"
        " zero, such as 250ms, 90s, 10min or 1h30m, or a number of seconds, got '0s'",
        "14:22: step 'verify' (drs.verify_status): with.poll_interval: must be > 0, got 0",
    ],
    "unknown_output": [
        "12:30: step 'retry' (drs.batch_retry): with.jobs: step 'select' (drs.select_jobs)"
        " has no output 'job'; outputs: count, jobs, skipped (hint: did you mean 'jobs'?)",
    ],
    "unknown_reference_step": [
        "18:23: step 'verify' (drs.verify_status): with.jobs: unknown step 'rety' (hint: did"
        " you mean 'retry'?)",
    ],
    "unknown_top_key": [
        "1:1: 'steps' is a required property",
        "6:1: unknown key 'stpes' (hint: did you mean 'steps'?)",
    ],
    "unsupported_tag": [
        "2:7: unsupported yaml tag '!!python/object:os.system'",
    ],
    "unsupported_version": [
        "1:10: version: expected version 1, the only runbook format this engine reads",
    ],
    "when_interpolated": [
        "11:11: step 'retry' (drs.batch_retry): when: expected one boolean expression ${{"
        " ... }}, not text around expressions",
    ],
    "when_not_boolean": [
        "11:11: step 'retry' (drs.batch_retry): when: ${{ steps.select.count }} is integer,"
        " expected boolean",
    ],
    "pause_sample_zero": [
        "16:15: step 'pause' (drs.pause_jobs): with.sample: must be >= 1, got 0",
        "17:19: step 'pause' (drs.pause_jobs): with.pause_mode: expected one of target, all,"
        " got 'replay'",
    ],
    "pause_without_jobs": [
        "10:7: step 'pause' (drs.pause_jobs): 'with.jobs' is a required property",
        "10:7: step 'pause' (drs.pause_jobs): 'with.pause_mode' is a required property",
    ],
    "sleep_bad_duration": [
        "10:17: step 'wait' (sleep): with.duration: expected a duration such as 250ms, 90s,"
        " 10min or 1h30m, or a number of seconds, got '2 minutes'",
        "11:7: step 'wait' (sleep): unknown key 'seconds'",
    ],
    "assert_not_boolean": [
        "15:13: step 'check' (assert): with.that: ${{ steps.verify.rto_p95_s }} is number,"
        " expected boolean",
        "19:13: step 'check_text' (assert): with.that: expected a boolean expression ${{ ... }}",
        "23:30: step 'check_output' (assert): with.that: step 'verify' (drs.verify_status) has"
        " no output 'rto_p99_s'; outputs: delay_max_s, drill_rto_p95_s, failed, flapping,"
        " lagging, recovered, recovered_ratio, rto_max_s, rto_p50_s, rto_p95_s, timed_out"
        " (hint: did you mean 'rto_p95_s'?)",
    ],
    "wrong_type_batch_size": [
        "13:19: step 'retry' (drs.batch_retry): with.batch_size: 'ten' is not of type 'integer'",
    ],
    "stop_when_problems": [
        "6:12: stop_when[1].count: must be >= 1, got 0",
        "7:5: stop_when[2]: an error_code condition needs 'count': how many answers with that"
        " code stop the run",
        "8:5: stop_when[3]: a stop condition is one of file, error_code (with count),"
        " failed_again or lagging (with above); write each as an entry of its own",
        "11:5: stop_when[4]: a stop condition needs one of file, error_code (with count),"
        " failed_again or lagging (with above)",
        "13:12: stop_when[5].above: expected a duration such as 250ms, 90s, 10min or 1h30m, or"
        " a number of seconds, got '5x'",
        "14:17: stop_when[6].error_code: expected an error code such as DRS.M01504 or"
        " APIGW.0308, got 'busy'",
    ],
    "zero_rate": [
        "3:13: rate_limit: expected a rate greater than zero, such as 20/s, 300/m or 1/h, got"
        " '0/s'",
    ],
    "zero_rates": [
        "3:13: rate_limit: expected a rate greater than zero, such as 20/s, 300/m or 1/h, got"
        " '0.0/m'",
        "5:56: accounts.prod.rate_limit: expected a rate greater than zero, such as 20/s, 300/m"
        " or 1/h, got '00/h'",
    ],
    "non_finite_numbers": [
        "3:18: max_error_ratio: expected a finite number, got .nan",
        "12:14: step 'retry' (drs.batch_retry): timeout: expected a duration greater than zero,"
        " such as 250ms, 90s, 10min or 1h30m, or a number of seconds, got '1e999'",
        "18:14: step 'verify' (drs.verify_status): timeout: expected a finite number, got .inf",
        "21:22: step 'verify' (drs.verify_status): with.poll_interval: expected a finite number,"
        " got .nan",
        "22:18: step 'verify' (drs.verify_status): with.max_delay: must be >= 0, got -.inf",
    ],
}


def problems(path: Path) -> list[str]:
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(path, CATALOG)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.format_message().splitlines()


def test_every_fixture_has_expected_diagnostics() -> None:
    assert sorted(p.stem for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 45


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


def test_an_escape_of_half_a_surrogate_pair_is_refused_where_it_is_written(tmp_path: Path) -> None:
    """PyYAML reads "\\ud800" as a lone surrogate (libyaml refuses it), which no report or
    journal could then write; a pair written as two escapes gets the one escape as its hint."""
    path = tmp_path / "rb.yaml"
    text = (
        (INVALID / "unknown_action.yaml").read_text().replace("drs.batch_rety", "drs.batch_retry")
    )
    text = text.replace("name: retry-failed-jobs", 'name: "orders \\uD800x"')
    text = text.replace(
        "    action: drs.select_jobs", '    action: drs.select_jobs\n    "\\udfff": 1'
    )
    path.write_text(
        text.replace("batch_size: 10", 'batch_size: 10\n      note: "ok \\ud83d\\ude00"')
    )
    assert problems(path) == [
        f"{path}:2:15: invalid yaml: \\ud800 is half of a UTF-16 surrogate pair, not a character"
        " (hint: write the character itself, or escape a whole code point (\\u00e9, \\U0001F600))",
        f"{path}:9:6: invalid yaml: \\udfff is half of a UTF-16 surrogate pair, not a character"
        " (hint: write the character itself, or escape a whole code point (\\u00e9, \\U0001F600))",
        f"{path}:15:17: invalid yaml: \\ud83d is half of a UTF-16 surrogate pair, not a character"
        " (hint: write the pair as one escape, \\U0001F600, or the character itself)",
    ]


def test_untyped_catalog_still_checks_names() -> None:
    """A catalog of output names only leaves the types to run time."""
    untyped = {action: frozenset(outputs) for action, outputs in ENGINE_CATALOG.items()}
    path = INVALID / "unknown_output.yaml"
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(path, untyped)
    assert caught.value.format_message() == f"{path}:{EXPECTED['unknown_output'][0]}"
    runbook = load_runbook(INVALID / "jobs_from_count.yaml", untyped)
    assert runbook.steps[1].with_["jobs"].static_type == "any"


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


def test_example_runbook_is_valid() -> None:
    load_runbook(EXAMPLE, CATALOG)


# ----------------------------------------------------------------------------- rendering


def test_render_shows_the_line_a_caret_under_the_column_and_the_hint() -> None:
    path = INVALID / "many_problems.yaml"
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(path, CATALOG)
    rendered = render_diagnostics(caught.value.diagnostics[3:4])
    assert rendered.splitlines() == [
        f"{path}:14:23: step 'retry' (drs.batch_retry): with.jobs: unknown step 'selct'",
        "        jobs: ${{ steps.selct.jobs }}",
        " " * 24 + "^",
        "  hint: did you mean 'select'?",
    ]


def test_render_reads_the_line_from_the_file_when_the_diagnostic_has_none(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text("a: 1\n\tb: 2\n")
    where = Location(path=str(path), line=2, col=3)
    diagnostic = Diagnostic(location=where, message="bad", rule=Rule.SCHEMA)
    assert render_diagnostics([diagnostic]) == f"{path}:2:3: bad\n  \tb: 2\n  \t ^"


def test_render_marks_warnings_and_colors_only_on_request() -> None:
    here = Location(path="/nonexistent/rb.yaml", line=1, col=1)
    warning = Diagnostic(location=here, message="risky", rule=Rule.NO_MAX_JOBS)
    assert warning.severity == "warning"
    assert render_diagnostics([warning]) == "/nonexistent/rb.yaml:1:1: warning: risky"
    assert "\033[" in render_diagnostics([warning], color=True)
    assert str(warning) == "/nonexistent/rb.yaml:1:1: risky"  # the one-line form is unchanged


def test_diagnostics_json_shape() -> None:
    here = Location(path="rb.yaml", line=3, col=7)
    diagnostics = [
        Diagnostic(location=here, message="bad", rule=Rule.REFERENCE, hint="fix it"),
        Diagnostic(location=here, message="risky", rule=Rule.VERIFY_WITHOUT_TIMEOUT),
    ]
    assert json.loads(diagnostics_json(diagnostics)) == [
        {
            "path": "rb.yaml",
            "line": 3,
            "col": 7,
            "severity": "error",
            "rule": "reference",
            "message": "bad",
            "hint": "fix it",
        },
        {
            "path": "rb.yaml",
            "line": 3,
            "col": 7,
            "severity": "warning",
            "rule": "verify-without-timeout",
            "message": "risky",
            "hint": None,
        },
    ]


# ----------------------------------------------------------------------------- lint

RISKY = """\
version: 1
name: risky
targets:
  - project_id: 0f3c1a9e2b7d4c5e8a6b1d2c3e4f5a6b
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
  - id: verify
    action: drs.verify_status
    with:
      jobs: ${{ steps.retry.accepted }}
  - id: again
    action: drs.batch_retry
    with:
      jobs: ${{ steps.verify.failed }}
"""


def test_lint_warns_at_each_risky_step(tmp_path: Path) -> None:
    path = tmp_path / "risky.yaml"
    path.write_text(RISKY)
    warnings = lint(load_runbook(path, CATALOG), MUTATING)
    assert all(w.severity == "warning" for w in warnings)
    assert [str(w) for w in warnings] == [
        f"{path}:7:5: step 'select' (drs.select_jobs): no statuses, name or engine_type:"
        " selects every failed or paused job (hint: narrow the selection, such as name: orders-*)",
        f"{path}:9:5: step 'retry' (drs.batch_retry): changes jobs, but the runbook sets no"
        " max_jobs (hint: set max_jobs: at the top level to cap how many jobs one run may act on)",
        f"{path}:13:5: step 'verify' (drs.verify_status): no explicit timeout: verification"
        " waits up to the default 600s (hint: set timeout: to how long recovery may take,"
        " such as 10m)",
        f"{path}:17:5: step 'again' (drs.batch_retry): changes jobs, but no later"
        " drs.verify_status step checks that they recover"
        " (hint: add a drs.verify_status step after it)",
    ]


def test_lint_is_quiet_about_a_careful_runbook(tmp_path: Path) -> None:
    text = RISKY.replace("steps:\n", "max_jobs: 50\nsteps:\n").split("  - id: again")[0]
    text = text.replace(
        "    action: drs.select_jobs\n",
        "    action: drs.select_jobs\n    with:\n      name: orders-*\n",
    )
    text = text.replace(
        "    action: drs.verify_status\n", "    action: drs.verify_status\n    timeout: 10m\n"
    )
    path = tmp_path / "careful.yaml"
    path.write_text(text)
    assert lint(load_runbook(path, CATALOG), MUTATING) == []


# ----------------------------------------------------------------------------- schema


def test_schema_actions_are_the_catalog_actions() -> None:
    assert schema_actions() == set(ENGINE_CATALOG) == set(CATALOG) == set(REGISTRY)


def test_the_import_light_catalog_says_what_each_action_defines() -> None:
    # validate reads the catalog so as not to import the actions: it must not drift from them.
    for name, action in REGISTRY.items():
        assert action.name == name
        assert ENGINE_CATALOG[name] == action.output_types(), name
        assert MUTATING_CATALOG[name] is action.mutating, name
        # An output that may be absent (None when the step gives none) is absent when it
        # did not run; every other one is there for later steps to read.
        optional = {f.name for f in dataclasses.fields(action.outputs) if f.default is None}
        assert set(action.empty_outputs()) == set(action.output_types()) - optional, name
    assert {name: dict(types) for name, types in OUTPUT_TYPES.items()} == CATALOG
    # What makes a runbook a drill by default, spelt out in the model: the pausing action.
    assert REGISTRY[PAUSE_ACTION].mutating


def test_schema_text_is_the_schema() -> None:
    assert json.loads(schema_text()) == load_schema()
    assert load_schema()["$comment"]


def test_schema_is_closed_documented_and_has_examples() -> None:
    """additionalProperties: false on every object; a description on every property, and
    examples on every property whose value a user writes (not lists of nested objects)."""
    no_examples = {"targets", "steps", "with"}

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for name, prop in node.get("properties", {}).items():
                assert "description" in prop, f"{where}.{name}"
                if name not in no_examples:
                    assert prop.get("examples"), f"{where}.{name}"
            for key, value in node.items():
                if key not in (
                    "if",
                    "then",
                    "else",
                ):  # conditions name properties described elsewhere
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(load_schema(), "schema")


def test_a_status_that_names_a_group_is_told_the_groups_members(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(
        "version: 1\nname: x\n"
        "targets: [{project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10, region: cn-north-4}]\n"
        "steps:\n  - id: s\n    action: drs.select_jobs\n"
        "    with: {statuses: [FAILED, paused, INCRE_FAILED]}\n"
    )
    found = problems(path)
    assert len(found) == 3
    assert (
        "hint: the failed statuses are CHANGE_JOB_FAILED, CHILD_TRANSFER_FAILED, CREATE_FAILED, "
        "FULL_TRANSFER_FAILED, INCRE_TRANSFER_FAILED, NODE_UPGRADE_FAILED, REBUILD_NODE_FAILED, "
        "RELEASE_RESOURCE_FAILED, START_JOB_FAILED"
    ) in found[0]
    assert "hint: the paused statuses are PAUSING" in found[1]
    assert "hint: did you mean 'CREATE_FAILED'?" in found[2]  # a typo: the nearest name
