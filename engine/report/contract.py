"""Check a report document against ``schemas/report.schema.json``, the contract of report.json."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from engine import schema_files

SCHEMA_FILE = "report.schema.json"


def schema_path() -> Path:
    return schema_files.schema_path(SCHEMA_FILE)


def load_schema() -> Mapping[str, Any]:
    """The report JSON Schema as data."""
    return schema_files.load_schema_file(SCHEMA_FILE)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def validate_report(report: Mapping[str, Any]) -> list[str]:
    """Every way ``report`` breaks the contract, as ``path: message`` lines; empty when it holds.

    Not a parser: it neither fills defaults nor converts values, and it reports all problems at
    once, in document order, rather than stopping at the first.
    """
    errors = sorted(_validator().iter_errors(report), key=lambda e: [str(p) for p in e.path])
    # jsonschema raises one "required" error per missing key; each names them all: say it once.
    return list(dict.fromkeys(f"{_where(e.absolute_path)}: {_message(e)}" for e in errors))


def _where(path: Any) -> str:
    """``targets[0].jobs[3].disposition``; ``report`` for the document itself."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "report"


def _message(error: jsonschema.ValidationError) -> str:
    got: Any = error.instance
    # The keyword's value and its subschema, as plain JSON data (jsonschema types them loosely).
    rule: Any = error.validator_value
    schema: Any = error.schema
    match error.validator:
        case "enum":
            expected = ", ".join(json.dumps(v) for v in rule)
            return f"expected one of {expected}, got {json.dumps(got)}"
        case "const":
            return f"expected {json.dumps(rule)}, got {json.dumps(got)}"
        case "type":
            wanted = " or ".join(rule) if isinstance(rule, list) else rule
            return f"expected {wanted}, got {_json_type(got)} {_short(got)}"
        case "required":
            missing = [key for key in rule if key not in got]
            return "missing " + ", ".join(repr(key) for key in missing)
        case "additionalProperties" if isinstance(got, dict):
            known = schema.get("properties", {})
            extra = [key for key in got if key not in known]
            return "unexpected " + ", ".join(repr(key) for key in extra)
        case _:
            return error.message


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _short(value: object) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
