"""Generate ``schemas/runbook.schema.json``, the schema editors use, from the engine's typed source.

    python -m engine.runbook.schema_build            write schemas/runbook.schema.json
    python -m engine.runbook.schema_build --check    exit 1 if it is not what the source gives

Editors, check-jsonschema and yaml-language-server know nothing of ``${{ ... }}``: against the
typed source every expression "is not of type 'integer'". The published schema is the source with
one change: each value the engine lets be an expression (in a step's ``with:`` and in
``steady_state:``, as ``schema.expression_paths`` finds them, at any depth) is ``anyOf`` its typed
schema and ``#/$defs/expression``; its annotations (description, default, examples) stay outside
the ``anyOf`` so hover and completion still show them. A value that already takes any string
needs no alternative. Nothing else is loosened: a key, a target, a param default or a step's
``timeout`` takes no expression, in the engine or in the published schema.

Numbers are finite in both: YAML has ``.inf``, ``.nan`` and ``1e999`` (in YAML 1.2), JSON has no
such number, and the engine refuses them in its semantic checks (``check._non_finite``), in its
own words. Standard validators get that rule as keywords: every number-typed value of the
published schema is bounded by the largest float and refuses NaN (``finite_number_keywords``).

This is not a second description of the shape: never edit the output, edit
``schemas/runbook.source.schema.json`` and run this.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine import schema_files
from engine.runbook.expressions import EXPRESSION_END, EXPRESSION_START
from engine.runbook.schema import (
    SCHEMA_FILE,
    SOURCE_FILE,
    STEADY_STATE,
    STEADY_STATE_SETTINGS,
    with_definitions,
)

EXPRESSION = "expression"
_EXPRESSION_REF = f"#/$defs/{EXPRESSION}"
# Keywords that describe a value rather than constrain it: they stay outside the anyOf.
_ANNOTATIONS = frozenset(
    {"title", "description", "markdownDescription", "default", "examples", "$comment"}
)
# Keywords that restrict a string beyond its type and a minimum length.
_STRING_RULES = frozenset(
    {"pattern", "maxLength", "format", "enum", "const", "$ref", "not", "anyOf", "allOf", "oneOf"}
)
# Keywords whose subschemas hold nested values this generator does not open: a value under them
# would get no expression alternative, so the generator refuses them rather than guess.
_UNOPENED = frozenset(
    {
        "prefixItems",
        "patternProperties",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "allOf",
        "anyOf",
        "oneOf",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
_SHORTEST_EXPRESSION = len(EXPRESSION_START + EXPRESSION_END)
# A $defs entry whose nested values may be expressions, where it is used in with: or
# steady_state:, is published a second time under this suffix (the original stays typed).
_DERIVED_SUFFIX = "_with_expressions"

_PUBLISHED_COMMENT = (
    f"Generated from {SOURCE_FILE} by `python -m engine.runbook.schema_build`: do not edit (a test "
    "fails when it is stale). It is the source with two changes: each value that may be an "
    "expression (in a step's with: and in steady_state:) is anyOf its typed schema and "
    f"{_EXPRESSION_REF}, so that editors and check-jsonschema accept ${{{{ ... }}}} there "
    "(runbook validate checks the expression's type against the field); and each number is "
    "finite (maximum: the largest float, and a not that refuses NaN), as runbook validate "
    "requires of YAML's .inf, .nan and 1e999. Reference: docs/runbook-language.md."
)
# The largest finite float: above it is +inf (and YAML's 1e999); below its negative, -inf.
_LARGEST = sys.float_info.max
_FINITE_COMMENT = "finite: not .inf, -.inf or .nan (the engine refuses them)"
# Keywords whose values are data, not schemas: a {"type": "number"} there is an example.
_DATA_KEYWORDS = frozenset({"examples", "default", "enum", "const"})


def expression_schema() -> dict[str, Any]:
    """``$defs/expression``: a string with a ``${{ ... }}`` in it (the engine's test of an
    expression, ``expressions.is_expression``, plus the closing braces)."""
    return {
        "description": "An expression ${{ ... }}, or text with expressions inside, evaluated for "
        "each target when the step runs; runbook validate checks its names and that its type "
        "fits the field.",
        "type": "string",
        "pattern": re.escape(EXPRESSION_START) + r"[\s\S]*" + re.escape(EXPRESSION_END),
        "patternErrorMessage": "expected an expression ${{ ... }}",
        "examples": ["${{ steps.select.jobs }}", "${{ params.batch_size }}"],
    }


def finite_number_keywords() -> dict[str, Any]:
    """What makes a number-typed value finite in a standard validator: ``maximum`` refuses
    +inf; ``not`` a number ``exclusiveMaximum`` -largest refuses -inf and NaN, since every
    comparison with NaN is false (so NaN passes ``exclusiveMaximum`` and ``not`` refuses it),
    while every other number fails it. Strings are untouched: both keywords are for numbers."""
    return {
        "maximum": _LARGEST,
        "not": {"$comment": _FINITE_COMMENT, "type": "number", "exclusiveMaximum": -_LARGEST},
    }


def _number_nodes(node: object) -> Iterator[dict[str, Any]]:
    """Every schema node of ``node`` whose ``type`` is, or includes, ``number`` (not the data
    a schema holds: its examples, default, enum, const)."""
    if isinstance(node, dict):
        kinds = node.get("type")
        if kinds == "number" or (isinstance(kinds, list) and "number" in kinds):
            yield node
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                yield from _number_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _number_nodes(value)


def _finite(schema: dict[str, Any]) -> None:
    """Bound every number-typed value of ``schema`` (in place) to the finite numbers."""
    for node in list(_number_nodes(schema)):
        if "not" in node:
            raise ValueError(f"a number schema with its own not: {node} (hint: teach _finite)")
        keywords = finite_number_keywords()
        if "maximum" in node or "exclusiveMaximum" in node:
            del keywords["maximum"]  # already bounded above, tighter
        node.update(keywords)


def _takes_any_string(node: Mapping[str, Any]) -> bool:
    """Whether every expression string is already valid under ``node`` (``type: string``)."""
    kinds = node.get("type")
    if kinds != "string" or _STRING_RULES & node.keys():
        return False
    shortest: int = node.get("minLength", 0)
    return shortest <= _SHORTEST_EXPRESSION


class _Builder:
    """Gives the values under a schema node their expression alternative."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.derived: dict[str, dict[str, Any]] = {}

    def values(self, node: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``node`` (a mapping, a list or a scalar), whose nested values may be expressions."""
        unopened = sorted(_UNOPENED & node.keys())
        if unopened:
            raise ValueError(
                f"{where}: values under {', '.join(unopened)} would take no expression "
                "(hint: teach engine/runbook/schema_build.py to open it)"
            )
        built = dict(node)
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            built["properties"] = {
                key: self.value(value, f"{where}.{key}") for key, value in properties.items()
            }
        for keyword in ("additionalProperties", "items"):
            if isinstance(node.get(keyword), Mapping):
                built[keyword] = self.value(node[keyword], f"{where}.{keyword}")
        if "$ref" in node:
            built["$ref"] = self._ref(str(node["$ref"]))
        return built

    def value(self, node: Mapping[str, Any], where: str) -> dict[str, Any]:
        """One value that may be an expression: anyOf its typed schema and an expression."""
        if _takes_any_string(node):
            return dict(node)
        annotations = {key: item for key, item in node.items() if key in _ANNOTATIONS}
        typed = {key: item for key, item in node.items() if key not in _ANNOTATIONS}
        return {**annotations, "anyOf": [self.values(typed, where), {"$ref": _EXPRESSION_REF}]}

    def _ref(self, ref: str) -> str:
        """``ref``, or a derived entry's when the entry's own nested values change."""
        name = ref.removeprefix("#/$defs/")
        target = self.defs[name]
        built = self.values(target, f"$defs/{name}")
        if built == target:
            return ref
        self.derived[name + _DERIVED_SUFFIX] = built
        return f"#/$defs/{name}{_DERIVED_SUFFIX}"


def build(source: Mapping[str, Any]) -> dict[str, Any]:
    """The published runbook schema of the typed ``source`` (which is left as it is)."""
    published: dict[str, Any] = copy.deepcopy(dict(source))
    defs: dict[str, Any] = published["$defs"]
    builder = _Builder(source["$defs"])
    for name in dict.fromkeys(with_definitions(source).values()):
        defs[name] = builder.values(source["$defs"][name], f"$defs/{name}")
    # The steady state's verify parameters take expressions; its own settings stay literal.
    steady_state = dict(source["properties"][STEADY_STATE])
    properties: Mapping[str, Any] = steady_state.get("properties", {})
    settings = {k: v for k, v in properties.items() if k in STEADY_STATE_SETTINGS}
    steady_state["properties"] = {k: v for k, v in properties.items() if k not in settings}
    built = builder.values(steady_state, STEADY_STATE)
    built["properties"] = {**built["properties"], **settings}
    published["properties"][STEADY_STATE] = built
    added = {**builder.derived, EXPRESSION: expression_schema()}
    taken = sorted(added.keys() & defs.keys())
    if taken:
        raise ValueError(
            f"{SOURCE_FILE}: $defs/{taken[0]} is the generator's own name (hint: rename it)"
        )
    defs.update(added)
    _finite(published)
    published["$id"] = schema_files.schema_id(SCHEMA_FILE)
    published["$comment"] = _PUBLISHED_COMMENT
    return published


def render(schema: Mapping[str, Any]) -> str:
    """A schema as its file spells it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def published_text() -> str:
    """What ``schemas/runbook.schema.json`` must contain."""
    return render(build(schema_files.load_schema_file(SOURCE_FILE)))


def published_path() -> Path:
    """Where the published schema goes: beside its source."""
    return schema_files.schema_path(SOURCE_FILE).with_name(SCHEMA_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.runbook.schema_build",
        description=f"Write {SCHEMA_FILE} (for editors) from {SOURCE_FILE} (the engine's).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file is stale"
    )
    args = parser.parse_args(argv)
    target, text = published_path(), published_text()
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if args.check:
        if current != text:
            sys.stderr.write(
                f"{target}: stale, not what {SOURCE_FILE} gives "
                "(hint: run python -m engine.runbook.schema_build)\n"
            )
            return 1
        return 0
    if current != text:
        target.write_text(text, encoding="utf-8")
    sys.stdout.write(f"{target}: {'up to date' if current == text else 'written'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
