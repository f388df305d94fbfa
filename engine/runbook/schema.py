"""Validate runbook data against the typed runbook schema; each error becomes a Diagnostic.

``schemas/runbook.source.schema.json`` is the one description of a runbook's shape. The engine
validates with it as written, and checks each ``${{ ... }}`` expression's static type against
the field it fills instead (``engine.runbook.check``). Editors get ``schemas/runbook.schema.json``,
generated from it by ``engine.runbook.schema_build``: the same schema, where each value that may be
an expression also accepts one. This module only turns jsonschema's errors into messages that
name the step and point at the offending node; it adds no rules of its own. The schema's
``patternErrorMessage`` and ``errorMessage`` keywords (understood by yaml-language-server) give
the wording for patterns and whole subschemas.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema

from engine import schema_files
from engine.errors import Diagnostic
from engine.rules import Rule
from engine.runbook.evaluation import kind_of
from engine.runbook.expressions import is_expression
from engine.runbook.parse import JsonPath, ParsedYaml
from engine.units import describe_seconds, parse_duration

# Action name -> its outputs, either {output: type} (engine.actions.CATALOG) or only the output
# names, whose types are then unknown ("any") to the static checks.
ActionCatalog = Mapping[str, Collection[str]]

# The published schema (editors, `runbook schema`) and its typed source (the engine's).
SCHEMA_FILE = "runbook.schema.json"
SOURCE_FILE = "runbook.source.schema.json"
_TYPE_WORDS = {"object": "mapping", "array": "list"}


def schema_path() -> Path:
    return schema_files.schema_path(SCHEMA_FILE)


def load_schema() -> Mapping[str, Any]:
    """The published runbook JSON Schema as data (what editors and ``runbook schema`` see)."""
    return schema_files.load_schema_file(SCHEMA_FILE)


def load_source() -> Mapping[str, Any]:
    """The typed runbook JSON Schema the engine validates with: the published one's source."""
    return schema_files.load_schema_file(SOURCE_FILE)


def schema_text() -> str:
    """The runbook JSON Schema as its file spells it (for ``runbook schema``)."""
    return schema_path().read_text(encoding="utf-8")


def output_types(catalog: ActionCatalog) -> dict[str, Mapping[str, str]]:
    """Each action's output types; ``any`` for a catalog that gives only output names."""
    return {
        action: outputs if isinstance(outputs, Mapping) else dict.fromkeys(outputs, "any")
        for action, outputs in catalog.items()
    }


def _max_seconds(
    validator: object, limit: float, instance: object, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """``maxSeconds``: a duration (number or ``90s`` string) is at most ``limit`` seconds. A
    keyword of the engine's own (editors ignore it): JSON Schema cannot bound a ``10m``."""
    if isinstance(instance, bool) or not isinstance(instance, int | float | str):
        return
    try:
        seconds = parse_duration(instance, limit_s=None)
    except ValueError:
        return  # not a duration at all: the type or the pattern says so
    if seconds > limit:
        yield jsonschema.ValidationError(
            f"must be at most {describe_seconds(limit)}, got {show(instance)}"
        )


# The runbook schema's validator: draft 2020-12 and the maxSeconds keyword.
_RunbookValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"maxSeconds": _max_seconds}
)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    validator: jsonschema.Draft202012Validator = _RunbookValidator(load_source())
    return validator


