"""Reading resolved ``with`` values strictly: a param or an expression may give anything at
run time, and a wrong value (null included) must fail the step, never be coerced.

``str(None)`` would select jobs named "None"; ``bool(None)`` would switch a safety filter off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, overload

from engine.actions.context import StepFailedError
from engine.runbook.evaluation import kind_of
from engine.units import parse_duration


def _given(raw: Mapping[str, Any], key: str) -> Any:
    value = raw[key]
    if value is None:
        raise StepFailedError(f"{key} must not be null")
    return value


def text(raw: Mapping[str, Any], key: str, default: str) -> str:
    if key not in raw:
        return default
    value = _given(raw, key)
    if not isinstance(value, str):
        raise StepFailedError(f"{key} must be a string, got {kind_of(value)}")
    return value


def flag(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    if key not in raw:
        return default
    value = _given(raw, key)
    if not isinstance(value, bool):
        raise StepFailedError(f"{key} must be a boolean, got {kind_of(value)}")
    return value


def whole(raw: Mapping[str, Any], key: str, default: int | None) -> int | None:
    if key not in raw:
        return default
    value = _given(raw, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StepFailedError(f"{key} must be an integer, got {kind_of(value)}")
    return value


@overload
def seconds(raw: Mapping[str, Any], key: str, default: float) -> float: ...


@overload
def seconds(raw: Mapping[str, Any], key: str, default: None) -> float | None: ...


def seconds(raw: Mapping[str, Any], key: str, default: float | None) -> float | None:
    if key not in raw:
        return default
    try:
        return parse_duration(_given(raw, key))
    except ValueError as exc:
        raise StepFailedError(f"{key}: {exc}") from exc


def texts(raw: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """One string or a list of strings."""
    if key not in raw:
        return default
    value = _given(raw, key)
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise StepFailedError(f"{key} must be a string or a list of strings, got {kind_of(value)}")
    return tuple(values)


def labels(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    """A mapping of strings to strings (tags); absent: empty."""
    if key not in raw:
        return {}
    value = _given(raw, key)
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise StepFailedError(f"{key} must map strings to strings, got {kind_of(value)}")
    return dict(value)


def job_ids(value: object) -> tuple[str, ...]:
    """The ``jobs`` parameter as unique ids in order; a reference may resolve to anything."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise StepFailedError(f"jobs must be a list of job ids, got {type(value).__name__}")
    return tuple(dict.fromkeys(value))
