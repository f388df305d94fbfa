"""Semantic checks: what the JSON Schema cannot say about a runbook.

Duplicate step ids and target projects; params whose default is outside their enum; numbers
that are not finite (YAML has ``.inf`` and ``.nan``, JSON has neither: the engine says so here,
in its own words, and the published schema refuses them with the bounds ``schema_build`` adds);
and every ``${{ ... }}`` expression: its syntax, its names (params, target fields, earlier
steps' outputs, allowed env variables), its operators, and whether its static type fits the
field it fills (``when`` must be boolean). The checks also hand the parsed, typed expressions
to the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Diagnostic, Location
from engine.rules import Rule
from engine.runbook.expressions import (
    Expression,
    ExpressionSyntaxError,
    is_expression,
    parse_template,
)
from engine.runbook.params import ParamType, static_checks
from engine.runbook.parse import JsonPath, ParsedYaml
from engine.runbook.schema import (
    STEADY_STATE,
    STEADY_STATE_SETTINGS,
    STEP_SECTIONS,
    ActionCatalog,
    describe,
    field_types,
    load_source,
    output_types,
    show,
)
from engine.runbook.typecheck import Names, fits, infer, interpolation_problems

PAUSE = "drs.pause_jobs"
VERIFY = "drs.verify_status"
# The steps the steady_state block expands into (engine.runbook.model): before the first pause,
# and after the last step.
STEADY_STATE_IDS = (
    "steady_state_before",
    "steady_state_before_holds",
    "steady_state_after",
    "steady_state_after_holds",
)


@dataclass(slots=True)
class Checked:
    """The semantic problems of a runbook, and its expressions by the path of their string."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    expressions: dict[JsonPath, Expression] = field(default_factory=dict)


def check(parsed: ParsedYaml, catalog: ActionCatalog) -> Checked:
    """Every semantic problem of a runbook whose top level is a mapping."""
    checked = Checked()
    checked.diagnostics += [
        *_duplicate_targets(parsed),
        *_accounts(parsed),
        *static_checks(parsed.data, parsed.source),
        *_misplaced_expressions(parsed, parsed.data, (), catalog),
        *_non_finite(parsed, parsed.data, (), catalog),
    ]
    _steps(parsed, catalog, checked)
    return checked


def _items(data: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(key)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _duplicate_targets(parsed: ParsedYaml) -> Iterator[Diagnostic]:
    first: dict[str, Location] = {}
    for index, target in _items(parsed.data, "targets"):
        project_id = target.get("project_id")
        if not isinstance(project_id, str):
            continue
        location = parsed.source.value(("targets", index, "project_id"))
        if project_id in first:
            yield Diagnostic(
                location=location,
                rule=Rule.DUPLICATE,
                message=f"targets[{index}]: duplicate project_id '{project_id}' "
                f"(first defined at line {first[project_id].line})",
            )
        else:
            first[project_id] = location


# An account's credential sources: the keys each needs together; exactly one is given.
_SOURCES: tuple[tuple[str, ...], ...] = (
    ("ak_env", "sk_env"),
    ("token_env",),
    ("iam_user_env", "iam_password_env", "iam_domain_env"),
    ("credentials_file",),
)


def _accounts(parsed: ParsedYaml) -> Iterator[Diagnostic]:
    """Each account names one whole credential source; every account a target names exists;
    with accounts, every target names one (no target runs as an identity nobody chose)."""
    accounts = parsed.data.get("accounts")
    names = set(accounts) if isinstance(accounts, dict) else set()
    for name, spec in (accounts or {}).items() if isinstance(accounts, dict) else ():
        if not isinstance(spec, dict):
            continue
        at = parsed.source.value(("accounts", name))
        given = [keys for keys in _SOURCES if any(key in spec for key in keys)]
        if len(given) != 1:
            yield Diagnostic(
                location=at,
                rule=Rule.STRUCTURE,
                message=f"accounts.{name}: names "
                + ("no credentials" if not given else "more than one credential source"),
                hint="give exactly one of ak_env + sk_env, token_env, "
                "iam_user_env + iam_password_env + iam_domain_env, or credentials_file",
            )
        elif missing := [key for key in given[0] if key not in spec]:
            yield Diagnostic(
                location=at,
                rule=Rule.STRUCTURE,
                message=f"accounts.{name}: {', '.join(given[0])} go together; "
                f"{', '.join(missing)} is missing",
            )
        if "security_token_env" in spec and "ak_env" not in spec:
            yield Diagnostic(
                location=parsed.source.value(("accounts", name, "security_token_env")),
                rule=Rule.STRUCTURE,
                message=f"accounts.{name}: security_token_env goes with ak_env and sk_env",
            )
    for index, target in _items(parsed.data, "targets"):
        account = target.get("account")
        if isinstance(account, str) and account not in names:
            close = difflib.get_close_matches(account, sorted(names), n=1)
            known = ", ".join(sorted(names)) or "none (the runbook has no accounts:)"
            yield Diagnostic(
                location=parsed.source.value(("targets", index, "account")),
                rule=Rule.REFERENCE,
                message=f"targets[{index}]: unknown account '{account}'",
                hint=f"did you mean '{close[0]}'?" if close else f"accounts defined: {known}",
            )
        elif account is None and names:
            yield Diagnostic(
                location=parsed.source.value(("targets", index)),
                rule=Rule.REFERENCE,
                message=f"targets[{index}]: names no account, and the runbook has accounts:",
                hint=f"add account: with one of {', '.join(sorted(names))}",
            )


def _names(parsed: ParsedYaml, catalog: ActionCatalog) -> Names:
    """The names every expression of the runbook may use (steps: all of them, with indexes)."""
    data = parsed.data
    params: dict[str, str] = {}
    for name, spec in (data.get("params") or {}).items() if _is_map(data.get("params")) else ():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, str) and kind in set(ParamType):
            items = spec.get("items")
            items_type = items.get("type") if isinstance(items, dict) else "string"
            if kind == ParamType.ARRAY:
                params[name] = f"list[{items_type if isinstance(items_type, str) else 'any'}]"
            else:
                params[name] = "number" if kind == ParamType.DURATION else str(kind)
        else:
            params[name] = "any"
    env = data.get("env")
    steps: dict[str, tuple[int, str | None]] = {}
    for _, order, step in _all_steps(data):
        step_id, action = step.get("id"), step.get("action")
        if isinstance(step_id, str) and step_id not in steps:
            steps[step_id] = (order, action if isinstance(action, str) else None)
    return Names(
        params=params,
        env=frozenset(e for e in env if isinstance(e, str))
        if isinstance(env, list)
        else frozenset(),
        steps=steps,
        outputs=output_types(catalog),
    )


