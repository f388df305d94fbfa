"""``assert``: fail the step unless a boolean expression holds, such as a drill's RTO bound.

The executor resolves ``that`` before the action runs, so the action sees only the value, not
the expression's text; ``message`` says what failed, and the executor adds what a false
comparison compared (``Action.explains``): ``...: steps.v.drill_rto_p95_s = 6.04 >
params.rto_budget = 1``. Only ``true`` passes: ``false``, null or
any other value fails the step (a failed step is data, so the run goes on to its report), with
``passed: false`` as its outputs: it was evaluated and did not hold. An assert that could not be
evaluated (its expression raised, ``that`` missing) fails with no outputs; JUnit tells the two
apart (a failure, an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import Action, output_values

DEFAULT_MESSAGE = "assertion failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssertParams:
    that: object
    message: str | None = None

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> AssertParams:
        if "that" not in raw:
            raise StepFailedError("that is required")
        return cls(that=raw["that"], message=fields.text(raw, "message", "") or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssertOutputs:
    passed: bool = False


async def run(ctx: ActionContext, params: AssertParams) -> AssertOutputs:
    if params.that is not True:
        held = output_values(AssertOutputs(passed=False))
        if params.message:
            raise StepFailedError(params.message, outputs=held)
        got = "" if isinstance(params.that, bool) else f" (got {params.that!r}, not a boolean)"
        raise StepFailedError(f"{DEFAULT_MESSAGE}{got}", outputs=held)
    return AssertOutputs(passed=True)


ACTION = Action(
    name="assert",
    params=AssertParams.from_with,
    outputs=AssertOutputs,
    run=run,
    runs_in_plan=False,
    explains="that",
    plan_skip_reason="a plan makes no changes, so there are no results to assert on",
)
