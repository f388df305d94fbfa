"""``sleep``: wait a fixed time between two steps, such as the length of a drill's outage.

A sleep is not a way to wait for a state: to wait until jobs run again, use
``drs.verify_status``, which polls with a deadline. The step's ``timeout`` still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import Action


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepParams:
    duration_s: float

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> SleepParams:
        if "duration" not in raw:
            raise StepFailedError("duration is required")
        return cls(duration_s=fields.seconds(raw, "duration", 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepOutputs:
    slept_s: float = 0.0


async def run(ctx: ActionContext, params: SleepParams) -> SleepOutputs:
    started = ctx.now()
    await ctx.sleep(params.duration_s)
    return SleepOutputs(slept_s=round(ctx.now() - started, 3))


ACTION = Action(
    name="sleep",
    params=SleepParams.from_with,
    outputs=SleepOutputs,
    run=run,
    runs_in_plan=False,
    plan_skip_reason="a plan does not wait",
    default_timeout_s=None,  # its own duration bounds it (at most 7 days, as every duration)
)