def _is_map(value: object) -> bool:
    return isinstance(value, dict)


def _all_steps(data: Mapping[str, Any]) -> Iterator[tuple[JsonPath, int, dict[str, Any]]]:
    """Every step with its path and its place in run order (the steps, then rollback)."""
    offset = 0
    for section in STEP_SECTIONS:
        for index, step in _items(data, section):
            yield (section, index), offset + index, step
        items = data.get(section)
        offset += len(items) if isinstance(items, list) else 0


def _steps(parsed: ParsedYaml, catalog: ActionCatalog, checked: Checked) -> None:
    defined: dict[str, JsonPath] = {}
    for at, _, step in _all_steps(parsed.data):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        if step_id in defined:
            first_line = parsed.source.value((*defined[step_id], "id")).line
            checked.diagnostics.append(
                Diagnostic(
                    location=parsed.source.value((*at, "id")),
                    rule=Rule.DUPLICATE,
                    message=f"duplicate step id '{step_id}' (first defined at line {first_line})",
                )
            )
        else:
            defined[step_id] = at
        if at[0] == "rollback" and step.get("action") == "approve":
            checked.diagnostics.append(
                Diagnostic(
                    location=parsed.source.value((*at, "action")),
                    rule=Rule.STRUCTURE,
                    message=f"rollback step '{step_id}': a rollback runs unattended and cannot "
                    "ask for approval",
                    hint="put the approve step in steps:",
                )
            )
    names = _names(parsed, catalog)
    for at, order, step in _all_steps(parsed.data):
        here = Names(
            params=names.params,
            env=names.env,
            steps=names.steps,
            outputs=names.outputs,
            here=order,
        )
        when = step.get("when")
        if isinstance(when, str) and is_expression(when):
            _expression(parsed, catalog, checked, (*at, "when"), when, here, ["boolean"])
        action = step.get("action")
        if action not in catalog:
            continue  # the action is unknown, so are its parameters: say nothing about them
        assert isinstance(action, str)
        with_at: JsonPath = (*at, "with")
        if not isinstance(step.get("with"), dict):
            continue  # the schema says what is wrong with it
        for at, text in _strings_with_expressions(step["with"], with_at):
            accepted = field_types(action, at[len(with_at) :])
            _expression(parsed, catalog, checked, at, text, here, accepted)
    _steady_state(parsed, catalog, checked, names, defined)


def _steady_state(
    parsed: ParsedYaml,
    catalog: ActionCatalog,
    checked: Checked,
    names: Names,
    defined: Mapping[str, JsonPath],
) -> None:
    """The steady_state block: a drill's, so it needs a pause (its check runs before the first
    one, and may refer to the steps before it); its step ids are its own."""
    block = parsed.data.get(STEADY_STATE)
    if not isinstance(block, dict):
        return
    where = parsed.source.keys.get((STEADY_STATE,)) or parsed.source.value((STEADY_STATE,))
    pauses = [
        order
        for at, order, step in _all_steps(parsed.data)
        if at[0] == "steps" and step.get("action") == PAUSE  # a rollback's pause is no fault
    ]
    if not pauses:
        checked.diagnostics.append(
            Diagnostic(
                location=where,
                rule=Rule.STRUCTURE,
                message="steady_state is a drill's hypothesis, checked before the fault and "
                "after recovery, but no drs.pause_jobs step injects one",
                hint="add a drs.pause_jobs step, or check health with a drs.verify_status step",
            )
        )
        return
    for step_id in STEADY_STATE_IDS:
        if step_id in defined:
            checked.diagnostics.append(
                Diagnostic(
                    location=parsed.source.value((*defined[step_id], "id")),
                    rule=Rule.DUPLICATE,
                    message=f"step id '{step_id}' is the steady_state block's own",
                    hint="rename the step",
                )
            )
    here = dataclasses.replace(names, here=pauses[0])
    for at, text in _strings_with_expressions(block, (STEADY_STATE,)):
        if at[1] in STEADY_STATE_SETTINGS:
            continue  # misplaced: _misplaced_expressions says so
        accepted = field_types(VERIFY, at[1:])
        _expression(parsed, catalog, checked, at, text, here, accepted)


