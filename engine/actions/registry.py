"""Each action name bound to its implementation, in one explicit registry (the executor's view;
names, outputs and which ones change jobs come from ``engine.actions.catalog``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.actions import assertion, batch_retry, pause_jobs, select_jobs, sleep, verify_status
from engine.actions.catalog import CATALOG, MUTATING
from engine.actions.context import ActionContext, StepFailedError

Runner = Callable[[ActionContext, Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """What the executor and the validator need to know about an action."""

    name: str
    run: Runner
    default_timeout_s: float | None = None
    # Called (with a fresh time budget) when the step failed or was cut short, to learn what
    # its in-flight mutating requests did.
    after_failure: Callable[[ActionContext], Awaitable[None]] | None = None
    # In a plan, a mutating action runs its preview instead (read-only calls at most);
    # an action that only makes sense after mutations is not run at all.
    preview: Runner | None = None
    runs_in_plan: bool = True
    # A self-timed action gets ctx.deadline and returns by it with its results (verify records
    # timed-out jobs); the executor only cancels it if it overruns by a margin.
    self_timed: bool = False
    # Why a plan does not run it (runs_in_plan False), as the plan's step message says it.
    plan_skip_reason: str = "a plan makes no changes, so there is nothing to verify"

    @property
    def outputs(self) -> Mapping[str, str]:
        """Output name -> its type in the expression language (from the catalog)."""
        return CATALOG[self.name]

    @property
    def mutating(self) -> bool:
        """Whether the action changes jobs (from the catalog)."""
        return MUTATING[self.name]


P = TypeVar("P")


def _params(build: Callable[[Mapping[str, Any]], P], raw: Mapping[str, Any]) -> P:
    """An action's params from resolved ``with`` values; a value a param or an expression gave
    at run time that does not fit fails the step, it does not crash the run."""
    try:
        return build(raw)
    except (ValueError, TypeError) as exc:
        raise StepFailedError(f"invalid parameters: {exc}") from exc


async def _select(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await select_jobs.run(ctx, _params(select_jobs.SelectJobsParams.from_with, raw))


async def _retry(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await batch_retry.run(ctx, _params(batch_retry.BatchRetryParams.from_with, raw))


async def _preview_retry(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return batch_retry.preview(ctx, _params(batch_retry.BatchRetryParams.from_with, raw))


async def _pause(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await pause_jobs.run(ctx, _params(pause_jobs.PauseJobsParams.from_with, raw))


async def _preview_pause(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return pause_jobs.preview(ctx, _params(pause_jobs.PauseJobsParams.from_with, raw))


async def _sleep(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await sleep.run(ctx, _params(sleep.SleepParams.from_with, raw))


async def _assert(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await assertion.run(ctx, _params(assertion.AssertParams.from_with, raw))


async def _verify(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await verify_status.run(ctx, _params(verify_status.VerifyStatusParams.from_with, raw))


async def _approve(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    # The executor answers approve steps itself, once for all targets (a gate).
    raise AssertionError("approve is a gate handled by the executor")


REGISTRY: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            name="drs.select_jobs",
            run=_select,
        ),
        ActionSpec(
            name="drs.batch_retry",
            run=_retry,
            after_failure=batch_retry.reconcile_unanswered,
            preview=_preview_retry,
        ),
        ActionSpec(
            name="drs.verify_status",
            run=_verify,
            default_timeout_s=600.0,
            self_timed=True,
            runs_in_plan=False,
        ),
        ActionSpec(
            name="drs.pause_jobs",
            run=_pause,
            after_failure=pause_jobs.reconcile_unanswered,
            preview=_preview_pause,
        ),
        ActionSpec(
            name="sleep",
            run=_sleep,
            runs_in_plan=False,
            plan_skip_reason="a plan does not wait",
        ),
        ActionSpec(
            name="assert",
            run=_assert,
            runs_in_plan=False,
            plan_skip_reason="a plan makes no changes, so there are no results to assert on",
        ),
        ActionSpec(
            name="approve",
            run=_approve,
            runs_in_plan=False,
            plan_skip_reason="a plan asks for no approval",
        ),
    )
}
