"""`validate` and `lint` for CI tools: SARIF 2.1.0, GitHub annotations, GitLab Code Quality.

The SARIF output is checked against the official schema, vendored in tests/vendor/sarif/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.actions.catalog import CATALOG
from engine.cli import main
from engine.errors import Diagnostic, Location, RunbookInvalidError
from engine.rules import Level, Rule
from engine.runbook import bind_params, load_runbook
from engine.runbook.ci_diagnostics import (
    diagnostics_github,
    diagnostics_gitlab,
    diagnostics_sarif,
)

TESTS = Path(__file__).parent.parent
INVALID = sorted((TESTS / "unit" / "invalid").glob("*.yaml"))
EXAMPLES = sorted((TESTS.parent / "runbooks").glob("*.yaml"))
SARIF_SCHEMA = json.loads((TESTS / "vendor" / "sarif" / "sarif-schema-2.1.0.json").read_text())
DOCS = TESTS.parent / "docs" / "ci.md"
GITHUB_LINE = re.compile(
    r"::(?P<level>error|warning) file=(?P<file>[^,:\r\n]+),line=(?P<line>\d+),"
    r"col=(?P<col>\d+),title=(?P<title>[a-z-]+)::(?P<message>[^\r\n]+)"
)

# Every lint rule fires on it: a selection of everything, a retry without max_jobs, a verify
# without a timeout, and a last retry nothing verifies.
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
IN_CLEAR = RISKY.replace(
    "    region: cn-north-4\n", "    region: cn-north-4\n    endpoint: http://drs.example.net\n"
)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
    except SystemExit as exited:
        code = exited.code
    else:
        code = 0
    out, err = capsys.readouterr()
    assert isinstance(code, int)
    return code, out, err


def sarif_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, err = cli([*args, "--format", "sarif"], capsys)
    assert err == ""  # no "FILE: ok" lines outside the text format
    log = json.loads(out)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    return code, log


def json_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    _, out, _ = cli([*args, "--format", "json"], capsys)
    problems: list[dict[str, Any]] = json.loads(out)
    return problems


@pytest.fixture
def risky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``risky.yaml`` in the current directory (a fresh one)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "risky.yaml"
    path.write_text(RISKY)
    return path


# ----------------------------------------------------------------------------- rules


def test_every_rule_is_made_by_the_engine(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The invalid corpus, a runbook every lint rule fires on, an endpoint in clear and a bad
    # --param between them produce every rule there is: none is dead, none is missing.
    made = {p["rule"] for p in json_of(["validate", *map(str, INVALID)], capsys)}
    made |= {p["rule"] for p in json_of(["lint", str(risky)], capsys)}
    in_clear = risky.with_name("in-clear.yaml")
    in_clear.write_text(IN_CLEAR)
    made |= {p["rule"] for p in json_of(["validate", str(in_clear)], capsys)}
    with pytest.raises(RunbookInvalidError) as raised:
        bind_params(load_runbook(EXAMPLES[0], CATALOG), {"no_such_param": "1"})
    made |= {str(d.rule) for d in raised.value.diagnostics}
    assert made == {str(rule) for rule in Rule}


@pytest.mark.parametrize(
    ("fixture", "rules"),
    [
        ("not_utf8", {"file-unreadable"}),
        ("syntax_error", {"yaml-syntax"}),
        ("tabs", {"yaml-syntax"}),
        ("duplicate_yaml_key", {"yaml-unsupported"}),
        ("alias", {"yaml-unsupported"}),
        ("unsupported_tag", {"yaml-unsupported"}),
        ("empty", {"schema"}),
        ("wrong_type_batch_size", {"schema"}),
        ("expr_unterminated", {"expression-syntax"}),
        ("unknown_reference_step", {"reference"}),
        ("forward_reference", {"reference"}),
        ("when_not_boolean", {"type"}),
        ("expression_in_target", {"misplaced-expression"}),
        ("duplicate_target", {"duplicate"}),
        ("zero_rate", {"schema"}),
        ("infinite_timeout", {"value"}),
        ("param_default_not_in_enum", {"value"}),
    ],
)
def test_a_diagnostic_names_the_rule_of_its_kind(
    fixture: str, rules: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = TESTS / "unit" / "invalid" / f"{fixture}.yaml"
    assert {p["rule"] for p in json_of(["validate", str(path)], capsys)} == rules


def test_lint_warnings_name_lint_rules(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warnings = json_of(["lint", str(risky)], capsys)
    assert [(w["line"], w["rule"], w["severity"]) for w in warnings] == [
        (7, "unnarrowed-selection", "warning"),
        (9, "no-max-jobs", "warning"),
        (13, "verify-without-timeout", "warning"),
        (17, "unverified-mutation", "warning"),
    ]


def test_every_rule_is_documented_under_its_id_as_the_engine_says_it() -> None:
    # docs/ci.md has a heading per rule, in order (the section a SARIF rule's help names), and says
    # the rule's level, summary and help there (with some words in backticks).
    sections = re.split(r"^#### `([a-z-]+)`$", DOCS.read_text(), flags=re.MULTILINE)[1:]
    documented = dict(zip(sections[::2], sections[1::2], strict=True))
    assert list(documented) == [str(rule) for rule in Rule]
    for rule in Rule:
        plain = re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", documented[rule]).replace("`", "")
        words = " ".join(plain.split())
        kind = "error" if rule.level is Level.ERROR else "warning (lint)"
        assert words.startswith(f"*{kind}*: {rule.summary}. "), rule
        help_text = rule.help.replace("docs/runbook-language.md", "runbook-language.md")
        assert words.endswith(help_text.replace("`", "")), rule


def test_rule_ids_are_kebab_case_and_levels_are_errors_or_lint_warnings() -> None:
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", rule) for rule in Rule)
    warnings = {r for r in Rule if r.level is Level.WARNING}
    assert warnings == {
        Rule.UNVERIFIED_MUTATION,
        Rule.VERIFY_WITHOUT_TIMEOUT,
        Rule.UNNARROWED_SELECTION,
        Rule.NO_MAX_JOBS,
    }


# ----------------------------------------------------------------------------- SARIF


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_sarif_of_an_invalid_runbook_is_valid_sarif_with_every_diagnostic(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, log = sarif_of(["validate", str(path)], capsys)
    problems = json_of(["validate", str(path)], capsys)
    assert code == 2
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert len(results) == len(problems) >= 1
    for result, problem in zip(results, problems, strict=True):
        assert result["ruleId"] == problem["rule"] == rules[result["ruleIndex"]]["id"]
        assert (
            result["level"]
            == "error"
            == rules[result["ruleIndex"]]["defaultConfiguration"]["level"]
        )
        assert result["message"]["text"].startswith(problem["message"])
        (location,) = result["locations"]
        region = location["physicalLocation"]["region"]
        assert (region["startLine"], region["startColumn"]) == (problem["line"], problem["col"])


def test_sarif_of_lint_warnings_is_valid_and_the_exit_codes_stay(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, log = sarif_of(["lint", str(risky)], capsys)
    assert code == 0
    assert [r["level"] for r in log["runs"][0]["results"]] == ["warning"] * 4
    assert sarif_of(["lint", "--strict", str(risky)], capsys)[0] == 1
    code, log = sarif_of(["validate", "--lint", str(risky)], capsys)
    assert code == 0
    assert len(log["runs"][0]["results"]) == 4
    code, log = sarif_of(["validate", str(risky)], capsys)
    assert code == 0
    assert log["runs"][0]["results"] == []


def test_sarif_driver_names_the_tool_and_describes_every_rule(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, log = sarif_of(["lint", str(risky)], capsys)
    assert log["version"] == "2.1.0"
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "drs-runbook"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", driver["version"])
    assert [rule["id"] for rule in driver["rules"]] == [str(rule) for rule in Rule]
    for described, rule in zip(driver["rules"], Rule, strict=True):
        assert described["shortDescription"]["text"] == rule.summary
        assert described["help"]["text"].startswith(rule.help)
        assert described["defaultConfiguration"]["level"] == rule.level


def test_sarif_is_the_same_on_every_run(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = cli(["lint", str(risky), "--format", "sarif"], capsys)
    again = cli(["lint", str(risky), "--format", "sarif"], capsys)
    assert first == again
    assert "Time" not in first[1]  # no startTimeUtc / endTimeUtc: the log diffs


def test_sarif_uri_is_relative_under_the_current_directory_else_an_absolute_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = tmp_path / "run books" / "a#1.yaml"
    outside = tmp_path.parent / "elsewhere.yaml"
    monkeypatch.chdir(tmp_path)
    diagnostics = [
        Diagnostic(location=Location(path=str(p), line=2, col=3), message="m", rule=Rule.SCHEMA)
        for p in (inside, Path("run books/a#1.yaml"), outside)
    ]
    log = json.loads(diagnostics_sarif(diagnostics, root=Path.cwd(), version="1.2.3"))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    artifacts = [
        r["locations"][0]["physicalLocation"]["artifactLocation"] for r in log["runs"][0]["results"]
    ]
    relative = {"uri": "run%20books/a%231.yaml", "uriBaseId": "%SRCROOT%"}
    assert artifacts == [relative, relative, {"uri": outside.as_uri()}]


def test_sarif_rules_name_their_section_of_the_docs_and_link_no_invented_url() -> None:
    here = Location(path="rb.yaml", line=1, col=1)
    diagnostics = [Diagnostic(location=here, message="m", rule=Rule.DUPLICATE)]
    bare = json.loads(diagnostics_sarif(diagnostics, root=Path.cwd(), version="1.0.0"))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(bare)
    driver = bare["runs"][0]["tool"]["driver"]
    assert "informationUri" not in driver
    assert all("helpUri" not in rule for rule in driver["rules"])
    headings = re.findall(r"^#### `([a-z-]+)`$", DOCS.read_text(), flags=re.MULTILINE)
    for described, rule in zip(driver["rules"], Rule, strict=True):
        assert described["help"]["text"] == (
            f"{rule.help} Documented in docs/ci.md, section {rule} (rules: engine/rules.py)."
        )
        assert str(rule) in headings  # the section it names is there
    # A home page the package declares is linked, and only that.
    linked = json.loads(
        diagnostics_sarif(
            diagnostics,
            root=Path.cwd(),
            version="1.0.0",
            information_uri="https://git.example.org/ops/drs-runbook",
        )
    )
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(linked)
    driver = linked["runs"][0]["tool"]["driver"]
    assert driver["informationUri"] == "https://git.example.org/ops/drs-runbook"
    assert all("helpUri" not in rule for rule in driver["rules"])


# ----------------------------------------------------------------------------- GitHub


def test_github_format_is_one_annotation_line_per_diagnostic(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(TESTS.parent)
    args = ["validate", *map(str, INVALID)]
    problems = json_of(args, capsys)
    code, out, err = cli([*args, "--format", "github"], capsys)
    assert code == 2
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == len(problems)
    for line, problem in zip(lines, problems, strict=True):
        written = GITHUB_LINE.fullmatch(line)
        assert written, line
        assert written["level"] == "error"
        assert written["title"] == problem["rule"]
        assert (int(written["line"]), int(written["col"])) == (problem["line"], problem["col"])
        assert written["file"] == Path(problem["path"]).relative_to(TESTS.parent).as_posix()


def test_github_format_warns_for_lint_and_keeps_the_exit_code(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(["lint", str(risky), "--format", "github"], capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "::warning file=risky.yaml,line=7,col=5,title=unnarrowed-selection::step 'select'"
        " (drs.select_jobs): no statuses, name or engine_type: selects every failed or paused"
        " job (hint: narrow the selection, such as name: orders-*)"
    )
    assert cli(["lint", "--strict", str(risky), "--format", "github"], capsys)[0] == 1
    assert cli(["validate", str(risky), "--format", "github"], capsys)[1:] == ("", "")


def test_github_format_escapes_properties_and_messages() -> None:
    where = Location(path="/srv/a,b:c%d.yaml", line=4, col=2)
    diagnostic = Diagnostic(
        location=where,
        message="100% wrong:\r\nsecond line, still: one",
        rule=Rule.YAML_SYNTAX,
        hint="fix, it",
    )
    (line,) = diagnostics_github([diagnostic], root=Path("/elsewhere")).splitlines()
    assert line == (
        "::error file=/srv/a%2Cb%3Ac%25d.yaml,line=4,col=2,title=yaml-syntax"
        "::100%25 wrong:%0D%0Asecond line, still: one (hint: fix, it)"
    )


# ----------------------------------------------------------------------------- GitLab


def test_gitlab_format_is_a_code_quality_report_with_unique_fingerprints(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invalid = [str(p) for p in INVALID]  # outside the current directory: absolute paths
    code, out, err = cli(["validate", *invalid, "--format", "gitlab"], capsys)
    assert code == 2
    assert err == ""
    issues = json.loads(out)
    problems = json_of(["validate", *invalid], capsys)
    assert len(issues) == len(problems)
    for issue, problem in zip(issues, problems, strict=True):
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["check_name"] == problem["rule"]
        assert issue["severity"] == "major"
        assert issue["description"].startswith(problem["message"])
        assert issue["location"] == {"path": problem["path"], "lines": {"begin": problem["line"]}}
        assert re.fullmatch(r"[0-9a-f]{64}", issue["fingerprint"])
    assert len({issue["fingerprint"] for issue in issues}) == len(issues)
    _, out, _ = cli(["lint", str(risky), "--format", "gitlab"], capsys)
    assert {issue["severity"] for issue in json.loads(out)} == {"minor"}


def test_gitlab_fingerprint_survives_a_moved_line_and_repeats_stay_unique() -> None:
    def at(line: int) -> Diagnostic:
        where = Location(path="rb.yaml", line=line, col=1)
        return Diagnostic(location=where, message="same", rule=Rule.SCHEMA)

    moved = [i["fingerprint"] for i in json.loads(diagnostics_gitlab([at(3)], root=Path.cwd()))]
    twice = [
        i["fingerprint"] for i in json.loads(diagnostics_gitlab([at(5), at(9)], root=Path.cwd()))
    ]
    assert moved[0] == twice[0]
    assert twice[0] != twice[1]


def test_valid_runbooks_give_empty_reports_in_every_tool_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = [str(p) for p in EXAMPLES]
    assert cli(["validate", *files, "--format", "github"], capsys) == (0, "", "")
    assert cli(["validate", *files, "--format", "gitlab"], capsys) == (0, "[]\n", "")
    code, log = sarif_of(["validate", *files], capsys)
    assert (code, log["runs"][0]["results"]) == (0, [])
    code, _, err = cli(["validate", *files], capsys)
    assert (code, err.splitlines()) == (0, [f"{f}: ok" for f in files])