def _strings_with_expressions(value: object, at: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Every string under ``value`` that contains ``${{``, with its path."""
    if isinstance(value, str) and is_expression(value):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings_with_expressions(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_with_expressions(item, (*at, index))


def _expression(
    parsed: ParsedYaml,
    catalog: ActionCatalog,
    checked: Checked,
    at: JsonPath,
    text: str,
    names: Names,
    accepted: list[str] | None,
) -> None:
    """Parse and type-check the expression string at ``at``; record it when it is sound."""
    source = parsed.source

    def report(rule: Rule, offset: int, detail: str, hint: str | None = None) -> None:
        checked.diagnostics.append(
            Diagnostic(
                location=source.inside(at, text, offset),
                message=describe(parsed.data, at, catalog, detail),
                rule=rule,
                hint=hint,
            )
        )

    try:
        parts = parse_template(text)
    except ExpressionSyntaxError as exc:
        report(Rule.EXPRESSION_SYNTAX, exc.offset, f"invalid expression: {exc.message}", exc.hint)
        return
    reported = len(checked.diagnostics)
    kinds: list[str] = []
    for part in parts:
        if isinstance(part, str):
            continue
        kind, problems = infer(part, names)
        kinds.append(kind)
        if len(parts) > 1:
            problems += interpolation_problems(part, kind)
        for problem in problems:
            report(problem.rule, problem.offset, problem.message, problem.hint)
    whole = len(parts) == 1 and not isinstance(parts[0], str)
    static_type = kinds[0] if whole else "string"
    if len(checked.diagnostics) > reported:
        return
    if at[-1] == "when" and not whole:
        report(
            Rule.TYPE, 0, "expected one boolean expression ${{ ... }}, not text around expressions"
        )
        return
    if accepted and not any(fits(static_type, kind) for kind in accepted):
        shown = text.strip() if whole else show(text)
        report(Rule.TYPE, 0, f"{shown} is {static_type}, expected {' or '.join(accepted)}")
        return
    checked.expressions[at] = Expression(
        text=text, location=source.value(at), static_type=static_type, parts=parts
    )


def _misplaced_expressions(
    parsed: ParsedYaml, value: object, at: JsonPath, catalog: ActionCatalog
) -> Iterator[Diagnostic]:
    """``${{`` outside a step's ``with`` and ``when``: nothing would evaluate it.

    Only under keys the schema knows: an unknown key gets the schema's diagnostic alone.
    """
    if len(at) == 3 and at[0] in STEP_SECTIONS and at[2] in ("with", "when"):
        return
    if at == (STEADY_STATE,) and not isinstance(value, dict):
        return  # not a mapping: the schema says so
    if len(at) == 2 and at[0] == STEADY_STATE and at[1] not in STEADY_STATE_SETTINGS:
        return  # a verify parameter: _steady_state checks it
    if not _known_key(at):
        return
    if isinstance(value, str) and is_expression(value):
        yield Diagnostic(
            location=parsed.source.value(at),
            rule=Rule.MISPLACED_EXPRESSION,
            message=describe(
                parsed.data, at, catalog, "expressions are only allowed in a step's with: and when:"
            ),
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _misplaced_expressions(parsed, item, (*at, key), catalog)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _misplaced_expressions(parsed, item, (*at, index), catalog)


def _known_key(at: JsonPath) -> bool:
    schema = load_source()
    if at and at[0] not in schema["properties"]:
        return False
    if len(at) >= 3 and at[0] in (*STEP_SECTIONS, "targets"):
        definition = "target" if at[0] == "targets" else "step"
        return at[2] in schema["$defs"][definition]["properties"]
    return True


def _non_finite(
    parsed: ParsedYaml, value: object, at: JsonPath, catalog: ActionCatalog
) -> Iterator[Diagnostic]:
    if isinstance(value, float) and not math.isfinite(value):
        yield Diagnostic(
            location=parsed.source.value(at),
            rule=Rule.VALUE,
            message=describe(
                parsed.data, at, catalog, f"expected a finite number, got {show(value)}"
            ),
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(parsed, item, (*at, key), catalog)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(parsed, item, (*at, index), catalog)
