"""Durations and rates as runbooks and the command line write them: the one grammar of both.

    parse_duration("90s") == 90.0      250ms, 90s, 10m or 10min, 2h, 1h30m, 1m30s, or a number
                                       of seconds (<= 7 days)
    parse_rate("300/m") == 5.0         N/s, N/m, N/h: events per second

The runbook language, its params and the emulator's options all read them here, so a value one
accepts the others accept too. Imports nothing but the standard library.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# A duration is one or more parts, largest unit first, each unit at most once: 1h30m, 10min,
# 1m30s, 250ms. The schema's "duration" pattern is this one (tests hold them together).
DURATION_PATTERN = (
    rf"^(?!$)(?:({_NUMBER})h)?(?:({_NUMBER})(?:min|m))?(?:({_NUMBER})s)?(?:({_NUMBER})ms)?$"
)
_DURATION = re.compile(DURATION_PATTERN)
_PART_SECONDS = (3600.0, 60.0, 1.0, 0.001)  # the pattern's groups: h, m, s, ms
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_EXAMPLES = "250ms, 90s, 10min or 1h30m"
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?) */ *(s|m|h)")
# The longest duration anything here waits or allows: longer is a typo, or a run that would
# outlive every token, lock and human watching it.
MAX_DURATION_S = 7 * 24 * 3600.0


def parse_duration(value: int | float | str, *, limit_s: float | None = MAX_DURATION_S) -> float:
    """Seconds in a duration: a number of seconds, or ``250ms``, ``90s``, ``10m`` (``10min``),
    ``2h``, and parts of them largest first: ``1h30m``, ``1m30s``.

    Raises ValueError for anything else, including negative, infinite and NaN values, and
    durations over ``limit_s`` (7 days; None: no limit).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")  # noqa: TRY004 (one error type)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a duration such as {DURATION_EXAMPLES}, got {value!r}")
        seconds = sum(
            float(part) * size
            for part, size in zip(match.groups(), _PART_SECONDS, strict=True)
            if part is not None
        )
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a finite duration >= 0, got {value!r}")
    if limit_s is not None and seconds > limit_s:
        raise ValueError(
            f"expected a duration of at most {describe_seconds(limit_s)}, got {value!r}"
        )
    return seconds


def describe_seconds(seconds: float) -> str:
    """A limit as a person says it: 7 days, 2h, 90s."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            count = seconds / size
            return f"{count:g} {unit}" if unit == "days" else f"{count:g}{unit}"
    return f"{seconds:g}s"


def parse_rate(value: str) -> float:
    """Events per second in a rate: ``20/s`` is 20.0, ``300/m`` is 5.0, ``1/h`` is 1/3600.

    Raises ValueError for anything else, and for a rate that is not > 0.
    """
    match = _RATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a rate such as 20/s, 300/m or 1/h, got {value!r}")
    per_second = float(match[1]) / _UNIT_SECONDS[match[2]]
    if not math.isfinite(per_second) or per_second <= 0:
        raise ValueError(f"expected a rate > 0, got {value!r}")
    return per_second


def describe_delay(seconds: float) -> str:
    """A replication delay as an operator reads it: ``178s``, ``7.3s``, ``0.4s`` (whole seconds
    from 10 s up: the millisecond the service measured says nothing at that size)."""
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")


def describe_span(seconds: float) -> str:
    """A stretch of time as a progress line shows it, in words ``parse_duration`` reads back:
    ``0.4s``, ``3s``, ``12s``, ``1m05s``, ``15m``, ``1h30m`` (no seconds from an hour up)."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
