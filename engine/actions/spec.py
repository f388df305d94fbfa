"""What an action is: its typed params and outputs, how it runs, previews and is reconciled.

Each action module defines ``Params`` and ``Outputs`` (frozen dataclasses) and one ``ACTION``;
``engine.actions.registry`` collects them. An action's outputs are what later steps read as
``steps.<id>.<name>``: ``Outputs`` with every field at its default is the empty outputs of a step
that did not run, and its field types are the expression language's types (``output_types``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from engine.actions.context import ActionContext, StepFailedError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# A value of a step's outputs, as expressions and the journal see it.
OutputValue = str | int | float | bool | list[str]
StepOutputs = Mapping[str, OutputValue]

ParamsT = TypeVar("ParamsT")
OutputsT = TypeVar("OutputsT", bound="DataclassInstance")

# Python type of an Outputs field -> its type in the expression language.
_EXPRESSION_TYPES: Mapping[object, str] = {
    tuple[str, ...]: "list[string]",
    int: "integer",
    float: "number",
    # An output a step may not give (absent from its outputs: ``output_values``).
    float | None: "number",
    bool: "boolean",
    str: "string",
}

# The timeout of a step whose runbook sets none (verify_status has its own, 600s).
DEFAULT_STEP_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Action(Generic[ParamsT, OutputsT]):
    """One step action: what the executor, the planner and the validator know about it.

    ``run`` gets the step's ``Params``; ``preview`` (mutating actions) works out what ``run`` would
    send, on a scratch copy of the jobs, sending nothing; ``after_failure`` learns, with a fresh
    time budget, what a cut-short step's in-flight requests did. A ``gate`` is answered by the
    executor itself, once for every target (``approve``); it is not run per target.
    """

    name: str
    params: Callable[[Mapping[str, Any]], ParamsT]
    outputs: type[OutputsT]
    run: Callable[[ActionContext, ParamsT], Awaitable[OutputsT]]
    mutating: bool = False
    gate: bool = False
    preview: Callable[[ActionContext, ParamsT], OutputsT] | None = None
    after_failure: Callable[[ActionContext], Awaitable[None]] | None = None
    # Every step has a deadline unless it says otherwise: a server answering slowly must not
    # hold a run for ever (select over a huge fleet included). None: bounded by itself (sleep).
    default_timeout_s: float | None = DEFAULT_STEP_TIMEOUT_S
    # A self-timed action gets ctx.deadline and returns by it with its results (verify records
    # timed-out jobs); the executor only cancels it if it overruns by a margin.
    self_timed: bool = False
    # In a plan, a mutating action runs its preview instead; an action that only makes sense
    # after mutations is not run at all, and the plan's step message says why.
    runs_in_plan: bool = True
    # The ``with`` key whose expression a failure of the step explains (``assert``: ``that``):
    # the executor adds both sides of a false comparison with their values to the message.
    explains: str | None = None
    plan_skip_reason: str = "a plan makes no changes, so there is nothing to verify"

    def bind(self, raw: Mapping[str, Any]) -> ParamsT:
        """The step's params from its resolved ``with`` values; a value a param or an expression
        gave at run time that does not fit fails the step, it does not crash the run."""
        try:
            return self.params(raw)
        except (ValueError, TypeError) as exc:
            raise StepFailedError(f"invalid parameters: {exc}") from exc

    async def execute(self, ctx: ActionContext, raw: Mapping[str, Any]) -> StepOutputs:
        return output_values(await self.run(ctx, self.bind(raw)))

    def plan(self, ctx: ActionContext, raw: Mapping[str, Any]) -> StepOutputs:
        """What ``execute`` would do, worked out by the preview; nothing is sent."""
        if self.preview is None:
            raise StepFailedError("this action has no preview")
        return output_values(self.preview(ctx, self.bind(raw)))

    def empty_outputs(self) -> StepOutputs:
        """The outputs of a step that did not run: later steps may still read them."""
        return output_values(self.outputs())

    def output_types(self) -> Mapping[str, str]:
        """Output name -> its type in the expression language (what the catalog must say)."""
        hints = typing.get_type_hints(self.outputs)
        return {f.name: _EXPRESSION_TYPES[hints[f.name]] for f in dataclasses.fields(self.outputs)}


def output_values(outputs: DataclassInstance) -> dict[str, OutputValue]:
    """An ``Outputs`` instance as later steps and the journal see it (tuples as lists). An
    output that is None is left out: the step gave none (a verify step's ``drill_rto_p95_s``
    outside a drill), and an expression reading it says so rather than reading a made-up 0."""
    values: dict[str, OutputValue] = {}
    for item in dataclasses.fields(outputs):
        value = getattr(outputs, item.name)
        if value is None:
            continue
        values[item.name] = list(value) if isinstance(value, tuple) else value
    return values
