"""Run a runbook: every target concurrently (bounded), its steps in order, every job accounted for.

A failed step is data: it is recorded, the target's later steps are skipped, and its jobs get a
final disposition saying why. An unexpected exception is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from engine.actions import REGISTRY, ActionSpec
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
from engine.api.transport import HttpRequest, HttpResponse, Transport
from engine.api.types import Language
from engine.errors import EXIT_JOBS_NOT_HEALTHY, EXIT_OK, ApiError
from engine.runbook import Reference, Runbook, Step, Target
from engine.runbook.expressions import resolve

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

    @property
    def mutating(self) -> bool:
        return any(REGISTRY[s.action].mutating for s in self.runbook.steps)

    @property
    def exit_code(self) -> int:
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
    ) -> None:
        self._runbook = runbook
        self._run_id = run_id
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
        async with asyncio.TaskGroup() as group:
            for outcome in outcomes:
                group.create_task(self._run_target(outcome, slots))
        return RunResult(
            run_id=self._run_id,
            runbook=self._runbook,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            wall_s=round(self._clock(), 3),
            targets=outcomes,
            api_calls=self._transport.calls,
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
            )
            outputs: dict[str, dict[str, Any]] = {}
            failure: str | None = None
            for step in self._runbook.steps:
                if failure is not None:
                    outcome.steps.append(
                        StepOutcome(
                            step_id=step.id,
                            action=step.action,
                            status=StepStatus.SKIPPED,
                            message=f"not run: {failure}",
                        )
                    )
                    continue
                if self._observer is not None:
                    self._observer.step_started(outcome.target, step)
                result = await self._run_step(step, client, outcome.jobs, outputs)
                outcome.steps.append(result)
                outputs[step.id] = result.outputs
                if result.status is StepStatus.FAILED:
                    failure = f"step '{step.id}' failed"
                if self._observer is not None:
                    self._observer.step_finished(outcome.target, result, outcome.jobs)
            _finalize(outcome.jobs, failure, mutating=self._mutating)

    async def _run_step(
        self,
        step: Step,
        client: DrsClient,
        jobs: JobBook,
        outputs: Mapping[str, Mapping[str, Any]],
    ) -> StepOutcome:
        spec = REGISTRY[step.action]
        started = self._clock()
        outcome = StepOutcome(step_id=step.id, action=step.action, status=StepStatus.SUCCEEDED)
        outcome.started_t = round(started, 3)
        timeout_s = step.timeout_s if step.timeout_s is not None else spec.default_timeout_s
        ctx = ActionContext(api=client, jobs=jobs, step_id=step.id, project_id=client.project_id)
        try:
            raw = resolve(step.with_, lambda ref: _lookup(ref, outputs))
            outcome.outputs = await self._call(spec, ctx, raw, timeout_s, started)
        except StepFailedError as exc:
            outcome.status, outcome.message = StepStatus.FAILED, str(exc)
        except ApiError as exc:
            outcome.status, outcome.message = StepStatus.FAILED, exc.format_message()
        except TimeoutError:
            outcome.status = StepStatus.FAILED
            outcome.message = f"timed out after {timeout_s:g}s"
        outcome.duration_s = round(self._clock() - started, 3)
        if outcome.status is StepStatus.FAILED:
            logger.warning("step %r failed in %s: %s", step.id, client.project_id, outcome.message)
        return outcome

    async def _call(
        self,
        spec: ActionSpec,
        ctx: ActionContext,
        raw: Mapping[str, Any],
        timeout_s: float | None,
        started: float,
    ) -> dict[str, Any]:
        if timeout_s is None:
            return await spec.run(ctx, raw)
        if spec.self_timed:
            ctx.deadline = started + timeout_s
            timeout_s += SELF_TIMED_MARGIN_S
        async with asyncio.timeout(timeout_s):
            return await spec.run(ctx, raw)


def _lookup(ref: Reference, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    try:
        return outputs[ref.step_id][ref.output]
    except KeyError:
        raise StepFailedError(f"{ref.text} has no value: step '{ref.step_id}' gave none") from None


def _finalize(jobs: JobBook, failure: str | None, *, mutating: bool) -> None:
    """Turn intermediate dispositions into final ones, with the reason."""
    because = f" ({failure})" if failure else ""
    for record in jobs:
        if record.disposition is Disposition.SELECTED and mutating:
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
