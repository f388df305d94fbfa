"""Injected faults of the emulator: what can go wrong with a request, drawn from the seed.

``FaultConfig`` says how often; ``FaultInjector`` decides, request by request, from its own
``random.Random(f"{seed}:faults")``. Every faultable request draws the same four numbers (reset,
error, slow, lost response) in arrival order, whichever of them applies, so the same seed and the
same arrival order give the same faults. Concurrent requests can arrive in a different order from
one run to the next (the event loop, not the seed, decides who is first); a test that needs an
exact sequence sends its requests one at a time.

Latency and slow answers are real time (``asyncio.sleep``), not the fleet clock and not
``time_scale``: they exist to exercise a client's timeouts, which run on real time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from engine.units import parse_duration

# CLI key -> (FaultConfig field, kind)
_KEYS: dict[str, tuple[str, str]] = {
    "latency": ("latency_s", "duration"),
    "error_rate": ("error_rate", "rate"),
    "reset_rate": ("reset_rate", "rate"),
    "lost_response_rate": ("lost_response_rate", "rate"),
    "slow_rate": ("slow_rate", "rate"),
    "slow": ("slow_s", "duration"),
    "answer_delay": ("answer_delay_s", "duration"),
    "error_status": ("error_status", "status"),
    "lag_spike_rate": ("lag_spike_rate", "rate"),
    "lag_spike": ("lag_spike_s", "duration"),
    "too_frequent_rate": ("too_frequent_rate", "rate"),
    "busy_rate": ("busy_rate", "rate"),
}
# DRS.M00004 "service abnormal" comes as a 500 in OTC's table and as a 422 in Huawei's pages
# (the fact sheet's conflict): the emulator plays either, the client handles both.
ERROR_STATUSES = (500, 422)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """How often the emulator misbehaves; the default never does.

    Per DRS request, in this order: ``latency_s`` delay (every request), ``reset_rate`` the
    connection is closed before the request is processed, ``error_rate`` a 500 ``DRS.M00004``
    without processing, ``slow_rate`` a ``slow_s`` delay before processing, and
    ``lost_response_rate`` the request is processed, then the connection is closed before the
    answer is written. ``answer_delay_s``: a mutating request (batch-retry-task,
    batch-pause-task) is applied at once and answered that much later, so a client that dies
    meanwhile never learns the outcome of a change that happened.

    Not drawn by ``FaultInjector`` (each from its own generator, so adding one never moves the
    faults above): ``lag_spike_rate`` — a running job read by batch-progress jumps
    ``lag_spike_s`` behind, then drains (the fleet draws it, ``engine.emulator.lag``);
    ``too_frequent_rate`` / ``busy_rate`` — a well-formed batch-retry-task or batch-pause-task is
    refused whole with 400 ``DRS.M01503`` (operation too frequent) or 202 ``DRS.M01504`` (another
    operation is running), changing nothing (``BusyInjector``).
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    lost_response_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 2.0
    answer_delay_s: float = 0.0
    error_status: int = 500  # the HTTP status of the injected DRS.M00004: 500 or 422
    lag_spike_rate: float = 0.0
    lag_spike_s: float = 300.0
    too_frequent_rate: float = 0.0
    busy_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.error_status not in ERROR_STATUSES:
            raise ValueError(f"error_status must be 500 or 422, got {self.error_status}")
        rates = ("error_rate", "reset_rate", "lost_response_rate", "slow_rate")
        for name in (*rates, "lag_spike_rate", "too_frequent_rate", "busy_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("latency_s", "slow_s", "answer_delay_s", "lag_spike_s"):
            value = getattr(self, name)
            if value < 0.0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @property
    def enabled(self) -> bool:
        """Whether any fault can happen at all."""
        return self != FaultConfig()

    @staticmethod
    def parse(text: str) -> FaultConfig:
        """The ``--faults`` form: ``latency=50ms,error_rate=0.05,slow_rate=0.01,slow=3s``.

        Keys: ``latency``, ``slow``, ``answer_delay``, ``lag_spike`` (durations, ``ms`` or
        ``s``), ``error_status`` (500 or 422) and ``error_rate``, ``reset_rate``,
        ``lost_response_rate``, ``slow_rate``, ``lag_spike_rate``, ``too_frequent_rate``,
        ``busy_rate`` (numbers in [0, 1]). An empty
        string is no faults. An unknown key, a repeated key or a bad value is a ValueError whose
        message names the key.
        """
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = (s.strip() for s in item.partition("="))
            if key not in _KEYS:
                known = ", ".join(_KEYS)
                raise ValueError(f"unknown fault {key!r}; known faults are {known}")
            if not sep or not raw:
                raise ValueError(f"fault {key!r} needs a value, as in {key}=...")
            field_name, kind = _KEYS[key]
            if field_name in values:
                raise ValueError(f"fault {key!r} is given twice")
            if kind == "status":
                if raw not in {str(s) for s in ERROR_STATUSES}:
                    raise ValueError(f"fault {key!r} must be 500 or 422, got {raw!r}")
                values[field_name] = int(raw)
            elif kind == "duration":
                try:
                    values[field_name] = parse_duration(raw)
                except ValueError:
                    raise ValueError(
                        f"fault {key!r} must be a duration such as 50ms or 2s, got {raw!r}"
                    ) from None
            else:
                try:
                    rate = float(raw)
                except ValueError:
                    rate = -1.0
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"fault {key!r} must be a number from 0 to 1, got {raw!r}")
                values[field_name] = rate
        return FaultConfig(**values)

    def describe(self) -> str:
        """The config back in ``--faults`` form (only the non-default keys)."""
        default = FaultConfig()
        parts = []
        for key, (field_name, kind) in _KEYS.items():
            value = getattr(self, field_name)
            if value != getattr(default, field_name):
                parts.append(
                    f"{key}={value * 1000:g}ms" if kind == "duration" else f"{key}={value:g}"
                )  # (a status prints as itself: 422)
        return ",".join(parts)


