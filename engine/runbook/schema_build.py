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

This is not a second description of the shape: never edit the output, edit
``schemas/runbook.source.schema.json`` and run this.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Mapping, Sequence
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
    "fails when it is stale). It is the source with one change: each value that may be an "
    "expression (in a step's with: and in steady_state:) is anyOf its typed schema and "
    f"{_EXPRESSION_REF}, so that editors and check-jsonschema accept ${{{{ ... }}}} there; "
    "runbook validate checks the expression's type against the field. Reference: "
    "docs/runbook-language.md."
)


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
