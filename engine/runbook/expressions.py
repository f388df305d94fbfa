"""References ``${{ steps.<id>.<output> }}`` between steps, and durations such as ``90s``.

A reference is not a template language: it is the whole value of a field, names one output of
an earlier step, and is replaced by that value at run time. Nothing is ever evaluated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import Location

EXPRESSION_START = "${{"
REFERENCE = re.compile(r"\$\{\{ *steps\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*) *\}\}")
EXPECTED_REFERENCE = "${{ steps.<id>.<output> }}"

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """One output of an earlier step, as written in the runbook."""

    step_id: str
    output: str
    text: str
    location: Location

    def __str__(self) -> str:
        return self.text


def is_expression(value: object) -> bool:
    """Whether ``value`` is a string that means to be a reference (and must be a valid one)."""
    return isinstance(value, str) and EXPRESSION_START in value


def reference_names(text: str) -> tuple[str, str] | None:
    """(step id, output) if ``text`` is exactly one reference, else None."""
    match = REFERENCE.fullmatch(text)
    return None if match is None else (match[1], match[2])


def parse_reference(text: str, location: Location) -> Reference | None:
    """The reference ``text`` spells in full, or None if it is not exactly one reference."""
    names = reference_names(text)
    if names is None:
        return None
    return Reference(step_id=names[0], output=names[1], text=text, location=location)


def parse_duration(value: int | float | str) -> float:
    """Seconds in a duration: a number of seconds, or ``250ms``, ``90s``, ``10m``, ``2h``.

    Raises ValueError for anything else, including negative, infinite and NaN values.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")  # noqa: TRY004 (one error type)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a duration such as 250ms, 90s, 10m or 2h, got {value!r}")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a finite duration >= 0, got {value!r}")
    return seconds


def resolve(value: Any, lookup: Callable[[Reference], Any]) -> Any:
    """``value`` with every Reference in it (in lists and mappings too) replaced by ``lookup``."""
    if isinstance(value, Reference):
        return lookup(value)
    if isinstance(value, Mapping):
        return {key: resolve(item, lookup) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, lookup) for item in value]
    return value
