"""Binding the param values a run is given: ``--param``, a params file, the defaults.

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
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic, Location, RunbookInvalidError
from engine.rules import Rule
from engine.runbook.evaluation import equal
from engine.runbook.model import Runbook
from engine.runbook.params import FALSE_WORDS, MAX_INTEGER, TRUE_WORDS, Param, ParamType
from engine.runbook.parse import JsonPath, read_yaml
from engine.runbook.schema import show, suggest
from engine.surrogates import described, lone_surrogate_at, replace_lone_surrogates
from engine.units import parse_duration


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
                    rule=Rule.PARAM,
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
    return Diagnostic(location=location, message=f"param '{param.name}': {detail}", rule=Rule.PARAM)


def _unknown(
    name: str, declared: Mapping[str, Param], location: Location, where: str
) -> Diagnostic:
    hint = suggest(name, declared)
    if hint is None:
        hint = f"params: {', '.join(declared)}" if declared else "the runbook declares no params"
    return Diagnostic(
        location=location,
        message=f"unknown param '{replace_lone_surrogates(name)}' (from {where})",
        rule=Rule.PARAM,
        hint=hint,
    )


def _expected(param: Param) -> str:
    return param.static_type if param.type != ParamType.DURATION else "duration"


def _from_text(param: Param, text: str) -> Any:
    """A ``--param`` value (always a string) parsed per the param's type."""
    if (index := lone_surrogate_at(text)) is not None:  # no journal or report could write it
        raise _ValueProblem(
            f"the value is not UTF-8 text ({described(text[index])} at character {index + 1})"
        )
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
        for number, item in enumerate(loaded, start=1):
            if isinstance(item, str) and (index := lone_surrogate_at(item)) is not None:
                raise _ValueProblem(  # json.loads reads a "\ud800" escape as one
                    f"item {number} escapes \\u{ord(item[index]):04x}, half of a UTF-16 "
                    "surrogate pair, not a character"
                )
        return [item if isinstance(item, str) else json.dumps(item) for item in loaded]
    return [item.strip() for item in stripped.split(",")] if stripped else []


def _scalar_from_text(param: Param, kind: str, text: str) -> Any:
    word = text.strip()
    wrong = _ValueProblem(f"expected {_expected(param)}, got {show(text)}")
    if kind == ParamType.STRING:
        return text
    if kind == ParamType.BOOLEAN:
        if word.lower() in TRUE_WORDS:
            return True
        if word.lower() in FALSE_WORDS:
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
    if kind == ParamType.INTEGER:
        # Digits first: int() of thousands of digits is slow, then refused by Python itself.
        if len(word.lstrip("-")) > len(str(MAX_INTEGER)):
            raise _out_of_range(text)
        return _bounded(int(word), text)
    number = float(word)
    if not math.isfinite(number):
        raise wrong
    return number


def _bounded(number: int, given: object) -> int:
    if not -MAX_INTEGER <= number <= MAX_INTEGER:
        raise _out_of_range(given)
    return number


def _out_of_range(given: object) -> _ValueProblem:
    return _ValueProblem(
        f"expected an integer between -{MAX_INTEGER} and {MAX_INTEGER}, got {show(given)}"
    )


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
        return _bounded(value, value)
    if kind == ParamType.NUMBER and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise wrong
