"""Runbook parameters: their model and their static types (binding values is ``binding``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.errors import Diagnostic, Location
from engine.rules import Rule
from engine.runbook.evaluation import equal
from engine.runbook.parse import SourceMap
from engine.runbook.schema import show
from engine.units import parse_duration


class ParamType(StrEnum):
    """The types a param may declare; values are the YAML words."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    DURATION = "duration"


# The largest integer a param may hold: JSON's exact range (2^53 - 1), so the journal, the
# report and every tool reading them keep it as it was given.
MAX_INTEGER = 2**53 - 1
# The most jobs a guard rail (max_jobs, max_jobs_total, max_errors) may name: validate refuses
# more, as the command line does.
MAX_GUARD_RAIL = 1_000_000
TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One declared parameter; ``default`` and ``enum`` are already in the bound form."""

    name: str
    type: str
    default: Any = None
    enum: tuple[Any, ...] | None = None
    description: str | None = None
    required: bool = False
    items_type: str | None = None  # for arrays: string, integer or number
    location: Location

    @property
    def static_type(self) -> str:
        """The param's type in the expression language (a duration is a number of seconds)."""
        if self.type == ParamType.ARRAY:
            return f"list[{self.items_type or 'string'}]"
        if self.type == ParamType.DURATION:
            return "number"
        return self.type


def build_params(data: Mapping[str, Any], source: SourceMap) -> tuple[Param, ...]:
    """The params of a runbook whose ``params:`` passed the schema and the checks."""
    params: list[Param] = []
    for name, spec in (data.get("params") or {}).items():
        kind = spec["type"]
        items = spec.get("items") or {}
        items_type = items.get("type", "string") if kind == ParamType.ARRAY else None
        default = spec.get("default")
        enum = spec.get("enum")
        params.append(
            Param(
                name=name,
                type=kind,
                default=None if default is None else _convert(kind, items_type, default),
                enum=None if enum is None else tuple(_convert(kind, items_type, v) for v in enum),
                description=spec.get("description"),
                required=bool(spec.get("required", False)),
                items_type=items_type,
                location=source.key(("params", name)),
            )
        )
    return tuple(params)


def _convert(kind: str, items_type: str | None, value: Any) -> Any:
    """A typed value (from YAML) in its bound form: durations in seconds, numbers as float."""
    if kind == ParamType.DURATION:
        return parse_duration(value)
    if kind == ParamType.NUMBER:
        return float(value)
    if kind == ParamType.ARRAY:
        return [float(v) if items_type == ParamType.NUMBER else v for v in value]
    return value


def static_checks(data: Mapping[str, Any], source: SourceMap) -> list[Diagnostic]:
    """What the schema cannot say about ``params:``: defaults outside the enum, contradictions."""
    found: list[Diagnostic] = []
    params = data.get("params")
    if not isinstance(params, dict):
        return found
    for name, spec in params.items():
        if not isinstance(spec, dict):
            continue
        kind, enum, default = spec.get("type"), spec.get("enum"), spec.get("default")
        items = spec.get("items")
        items_type = items.get("type") if isinstance(items, dict) else "string"
        if spec.get("required") is True and "default" in spec:
            found.append(
                Diagnostic(
                    location=source.key(("params", name, "default")),
                    rule=Rule.VALUE,
                    message=f"params.{name}: a required param cannot have a default",
                    hint="drop 'default' or 'required: true'",
                )
            )
        if not isinstance(enum, list) or default is None or not isinstance(kind, str):
            continue
        try:
            allowed = [_convert(kind, items_type, v) for v in enum]
            value = _convert(kind, items_type, default)
        except (ValueError, TypeError):
            continue  # the schema reports values of the wrong type
        if not any(equal(value, choice) for choice in allowed):
            choices = ", ".join(show(v) for v in enum)
            found.append(
                Diagnostic(
                    location=source.value(("params", name, "default")),
                    rule=Rule.VALUE,
                    message=f"params.{name}.default: {show(default)} is not one of {choices}",
                )
            )
    return found
