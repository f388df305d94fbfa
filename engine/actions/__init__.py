"""The actions a runbook step can name, in one explicit registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import batch_retry, select_jobs, verify_status
from engine.actions.context import ActionContext

Runner = Callable[[ActionContext, Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """What the executor and the validator need to know about an action."""

    name: str
    # Output name -> its type in the expression language: string, integer, number, boolean,
    # list[string].
    outputs: Mapping[str, str]
    mutating: bool
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


async def _select(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await select_jobs.run(ctx, select_jobs.SelectJobsParams.from_with(raw))


async def _retry(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await batch_retry.run(ctx, batch_retry.BatchRetryParams.from_with(raw))


async def _preview_retry(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return batch_retry.preview(ctx, batch_retry.BatchRetryParams.from_with(raw))


async def _verify(ctx: ActionContext, raw: Mapping[str, Any]) -> dict[str, Any]:
    return await verify_status.run(ctx, verify_status.VerifyStatusParams.from_with(raw))


REGISTRY: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            name="drs.select_jobs",
            outputs={"jobs": "list[string]", "skipped": "list[string]", "count": "integer"},
            mutating=False,
            run=_select,
        ),
        ActionSpec(
            name="drs.batch_retry",
            outputs={"accepted": "list[string]", "rejected": "list[string]"},
            mutating=True,
            run=_retry,
            after_failure=batch_retry.reconcile_unanswered,
            preview=_preview_retry,
        ),
        ActionSpec(
            name="drs.verify_status",
            outputs={
                "recovered": "list[string]",
                "failed": "list[string]",
                "timed_out": "list[string]",
                "recovered_ratio": "number",
            },
            mutating=False,
            run=_verify,
            default_timeout_s=600.0,
            self_timed=True,
            runs_in_plan=False,
        ),
    )
}

# Action name -> output name -> type: what `runbook validate` checks references against.
CATALOG: dict[str, Mapping[str, str]] = {name: spec.outputs for name, spec in REGISTRY.items()}
MUTATING: dict[str, bool] = {name: spec.mutating for name, spec in REGISTRY.items()}
