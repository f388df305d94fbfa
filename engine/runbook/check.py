"""Semantic checks: what the JSON Schema cannot say about a runbook.

Duplicate step ids and target projects, references between steps (to an unknown, later or
same step, or to an output the action does not produce), malformed ``${{ ... }}`` expressions,
and numbers that are not finite (YAML has ``.inf`` and ``.nan``; JSON Schema does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from engine.errors import Diagnostic, Location
from engine.runbook.expressions import EXPECTED_REFERENCE, is_expression, reference_names
from engine.runbook.parse import JsonPath, ParsedYaml
from engine.runbook.schema import ActionCatalog, describe, show, suggest


def check(parsed: ParsedYaml, catalog: ActionCatalog) -> list[Diagnostic]:
    """Every semantic problem of a runbook whose top level is a mapping."""
    return [
        *_duplicate_targets(parsed),
        *_steps(parsed, catalog),
        *_non_finite(parsed, parsed.data, (), catalog),
    ]


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
                message=f"targets[{index}]: duplicate project_id '{project_id}' "
                f"(first defined at line {first[project_id].line})",
            )
        else:
            first[project_id] = location


def _steps(parsed: ParsedYaml, catalog: ActionCatalog) -> Iterator[Diagnostic]:
    defined: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, step in _items(parsed.data, "steps"):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        if step_id in defined:
            first_line = parsed.source.value(("steps", defined[step_id][0], "id")).line
            yield Diagnostic(
                location=parsed.source.value(("steps", index, "id")),
                message=f"duplicate step id '{step_id}' (first defined at line {first_line})",
            )
        else:
            defined[step_id] = (index, step)
    for index, step in _items(parsed.data, "steps"):
        if step.get("action") not in catalog:
            continue  # the action is unknown, so are its parameters: say nothing about them
        for at, text in _expressions(step.get("with"), ("steps", index, "with")):
            problem = _reference_problem(text, index, defined, catalog)
            if problem is not None:
                detail, hint = problem
                yield Diagnostic(
                    location=parsed.source.value(at),
                    message=describe(parsed.data, at, catalog, detail),
                    hint=hint,
                )


def _expressions(value: object, at: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Every string under ``value`` that contains ``${{``, with its path."""
    if is_expression(value):
        yield at, str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _expressions(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _expressions(item, (*at, index))


def _reference_problem(
    text: str,
    index: int,
    defined: Mapping[str, tuple[int, Mapping[str, Any]]],
    catalog: ActionCatalog,
) -> tuple[str, str | None] | None:
    """What is wrong with the reference ``text`` in step ``index``, with a hint; None if fine."""
    names = reference_names(text)
    if names is None:
        return f"invalid expression {text!r}: expected {EXPECTED_REFERENCE}", None
    step_id, output = names
    if step_id not in defined:
        return f"unknown step '{step_id}' in {text.strip()}", suggest(step_id, defined)
    target_index, target = defined[step_id]
    if target_index == index:
        return f"step '{step_id}' cannot use its own outputs", None
    if target_index > index:
        return f"step '{step_id}' is defined after this step", None
    action = target.get("action")
    if not isinstance(action, str) or action not in catalog:
        return None  # that step's own diagnostic says what is wrong with it
    outputs = catalog[action]
    if output in outputs:
        return None
    return (
        f"step '{step_id}' ({action}) has no output '{output}'; "
        f"outputs: {', '.join(sorted(outputs))}",
        suggest(output, outputs),
    )


def _non_finite(
    parsed: ParsedYaml, value: object, at: JsonPath, catalog: ActionCatalog
) -> Iterator[Diagnostic]:
    if isinstance(value, float) and not math.isfinite(value):
        yield Diagnostic(
            location=parsed.source.value(at),
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
