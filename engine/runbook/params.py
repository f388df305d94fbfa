"""Runbook parameters: their model, their static types, and binding the values a run is given.

    bind_params(runbook, given, params_file)  ->  {name: value}, or RunbookInvalidError

Values come from ``--param NAME=VALUE`` (raw strings, parsed per the param's type), from a params
file (a YAML or JSON mapping of typed values, read with the runbook's safe parser) and from the
defaults, in that order of precedence. A param that is neither given, nor defaulted, nor required
is null. Every problem is a Diagnostic naming the param, all of them at once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Diagnostic, Location, RunbookInvalidError
from engine.runbook.expressions import equal, parse_duration
from engine.runbook.parse import JsonPath, SourceMap, read_yaml
from engine.runbook.schema import show, suggest

if TYPE_CHECKING:
    from engine.runbook.model import Runbook


class ParamType(StrEnum):
    """The types a param may declare; values are the YAML words."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    DURATION = "duration"


_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


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
                    message=f"params.{name}.default: {show(default)} is not one of {choices}",
                )
            )
    return found


# ----------------------------------------------------------------------------- binding


class _ValueProblem(ValueError):
    """A value does not fit a param; the message says what was expected and what came."""


def bind_params(
    runbook: Runbook, given: Mapping[str, str], params_file: Path | None = None
) -> Mapping[str, Any]:
    """Every param's value for a run: ``given`` (from ``--param``) > the params file > default.

    Raises RunbookInvalidError naming each unknown param, value of the wrong type or outside
    the enum, and required param without a value.
    """
    declared = {param.name: param for param in runbook.params}
    problems: list[Diagnostic] = []
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    params_key = runbook.params_location or Location(path=runbook.path, line=1, col=1)

    if params_file is not None:
        parsed = read_yaml(params_file, kind="params file", expected="param name: value")
        for name, raw in parsed.data.items():
            at: JsonPath = (name,)
            param = declared.get(name)
            if param is None:
                problems.append(_unknown(name, declared, parsed.source.key(at), "params file"))
                continue
            try:
                values[name] = _typed(param, raw)
            except _ValueProblem as exc:
                problems.append(
                    _problem(param, f"{exc} (from {params_file})", parsed.source.value(at))
                )
            origin[name] = "params file"

    for name, text in given.items():
        param = declared.get(name)
        if param is None:
            problems.append(_unknown(name, declared, params_key, "--param"))
            continue
        try:
            values[name] = _from_text(param, text)
        except _ValueProblem as exc:
            problems.append(_problem(param, f"{exc} (from --param)", param.location))
        origin[name] = "--param"

    bound: dict[str, Any] = {}
    for param in runbook.params:
        if param.name in values:
            value = values[param.name]
            if param.enum is not None and not any(equal(value, v) for v in param.enum):
                choices = ", ".join(show(v) for v in param.enum)
                detail = f"{show(value)} is not one of {choices} (from {origin[param.name]})"
                problems.append(_problem(param, detail, param.location))
            bound[param.name] = value
        elif param.default is not None:
            bound[param.name] = param.default
        elif param.required:
            problems.append(
                Diagnostic(
                    location=param.location,
                    message=f"param '{param.name}' is required",
                    hint=f"give --param {param.name}=VALUE or set it in a params file",
                )
            )
        else:
            bound[param.name] = None
    if problems:
        raise RunbookInvalidError(problems)
    return bound


def _problem(param: Param, detail: str, location: Location) -> Diagnostic:
    return Diagnostic(location=location, message=f"param '{param.name}': {detail}")


def _unknown(
    name: str, declared: Mapping[str, Param], location: Location, where: str
) -> Diagnostic:
    hint = suggest(name, declared)
    if hint is None:
        hint = f"params: {', '.join(declared)}" if declared else "the runbook declares no params"
    return Diagnostic(
        location=location, message=f"unknown param '{name}' (from {where})", hint=hint
    )


def _expected(param: Param) -> str:
    return param.static_type if param.type != ParamType.DURATION else "duration"


def _from_text(param: Param, text: str) -> Any:
    """A ``--param`` value (always a string) parsed per the param's type."""
    kind = param.type
    if kind == ParamType.STRING:
        return text
    if kind == ParamType.ARRAY:
        items = _text_list(param, text)
        return [_scalar_from_text(param, param.items_type or "string", item) for item in items]
    return _scalar_from_text(param, kind, text)


def _text_list(param: Param, text: str) -> list[Any]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except ValueError:
            raise _ValueProblem(f"expected {_expected(param)}, got {show(text)}") from None
        scalars = (
            all(
                isinstance(item, str | int | float) and not isinstance(item, bool)
                for item in loaded
            )
            if isinstance(loaded, list)
            else False
        )
        if not scalars:
            # null, true, objects or nested lists are not items of a string or number list
            raise _ValueProblem(f"expected {_expected(param)}, got {show(text)}")
        return [item if isinstance(item, str) else json.dumps(item) for item in loaded]
    return [item.strip() for item in stripped.split(",")] if stripped else []


def _scalar_from_text(param: Param, kind: str, text: str) -> Any:
    word = text.strip()
    wrong = _ValueProblem(f"expected {_expected(param)}, got {show(text)}")
    if kind == ParamType.STRING:
        return text
    if kind == ParamType.BOOLEAN:
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise wrong
    if kind == ParamType.DURATION:
        try:
            return parse_duration(float(word) if _is_decimal(word) else word)
        except ValueError:
            raise wrong from None
    # ASCII digits only: int() and float() would also take "1_000" and other scripts' digits.
    if not _NUMBER.fullmatch(word) or (kind == ParamType.INTEGER and not _INTEGER.fullmatch(word)):
        raise wrong
    number: int | float = int(word) if kind == ParamType.INTEGER else float(word)
    if isinstance(number, float) and not math.isfinite(number):
        raise wrong
    return number


_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _is_decimal(word: str) -> bool:
    head, _, tail = word.partition(".")
    return head.isdigit() and (not tail or tail.isdigit())


def _typed(param: Param, value: Any) -> Any:
    """A typed value (from the params file) checked against the param's type."""
    kind = param.type
    wrong = _ValueProblem(f"expected {_expected(param)}, got {show(value)}")
    if kind == ParamType.ARRAY:
        if not isinstance(value, list):
            raise wrong
        return [_typed_scalar(param.items_type or "string", item, wrong) for item in value]
    if kind == ParamType.DURATION:
        try:
            return parse_duration(value)
        except ValueError:
            raise wrong from None
    return _typed_scalar(kind, value, wrong)


def _typed_scalar(kind: str, value: Any, wrong: _ValueProblem) -> Any:
    if kind == ParamType.STRING and isinstance(value, str):
        return value
    if kind == ParamType.BOOLEAN and isinstance(value, bool):
        return value
    if isinstance(value, bool):
        raise wrong
    if kind == ParamType.INTEGER and isinstance(value, int):
        return value
    if kind == ParamType.NUMBER and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise wrong