def schema_actions() -> frozenset[str]:
    """The action names the schema accepts (they must equal the catalog's)."""
    return frozenset(load_source()["$defs"]["step"]["properties"]["action"]["enum"])


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint for a misspelt ``word``, if one of ``choices`` is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def show(value: object) -> str:
    """A value as a message shows it: YAML words for null and booleans, strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    if isinstance(value, int | float):
        return repr(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# The lists of steps in a runbook: the steps, then the rollback steps run when one fails.
STEP_SECTIONS = ("steps", "rollback")
# A drill's steady-state check: a verify's parameters (engine.runbook.model expands it).
STEADY_STATE = "steady_state"
# Its keys that set the check itself (a step's own settings, as a step's timeout): literal, never
# an expression; every other key is a verify parameter and may be one.
STEADY_STATE_SETTINGS = frozenset({"timeout"})


def describe(data: Mapping[str, Any], at: JsonPath, catalog: ActionCatalog, detail: str) -> str:
    """``detail`` prefixed by who ``at`` belongs to (a step, a target) and the field within it."""
    owner, field = owner_of(data, at, catalog)
    text = f"{field_text(field)}: {detail}" if field else detail
    return f"{owner}: {text}" if owner else text


def owner_of(data: Mapping[str, Any], at: JsonPath, catalog: ActionCatalog) -> tuple[str, JsonPath]:
    """The step or target ``at`` is inside (empty for the top level), and the path within it."""
    if not _owned(at):
        return "", at
    index = int(at[1])
    if at[0] == "targets":
        return f"targets[{index}]", at[2:]
    section = str(at[0])
    steps = data.get(section)
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    if not isinstance(step, dict):
        return f"{section}[{index}]", at[2:]
    step_id, action = step.get("id"), step.get("action")
    kind = "rollback step" if section == "rollback" else "step"
    owner = f"{kind} '{step_id}'" if isinstance(step_id, str) else f"{section}[{index}]"
    if isinstance(action, str) and action in catalog:
        owner += f" ({action})"
    return owner, at[2:]


def _owned(at: JsonPath) -> bool:
    """Whether ``at`` is inside one step or one target."""
    return len(at) >= 2 and at[0] in (*STEP_SECTIONS, "targets") and isinstance(at[1], int)


def field_text(at: JsonPath) -> str:
    """A path as a user reads it: ``with.statuses[1]``."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def validate(parsed: ParsedYaml, catalog: ActionCatalog) -> list[Diagnostic]:
    """Every schema error of the runbook, located at the node that causes it."""
    diagnostics: list[Diagnostic] = []
    expressions = expression_paths(parsed.data)
    for error in _validator().iter_errors(parsed.data):
        at: JsonPath = tuple(error.absolute_path)
        if any(at[: len(path)] == path for path in expressions):
            continue  # the expression's static type is checked against the field instead
        if "propertyNames" in error.schema_path and isinstance(error.instance, str):
            detail = _detail(
                str(error.validator),
                error.validator_value,
                error.instance,
                error.schema,
                error.message,
            )
            location = parsed.source.key((*at, error.instance))
            owner = field_text(at)
            message = f"{owner}: {detail}"
            diagnostics.append(Diagnostic(location=location, message=message, rule=Rule.SCHEMA))
            continue
        for where, detail, hint, scope in _explain(error, at):
            location = parsed.source.key(where) if scope == "key" else parsed.source.value(where)
            if scope == "field":
                message = describe(parsed.data, at, catalog, detail)
            else:  # the detail names the key itself: prefix only the step or target
                owner, _ = owner_of(parsed.data, at, catalog)
                message = f"{owner}: {detail}" if owner else detail
            diagnostic = Diagnostic(location=location, message=message, rule=Rule.SCHEMA, hint=hint)
            diagnostics.append(diagnostic)
    return diagnostics


def expression_paths(data: Mapping[str, Any]) -> set[JsonPath]:
    """The paths of every ``${{ }}`` string in a step's ``with``: the schema does not judge them."""
    found: set[JsonPath] = set()

    def walk(value: object, at: JsonPath) -> None:
        if is_expression(value):
            found.add(at)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*at, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*at, index))

    for section in STEP_SECTIONS:
        steps = data.get(section)
        if isinstance(steps, list):
            for index, step in enumerate(steps):
                if isinstance(step, dict) and isinstance(step.get("with"), dict):
                    walk(step["with"], (section, index, "with"))
    if isinstance(data.get(STEADY_STATE), dict):
        for key, item in data[STEADY_STATE].items():
            if key not in STEADY_STATE_SETTINGS:
                walk(item, (STEADY_STATE, key))
    return found


_JSON_TO_EXPRESSION = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}


def field_types(action: str, within_with: JsonPath) -> list[str] | None:
    """The expression types a ``with`` field of ``action`` accepts; None if it has no schema."""
    schema = load_source()
    definition = _action_definitions().get(action)
    if definition is None:
        return None
    node: Mapping[str, Any] | None = schema["$defs"][definition]
    for part in within_with:
        node = _resolve(node)
        if node is None:
            return None
        if isinstance(part, int):
            items = node.get("items")
            node = items if isinstance(items, Mapping) else None
        else:
            node = node.get("properties", {}).get(part)
    return _accepted(_resolve(node))