FAULT_KINDS = ("latency", "reset", "error", "slow", "lost_response", "answer_delay")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRoll:
    """The faults decided for one request (the injector counts only those it applies)."""

    latency: bool = False
    reset: bool = False
    error: bool = False
    slow: bool = False
    lost_response: bool = False


NO_FAULTS = FaultRoll()


class FaultInjector:
    """Draws a ``FaultRoll`` per request from the seed, in arrival order.

    Not a scheduler: it decides, the app applies. Every ``roll`` consumes exactly four numbers,
    so which faults a request gets does not depend on what earlier requests were (IAM or DRS).
    """

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(f"{seed}:faults")

    def roll(self) -> FaultRoll:
        c = self.config
        if not c.enabled:
            return NO_FAULTS
        reset, error, slow, lost = (self._rng.random() for _ in range(4))
        return FaultRoll(
            latency=c.latency_s > 0,
            reset=reset < c.reset_rate,
            error=error < c.error_rate,
            slow=slow < c.slow_rate,
            lost_response=lost < c.lost_response_rate,
        )


class BusyInjector:
    """Decides, per well-formed batch-retry-task / batch-pause-task, whether the service refuses
    it whole: ``DRS.M01503`` (400) or ``DRS.M01504`` (202), or neither (None).

    Its own ``random.Random(f"{seed}:busy")``, two numbers per request once either rate is set:
    the other faults' draws do not move.
    """

    TOO_FREQUENT = (400, "DRS.M01503")
    OPERATION_RUNNING = (202, "DRS.M01504")

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(f"{seed}:busy")

    def roll(self) -> tuple[int, str] | None:
        c = self.config
        if c.too_frequent_rate <= 0 and c.busy_rate <= 0:
            return None
        too_frequent, busy = self._rng.random(), self._rng.random()
        if too_frequent < c.too_frequent_rate:
            return self.TOO_FREQUENT
        if busy < c.busy_rate:
            return self.OPERATION_RUNNING
        return None
