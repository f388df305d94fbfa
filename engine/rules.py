"""The rules a runbook diagnostic reports: stable ids for CI tools, with what each one means.

Every :class:`~engine.errors.Diagnostic` names one ``Rule``. The value is the id that SARIF
(``ruleId``), GitHub annotations (``title``) and GitLab Code Quality (``check_name``) show, and
``--format json`` gives as ``rule``; ids are never renamed or reused, so a CI tool can track a
finding across commits. Whether a rule is an error or a lint warning, its one-line summary and
its help are data here (``_MEANINGS``), and every renderer reads them from the member. The
rules are documented in docs/ci.md, one heading each (the heading is the id; a SARIF rule's
help names that section).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    """How bad breaking a rule is: an error makes a runbook invalid (exit 2), a warning is lint."""

    ERROR = "error"
    WARNING = "warning"


class Rule(StrEnum):
    """What kind of problem a diagnostic is; the values are the ids tools show."""

    FILE_UNREADABLE = "file-unreadable"
    YAML_SYNTAX = "yaml-syntax"
    YAML_UNSUPPORTED = "yaml-unsupported"
    SCHEMA = "schema"
    EXPRESSION_SYNTAX = "expression-syntax"
    REFERENCE = "reference"
    TYPE = "type"
    MISPLACED_EXPRESSION = "misplaced-expression"
    DUPLICATE = "duplicate"
    VALUE = "value"
    STRUCTURE = "structure"
    INSECURE_HTTP = "insecure-http"
    PARAM = "param"
    UNVERIFIED_MUTATION = "unverified-mutation"
    VERIFY_WITHOUT_TIMEOUT = "verify-without-timeout"
    UNNARROWED_SELECTION = "unnarrowed-selection"
    NO_MAX_JOBS = "no-max-jobs"

    # Set from ``_MEANINGS`` once the members exist.
    level: Level
    summary: str  # one line: what breaking the rule means
    help: str  # what the rule covers and how to fix it


@dataclass(frozen=True, slots=True)
class _Meaning:
    level: Level
    summary: str
    help: str


_MEANINGS: dict[Rule, _Meaning] = {
    Rule.FILE_UNREADABLE: _Meaning(
        Level.ERROR,
        "the file cannot be read as text",
        "The file is missing, not a regular file, larger than 1 MiB, or not UTF-8. "
        "Point the command at the runbook file and save it as UTF-8.",
    ),
    Rule.YAML_SYNTAX: _Meaning(
        Level.ERROR,
        "the file is not valid YAML",
        "A YAML syntax error, a tab in the indentation, nesting deeper than 64 levels, a "
        "scalar its tag cannot hold (!!int abc), or an escape of half a UTF-16 surrogate pair "
        '("\\ud800", which no report could hold). The message quotes the parser; indent with '
        "spaces, quote strings that contain a colon and a space or start with a special "
        "character, and write a character beyond U+FFFF as itself or as one escape "
        '("\\U0001F600").',
    ),
    Rule.YAML_UNSUPPORTED: _Meaning(
        Level.ERROR,
        "the file uses YAML that runbooks do not accept",
        "Runbooks are plain data: no aliases (*name), no tags beyond the standard ones "
        "(!!python/object), no duplicate keys (YAML would keep the last one silently) and no "
        "keys that are not strings (on: or 1: unquoted). Write values out in full and quote "
        "such keys.",
    ),
    Rule.SCHEMA: _Meaning(
        Level.ERROR,
        "the runbook does not have the shape the schema requires",
        "An unknown or misspelt key, a missing required key, a value of the wrong type, out of "
        "range or not one of the allowed values, a malformed duration or rate, an empty file or "
        "a top level that is not a mapping. `runbook schema` prints the JSON Schema; "
        "docs/runbook-language.md describes every key.",
    ),
    Rule.EXPRESSION_SYNTAX: _Meaning(
        Level.ERROR,
        "a ${{ ... }} expression does not parse",
        "An unterminated ${{, an unexpected character, or operators the expression language "
        "does not have (chained comparisons). The column points at the problem inside the "
        "expression; the language is in docs/runbook-language.md, Expressions.",
    ),
    Rule.REFERENCE: _Meaning(
        Level.ERROR,
        "an expression names something that does not exist there",
        "An unknown param, target field, environment variable not listed under env:, step, "
        "step output or function, or a step that uses its own outputs or those of a later "
        "step. The hint suggests the nearest name.",
    ),
    Rule.TYPE: _Meaning(
        Level.ERROR,
        "an expression's type does not fit where it is used",
        "The static type of an expression is not what the field takes (when: needs one "
        "boolean expression), an operator is given operands it cannot take, a function the "
        "wrong arguments, or a list is interpolated into a string.",
    ),
    Rule.MISPLACED_EXPRESSION: _Meaning(
        Level.ERROR,
        "a ${{ ... }} expression where nothing evaluates it",
        "Expressions are evaluated only in a step's with: and when: (and in steady_state:); "
        "anywhere else the text would be used as written. Use a param's value in a step, or "
        "write the value out.",
    ),
    Rule.DUPLICATE: _Meaning(
        Level.ERROR,
        "an id that must be unique is not",
        "Two steps with one id, two targets with one project_id, or a step id that the "
        "steady_state block uses for its own steps. Rename one of them.",
    ),
    Rule.VALUE: _Meaning(
        Level.ERROR,
        "a value the schema accepts but the engine cannot use",
        "A number that is not finite (.inf, .nan), a param default that is not one of its "
        "enum, or a required param with a default.",
    ),
    Rule.STRUCTURE: _Meaning(
        Level.ERROR,
        "the runbook's parts do not fit together",
        "A steady_state block with no drs.pause_jobs step to inject the fault it is about, or "
        "an approve step in rollback: (which runs unattended).",
    ),
    Rule.INSECURE_HTTP: _Meaning(
        Level.ERROR,
        "a target's endpoint would send credentials in clear",
        "The endpoint is plain http:// to another machine: the token, signature or IAM "
        "password would cross the network readable. Use https; loopback (127.0.0.1, "
        "localhost) is allowed for emulators, and --allow-insecure-http accepts it anyway.",
    ),
    Rule.PARAM: _Meaning(
        Level.ERROR,
        "a param value given to a run does not fit the runbook",
        "An unknown param, a value of the wrong type or not one of the enum (from --param or "
        "a params file), or a required param without a value. Reported by run and plan, "
        "never by validate.",
    ),
    Rule.UNVERIFIED_MUTATION: _Meaning(
        Level.WARNING,
        "a step changes jobs and no later step verifies them",
        "A retry or pause without a drs.verify_status step after it ends the run without "
        "knowing whether the jobs recovered. Add a drs.verify_status step after it.",
    ),
    Rule.VERIFY_WITHOUT_TIMEOUT: _Meaning(
        Level.WARNING,
        "a verify step has no explicit timeout",
        "drs.verify_status waits up to the default 600s. Set timeout: to how long recovery "
        "may take, such as 10m.",
    ),
    Rule.UNNARROWED_SELECTION: _Meaning(
        Level.WARNING,
        "a selection matches every failed or paused job",
        "drs.select_jobs has no statuses, name or engine_type. Narrow it, such as name: orders-*.",
    ),
    Rule.NO_MAX_JOBS: _Meaning(
        Level.WARNING,
        "a runbook changes jobs without a max_jobs cap",
        "Nothing caps how many jobs one run may act on. Set max_jobs: at the top level.",
    ),
}

for _rule, _meaning in _MEANINGS.items():
    _rule.level = _meaning.level
    _rule.summary = _meaning.summary
    _rule.help = _meaning.help

assert set(_MEANINGS) == set(Rule), "every rule has a meaning"