def _resolve(node: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``node`` with a local ``$ref`` followed (its own keywords win)."""
    if node is None or "$ref" not in node:
        return node
    target = load_source()["$defs"].get(str(node["$ref"]).removeprefix("#/$defs/"))
    return {**(target or {}), **{k: v for k, v in node.items() if k != "$ref"}}


def _accepted(node: Mapping[str, Any] | None) -> list[str] | None:
    if node is None:
        return None
    if "type" in node:
        kinds = [node["type"]] if isinstance(node["type"], str) else list(node["type"])
    elif "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        kinds = sorted({_json_kind(value) for value in values})
    else:
        return ["any"]
    accepted: list[str] = []
    for kind in kinds:
        if kind == "array":
            items = _accepted(_resolve(node.get("items"))) or ["any"]
            accepted.append(f"list[{items[0] if len(items) == 1 else 'any'}]")
        elif kind in _JSON_TO_EXPRESSION:
            accepted.append(_JSON_TO_EXPRESSION[kind])
    return accepted


def _json_kind(value: object) -> str:
    """The JSON Schema type name of an enum or const value."""
    kind = kind_of(value)
    return "array" if kind == "list" else kind


# (where, detail, hint, scope): scope "field" prefixes the field's path to the detail, "owner"
# only the step or target (the detail names the key), "key" also locates the key, not its value.
Explained = tuple[JsonPath, str, str | None, str]


def _explain(error: jsonschema.ValidationError, at: JsonPath) -> Iterator[Explained]:
    """What one jsonschema error means to a runbook author."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    kind, value = str(error.validator), error.instance
    expected: Any = error.validator_value
    if kind == "additionalProperties" and isinstance(value, Mapping):
        known = schema.get("properties", {})
        for key in value:
            if key not in known:
                hint = suggest(str(key), known) or _misplaced_parameter(at, value, key)
                yield (*at, key), f"unknown key '{key}'", hint, "key"
    elif isinstance(schema.get("errorMessage"), str):
        yield at, schema["errorMessage"], None, "field"
    elif kind == "required" and isinstance(value, Mapping):
        for name in expected:
            if name not in value:
                relative = at[2:] if _owned(at) else at
                yield at, f"'{field_text((*relative, name))}' is a required property", None, "owner"
    elif kind == "enum":
        yield _explain_enum(at, value, expected)
    elif kind == "uniqueItems" and isinstance(value, list):
        seen: list[object] = []
        for index, item in enumerate(value):
            if item in seen:
                yield (*at, index), f"{show(item)} is listed twice", None, "field"
                break
            seen.append(item)
    else:
        yield at, _detail(kind, expected, value, schema, error.message), None, "field"


def _misplaced_parameter(at: JsonPath, step: Mapping[str, Any], key: str) -> str | None:
    """A hint for an action parameter written beside ``action:`` instead of under ``with:``."""
    if len(at) != 2 or at[0] != "steps" or not isinstance(step.get("action"), str):
        return None
    params = _action_parameters().get(step["action"], frozenset())
    return (
        f"'{key}' is a parameter of {step['action']}: move it under 'with:'"
        if key in params
        else None
    )


@functools.cache
def _action_parameters() -> Mapping[str, frozenset[str]]:
    """Each action's ``with`` keys, read from the schema's ``if action == X then with`` rules."""
    schema = load_source()
    return {
        action: frozenset(schema["$defs"][definition]["properties"])
        for action, definition in _action_definitions().items()
    }


@functools.cache
def _action_definitions() -> Mapping[str, str]:
    """Each action's ``$defs`` entry for its ``with`` in the engine's schema."""
    return with_definitions(load_source())


def with_definitions(schema: Mapping[str, Any]) -> dict[str, str]:
    """Each action's ``$defs`` entry for its ``with``, read from the step's ``if action == X``
    rules of ``schema``."""
    found: dict[str, str] = {}
    for rule in schema["$defs"]["step"]["allOf"]:
        action = rule["if"]["properties"]["action"]["const"]
        found[action] = rule["then"]["properties"]["with"]["$ref"].removeprefix("#/$defs/")
    return found


def _explain_enum(at: JsonPath, value: object, allowed: list[Any]) -> Explained:
    choices = [str(choice) for choice in allowed]
    hint = _status_group_hint(value, choices) or (
        suggest(value, choices) if isinstance(value, str) else None
    )
    if at[-1:] == ("action",):
        actions = hint or f"actions: {', '.join(choices)}"
        return at, f"unknown action {show(value)}", actions, "owner"
    if len(choices) <= 6:
        return at, f"expected one of {', '.join(choices)}, got {show(value)}", hint, "field"
    return at, f"unknown value {show(value)}", hint, "field"


def _status_group_hint(value: object, choices: list[str]) -> str | None:
    """For a job status that names a group (FAILED, RUNNING, PAUSED, ...), the group's
    members: ``FAILED`` is no status, but it means the failed ones, not CREATE_FAILED alone."""
    if not isinstance(value, str) or "INCRE_TRANSFER_FAILED" not in choices:
        return None
    group_name = _STATUS_GROUP_WORDS.get(value.strip().upper().replace("-", "_"))
    if group_name is None:
        return None
    # Loaded only for this mistake: `runbook validate` does not load the API layer otherwise.
    from engine.api.types import StatusGroup, status_group

    group = StatusGroup(group_name)
    members = sorted(s for s in choices if status_group(s) is group)
    return f"the {group.value.replace('_', ' ')} statuses are {', '.join(members)}"


# Words for a group of job statuses -> the group (engine.api.types.StatusGroup's values).
_STATUS_GROUP_WORDS = {
    "FAILED": "failed",
    "FAILURE": "failed",
    "ERROR": "failed",
    "RUNNING": "healthy",
    "HEALTHY": "healthy",
    "STARTED": "healthy",
    "PAUSED": "paused",
    "IN_PROGRESS": "in_progress",
    "PENDING": "in_progress",
    "ENDED": "ended",
}


def _detail(
    kind: str, expected: Any, value: object, schema: Mapping[str, Any], fallback: str
) -> str:
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(f"'{_TYPE_WORDS.get(name, name)}'" for name in names)
        return f"{show(value)} is not of type {words}"
    if kind == "pattern":
        wording = schema.get("patternErrorMessage")
        if isinstance(wording, str):
            return f"{wording}, got {show(value)}"
        return f"{show(value)} does not match {expected!r}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"must be {bounds[kind]} {expected}, got {show(value)}"
    if kind in ("minItems", "minLength") and expected == 1:
        return "must not be empty"
    if kind == "minItems":
        return f"must have at least {expected} items"
    if kind == "maxLength":
        return f"must be at most {expected} characters"
    if kind == "const":
        return f"expected {show(expected)}, got {show(value)}"
    return fallback
