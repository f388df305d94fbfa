"""Run a runbook: every target concurrently (bounded), its steps in order, every job accounted for.

A failed step is data: it is recorded, the target's later steps are skipped, and its jobs get a
final disposition saying why. An unexpected exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from engine.actions import REGISTRY, ActionSpec, Runner
from engine.actions.context import (
    GOOD_DISPOSITIONS,
    ActionContext,
    Disposition,
    EventKind,
    JobBook,
    StepFailedError,
)
from engine.api.auth import Auth
from engine.api.client import DrsClient
from engine.api.ratelimit import RateLimitedTransport
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse, Transport
from engine.api.types import Language
from engine.errors import EXIT_INTERRUPTED, EXIT_JOBS_NOT_HEALTHY, EXIT_OK, ApiError
from engine.runbook import Runbook, Step, Target
from engine.runbook.expressions import ExpressionError, Scope, evaluate, resolve
from engine.runbook.model import OnFailure

logger = logging.getLogger(__name__)

# How long a self-timed action may overrun its deadline before it is cancelled.
SELF_TIMED_MARGIN_S = 30.0


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(slots=True, kw_only=True)
class StepOutcome:
    step_id: str
    action: str
    status: StepStatus
    started_t: float = 0.0
    duration_s: float = 0.0
    message: str | None = None
    attempts: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class TargetOutcome:
    target: Target
    endpoint: str
    jobs: JobBook
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.status is StepStatus.FAILED for s in self.steps)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """How to reach one target: its DRS base URL and its credentials."""

    endpoint: str
    auth: Auth


class RunObserver(Protocol):
    """Told about progress as it happens; the CLI prints it, tests may record it."""

    def step_started(self, target: Target, step: Step) -> None: ...

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None: ...


@dataclass(slots=True, kw_only=True)
class RunResult:
    run_id: str
    runbook: Runbook
    started_at: datetime
    finished_at: datetime
    wall_s: float
    targets: list[TargetOutcome]
    api_calls: Counter[str]
    api_resilience: dict[str, int | float] = field(default_factory=dict)
    plan: bool = False
    interrupted: bool = False

    @property
    def mutating(self) -> bool:
        return any(REGISTRY[s.action].mutating for s in self.runbook.steps)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.plan:
            return EXIT_JOBS_NOT_HEALTHY if any(t.failed for t in self.targets) else EXIT_OK
        good = GOOD_DISPOSITIONS if self.mutating else GOOD_DISPOSITIONS | {Disposition.SELECTED}
        healthy = all(
            not t.failed and all(job.disposition in good for job in t.jobs) for t in self.targets
        )
        return EXIT_OK if healthy else EXIT_JOBS_NOT_HEALTHY


class CountingTransport:
    """Counts requests by ``METHOD /route`` (project ids folded into ``{project_id}``)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.calls[route_of(request)] += 1
        return await self._inner.send(request)


def route_of(request: HttpRequest) -> str:
    path = request.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == "v3" and parts[1] != "auth":
        parts[1] = "{project_id}"
    return f"{request.method} /{'/'.join(parts)}"


