"""One step in one target: its ``when``, its attempts, its time limit, what a failure leaves.

A step is attempted up to ``retries.max_attempts`` times with full-jitter waits between
attempts; each attempt has the step's whole timeout (``asyncio.timeout``), except that a
self-timed action (verify) gets the deadline and returns by it with its results, and is cut
only if it overruns by ``SELF_TIMED_MARGIN_S``. A step that failed or was cut short is followed
by its action's ``after_failure`` (with a budget of its own) to learn what its in-flight
requests did. In a plan, a mutating action runs its preview, and actions that make no sense
without changes are not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.actions.budget import ErrorBudget
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.registry import REGISTRY
from engine.actions.spec import Action
from engine.api.protocol import DrsApi
from engine.errors import ApiError, StorageError
from engine.ledger import JobBook
from engine.redact import redact
from engine.run.result import Planned, StepOutcome, StepStatus
from engine.runbook import Step
from engine.runbook.evaluation import evaluate, explain, kind_of, resolve
from engine.runbook.expressions import Expression, ExpressionError, Scope

logger = logging.getLogger(__name__)

# How long a self-timed action may overrun its deadline before it is cancelled.
SELF_TIMED_MARGIN_S = 30.0
# The time an after-failure reconciliation may take (its own budget: the step's is spent).
AFTER_FAILURE_BUDGET_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTiming:
    """What a display needs to show a step's time as it starts: how long each attempt may take
    (a verify step's deadline), and whether it starts over in a resumed run. Not a schedule:
    the step's own ``asyncio.timeout`` is what holds it to the limit."""

    timeout_s: float | None  # None: the step has no time limit
    resumed: bool = False  # run by a resumed run: its deadline counts from now, in full


def timeout_of(step: Step) -> float | None:
    """The time limit of each attempt at ``step``: its ``timeout``, else its action's default."""
    return step.timeout_s if step.timeout_s is not None else REGISTRY[step.action].default_timeout_s


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRunner:
    """Carries out steps for one run: in a plan or for real, on the run's clock."""

    plan: bool
    max_jobs: int | None  # the runbook's cap per mutating step per target
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Applying a plan file: project id -> step id -> job id -> the status it was planned on.
    planned: Planned | None = None

    async def run(
        self,
        step: Step,
        *,
        api: DrsApi,
        jobs: JobBook,
        project_id: str,
        scope: Scope,
        errors: ErrorBudget,
    ) -> StepOutcome:
        action = REGISTRY[step.action]
        if self.plan and not action.runs_in_plan:
            skipped = StepOutcome.not_run(step, action.plan_skip_reason)
            skipped.outputs = dict(action.empty_outputs())  # later steps may read them
            return skipped
        started = self.clock()
        outcome = StepOutcome(step_id=step.id, action=step.action, status=StepStatus.SUCCEEDED)
        outcome.started_t = round(started, 3)
        if step.when is not None:
            try:
                run_it = evaluate(step.when, scope)
            except ExpressionError as exc:
                outcome.status, outcome.message = StepStatus.FAILED, exc.format_message()
                return outcome
            if not isinstance(run_it, bool):
                outcome.status = StepStatus.FAILED
                outcome.message = f"when {step.when.text} gave {kind_of(run_it)}, not a boolean"
                return outcome
            if not run_it:
                outcome.status = StepStatus.SKIPPED
                outcome.message = f"skipped: when {step.when.text} is false"
                # Later steps may still refer to its outputs: they are empty, not missing.
                outcome.outputs = dict(action.empty_outputs())
                return outcome
        ctx = ActionContext(
            api=api,
            jobs=jobs,
            step_id=step.id,
            project_id=project_id,
            max_jobs=self.max_jobs,
            errors=errors,
            sleep=self.sleep,
            planning=self.plan,
            planned=None
            if self.planned is None
            else self.planned.get(project_id, {}).get(step.id, {}),
        )
        for attempt in range(1, step.retries.max_attempts + 1):
            outcome.attempts = attempt
            message = await self._attempt(step, action, ctx, scope, outcome)
            if message is None:
                outcome.status, outcome.message = StepStatus.SUCCEEDED, None
                break
            outcome.status, outcome.message = StepStatus.FAILED, redact(message)
            logger.warning(
                "step %r failed in %s (attempt %d of %d): %s",
                step.id,
                project_id,
                attempt,
                step.retries.max_attempts,
                message,
            )
            if attempt < step.retries.max_attempts:
                await self.sleep(_backoff_s(step, attempt))
        if outcome.status is StepStatus.FAILED and not self.plan:
            await _after_failure(action, ctx)
        outcome.notices = ctx.notices
        outcome.duration_s = round(self.clock() - started, 3)
        return outcome

    async def _attempt(
        self,
        step: Step,
        action: Action[Any, Any],
        ctx: ActionContext,
        scope: Scope,
        outcome: StepOutcome,
    ) -> str | None:
        """One attempt at the step; None when it succeeded, else why it failed."""
        timeout_s = timeout_of(step)
        try:
            raw = resolve(step.with_, scope)
            if self.plan and action.preview is not None:
                outcome.outputs = dict(action.plan(ctx, raw))
            elif timeout_s is None:
                outcome.outputs = dict(await action.execute(ctx, raw))
            else:
                if action.self_timed:
                    ctx.deadline = self.clock() + timeout_s
                    timeout_s += SELF_TIMED_MARGIN_S
                async with asyncio.timeout(timeout_s):
                    outcome.outputs = dict(await action.execute(ctx, raw))
        except StepFailedError as exc:
            if exc.outputs is not None:
                outcome.outputs = dict(exc.outputs)
            return _explained(str(exc), step, action, scope)
        except (ExpressionError, ApiError) as exc:
            return exc.format_message()
        except TimeoutError:
            return f"timed out after {timeout_s:g}s"
        except asyncio.CancelledError:
            if not self.plan:
                await _shielded_after_failure(action, ctx)
            raise
        except StorageError:
            # The journal failed: the run stops, but what is in flight here is learnt first.
            if not self.plan:
                await _shielded_after_failure(action, ctx)
            raise
        return None


def _explained(message: str, step: Step, action: Action[Any, Any], scope: Scope) -> str:
    """A failed step's message, with what its condition compared when the action says which
    ``with`` key holds it: measured against expected, as the expression engine sees them."""
    condition = step.with_.get(action.explains) if action.explains else None
    if not isinstance(condition, Expression):
        return message
    why = explain(condition, scope)
    return message if why is None else f"{message}: {why}"


async def _after_failure(action: Action[Any, Any], ctx: ActionContext) -> None:
    """Learn, with a budget of its own, what a failed or cut-short step's requests did."""
    if action.after_failure is None:
        return
    try:
        async with asyncio.timeout(AFTER_FAILURE_BUDGET_S):
            await action.after_failure(ctx)
    except (ApiError, TimeoutError) as exc:
        logger.warning("could not learn what step %r did: %s", ctx.step_id, exc)
    with contextlib.suppress(StorageError):  # what was learnt is in the report all the same
        await ctx.jobs.commit()


async def _shielded_after_failure(action: Action[Any, Any], ctx: ActionContext) -> None:
    """Reconcile even while the run is being cancelled; a second signal still stops it."""
    if action.after_failure is None:
        return
    try:
        await asyncio.shield(_after_failure(action, ctx))
    except asyncio.CancelledError:
        logger.warning("reconciliation of step %r interrupted", ctx.step_id)


def _backoff_s(step: Step, attempt: int) -> float:
    """Full jitter: uniform over [0, min(max_backoff, backoff * 2^(attempt-1))]."""
    policy = step.retries
    return random.uniform(0, min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempt - 1)))