class Executor:
    """One run of one runbook against its targets."""

    def __init__(
        self,
        runbook: Runbook,
        *,
        run_id: str,
        transport: Transport,
        connections: Mapping[Target, Connection],
        observer: RunObserver | None = None,
        plan: bool = False,
        params: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        resilience: Resilience | None = None,
    ) -> None:
        self._runbook = runbook
        self._plan = plan
        self._run_id = run_id
        self._params = dict(params or {})
        # One retry loop (and one set of counters) for every client of the run.
        self._resilience = resilience or Resilience()
        self._env = dict(env or {})
        if runbook.rate_limit_per_s is not None:
            transport = RateLimitedTransport(transport, runbook.rate_limit_per_s)
        # Counted after the rate limit: the figures are what reached the network.
        self._transport = CountingTransport(transport)
        self._connections = connections
        self._observer = observer
        self._mutating = any(REGISTRY[s.action].mutating for s in runbook.steps)
        self._t0 = 0.0

    def _clock(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def run(self) -> RunResult:
        started_at = datetime.now(UTC)
        self._t0 = asyncio.get_running_loop().time()
        slots = asyncio.Semaphore(self._runbook.concurrency)
        outcomes = [self._new_outcome(t) for t in self._runbook.targets]
        interrupted = False
        try:
            async with asyncio.TaskGroup() as group:
                for outcome in outcomes:
                    group.create_task(self._run_target(outcome, slots))
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, SIGTERM): every target has finalized its jobs; report them.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            interrupted = True
        return RunResult(
            run_id=self._run_id,
            runbook=self._runbook,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            wall_s=round(self._clock(), 3),
            targets=outcomes,
            api_calls=self._transport.calls,
            api_resilience=self._resilience.stats.as_dict(),
            plan=self._plan,
            interrupted=interrupted,
        )

    def _new_outcome(self, target: Target) -> TargetOutcome:
        return TargetOutcome(
            target=target,
            endpoint=self._connections[target].endpoint,
            jobs=JobBook(self._clock),
        )

    async def _run_target(self, outcome: TargetOutcome, slots: asyncio.Semaphore) -> None:
        async with slots:
            connection = self._connections[outcome.target]
            client = DrsClient(
                transport=self._transport,
                endpoint=connection.endpoint,
                project_id=outcome.target.project_id,
                auth=connection.auth,
                language=Language(self._runbook.language),
                resilience=self._resilience,
            )
            outputs: dict[str, dict[str, Any]] = {}
            scope = Scope(
                params=self._params,
                target=_target_fields(outcome.target),
                steps=outputs,
                env=self._env,
            )
            failure: str | None = None
            try:
                for step in self._runbook.steps:
                    if failure is not None:
                        outcome.steps.append(_not_run(step, failure))
                        continue
                    if self._observer is not None:
                        self._observer.step_started(outcome.target, step)
                    result = await self._run_step(step, client, outcome.jobs, scope)
                    outcome.steps.append(result)
                    outputs[step.id] = result.outputs
                    if result.status is StepStatus.FAILED and step.on_failure == OnFailure.ABORT:
                        failure = f"step '{step.id}' failed"
                    if self._observer is not None:
                        self._observer.step_finished(outcome.target, result, outcome.jobs)
            except asyncio.CancelledError:
                done = {s.step_id for s in outcome.steps}
                outcome.steps.extend(
                    _not_run(s, "run interrupted") for s in self._runbook.steps if s.id not in done
                )
                _finalize(outcome.jobs, "run interrupted", mutating=self._mutating, cancelled=True)
                raise
            if not self._plan:
                failed = next(
                    (s.step_id for s in outcome.steps if s.status is StepStatus.FAILED), None
                )
                reason = failure or (None if failed is None else f"step '{failed}' failed")
                _finalize(outcome.jobs, reason, mutating=self._mutating)

    async def _run_step(
        self, step: Step, client: DrsClient, jobs: JobBook, scope: Scope
    ) -> StepOutcome:
        spec = REGISTRY[step.action]
        if self._plan and not spec.runs_in_plan:
            return _not_run(step, "a plan makes no changes, so there is nothing to verify")
        started = self._clock()
        outcome = StepOutcome(step_id=step.id, action=step.action, status=StepStatus.SUCCEEDED)
        outcome.started_t = round(started, 3)
        try:
            if step.when is not None and evaluate(step.when, scope) is not True:
                outcome.status = StepStatus.SKIPPED
                outcome.message = f"skipped: when {step.when.text} is false"
                # Later steps may still refer to its outputs: they are empty, not missing.
                outcome.outputs = {k: _EMPTY[t] for k, t in spec.outputs.items()}
                return outcome
        except ExpressionError as exc:
            outcome.status, outcome.message = StepStatus.FAILED, exc.format_message()
            return outcome
        ctx = ActionContext(
            api=client,
            jobs=jobs,
            step_id=step.id,
            project_id=client.project_id,
            max_jobs=self._runbook.max_jobs,
        )
        for attempt in range(1, step.retries.max_attempts + 1):
            outcome.attempts = attempt
            message = await self._attempt(step, spec, ctx, scope, outcome)
            if message is None:
                outcome.status, outcome.message = StepStatus.SUCCEEDED, None
                break
            outcome.status, outcome.message = StepStatus.FAILED, message
            logger.warning(
                "step %r failed in %s (attempt %d of %d): %s",
                step.id,
                client.project_id,
                attempt,
                step.retries.max_attempts,
                message,
            )
            if attempt < step.retries.max_attempts:
                await asyncio.sleep(_backoff_s(step, attempt))
        failed = outcome.status is StepStatus.FAILED
        if failed and spec.after_failure is not None and not self._plan:
            await _after_failure(spec, ctx)
        outcome.duration_s = round(self._clock() - started, 3)
        return outcome

    async def _attempt(
        self, step: Step, spec: ActionSpec, ctx: ActionContext, scope: Scope, outcome: StepOutcome
    ) -> str | None:
        """One attempt at the step; None when it succeeded, else why it failed."""
        runner = spec.preview if self._plan and spec.preview is not None else spec.run
        timeout_s = step.timeout_s if step.timeout_s is not None else spec.default_timeout_s
        try:
            raw = resolve(step.with_, scope)
            outcome.outputs = await self._call(runner, spec, ctx, raw, timeout_s, self._clock())
        except (StepFailedError, ExpressionError) as exc:
            return str(exc) if isinstance(exc, StepFailedError) else exc.format_message()
        except ApiError as exc:
            return exc.format_message()
        except TimeoutError:
            return f"timed out after {timeout_s:g}s"
        except asyncio.CancelledError:
            if spec.after_failure is not None and not self._plan:
                await _shielded_after_failure(spec, ctx)
            raise
        return None

    async def _call(
        self,
        runner: Runner,
        spec: ActionSpec,
        ctx: ActionContext,
        raw: Mapping[str, Any],
        timeout_s: float | None,
        started: float,
    ) -> dict[str, Any]:
        if timeout_s is None:
            return await runner(ctx, raw)
        if spec.self_timed:
            ctx.deadline = started + timeout_s
            timeout_s += SELF_TIMED_MARGIN_S
        async with asyncio.timeout(timeout_s):
            return await runner(ctx, raw)


# The time an after-failure reconciliation may take (its own budget: the step's is spent).
AFTER_FAILURE_BUDGET_S = 30.0


async def _after_failure(spec: ActionSpec, ctx: ActionContext) -> None:
    assert spec.after_failure is not None
    try:
        async with asyncio.timeout(AFTER_FAILURE_BUDGET_S):
            await spec.after_failure(ctx)
    except (ApiError, TimeoutError) as exc:
        logger.warning("could not learn what step %r did: %s", ctx.step_id, exc)


async def _shielded_after_failure(spec: ActionSpec, ctx: ActionContext) -> None:
    """Reconcile even while the run is being cancelled; a second signal still stops it."""
    try:
        await asyncio.shield(_after_failure(spec, ctx))
    except asyncio.CancelledError:
        logger.warning("reconciliation of step %r interrupted", ctx.step_id)


def _not_run(step: Step, why: str) -> StepOutcome:
    return StepOutcome(
        step_id=step.id, action=step.action, status=StepStatus.SKIPPED, message=f"not run: {why}"
    )


_EMPTY: dict[str, Any] = {
    "list[string]": [],
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "string": "",
}


def _target_fields(target: Target) -> dict[str, Any]:
    return {
        "project_id": target.project_id,
        "region": target.region,
        "name": target.name,
        "endpoint": target.endpoint,
    }


def _backoff_s(step: Step, attempt: int) -> float:
    """Full jitter: uniform over [0, min(max_backoff, backoff * 2^(attempt-1))]."""
    policy = step.retries
    return random.uniform(0, min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempt - 1)))


def _finalize(
    jobs: JobBook, failure: str | None, *, mutating: bool, cancelled: bool = False
) -> None:
    """Turn intermediate dispositions into final ones, with the reason."""
    because = f" ({failure})" if failure else ""
    for record in jobs:
        if cancelled and record.disposition in {Disposition.SELECTED, Disposition.RETRY_ACCEPTED}:
            was_retried = record.disposition is Disposition.RETRY_ACCEPTED
            last = record.events[-1].kind if record.events else None
            if last is EventKind.RETRY_SENT:
                record.disposition = Disposition.RETRY_UNKNOWN
                record.reason = f"retry sent, no answer recorded{because}"
                continue
            record.disposition = Disposition.CANCELLED
            record.reason = (
                "retry accepted, verification interrupted" if was_retried else "not retried"
            ) + because
        elif record.disposition is Disposition.SELECTED and mutating:
            last = record.events[-1].kind if record.events else None
            if last is EventKind.RETRY_SENT:
                record.disposition = Disposition.RETRY_UNKNOWN
                record.reason = f"retry sent, no answer recorded{because}"
            else:
                record.disposition = Disposition.NOT_RETRIED
                record.reason = f"selected but not retried{because}"
        elif record.disposition is Disposition.RETRY_ACCEPTED:
            record.disposition = Disposition.NOT_VERIFIED
            record.reason = f"retry accepted but not verified{because}"
