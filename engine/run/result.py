"""What a run produced: each step's outcome per target, each target's jobs, and the exit code.

The executor builds these; the journal keeps the step outcomes; the report reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.errors import (
    EXIT_INTERRUPTED,
    EXIT_JOBS_NOT_HEALTHY,
    EXIT_OK,
    EXIT_STORAGE,
    StorageError,
)
from engine.ledger import JobBook
from engine.runbook import Runbook, Step, Target

if TYPE_CHECKING:
    from engine.run.stop import Tripped


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    DECLINED = "declined"  # an approve step a human said no to: nothing after it ran


# Applying a plan file: project id -> mutating step id -> job id -> the status it was planned on.
Planned = Mapping[str, Mapping[str, Mapping[str, str]]]


@dataclass(slots=True, kw_only=True)
class StepOutcome:
    """What became of one step in one target; the executor records it, the journal keeps it."""

    step_id: str
    action: str
    status: StepStatus
    started_t: float = 0.0
    duration_s: float = 0.0
    message: str | None = None
    attempts: int = 0
    # The step's outputs as later steps read them (``engine.actions.spec.StepOutputs``).
    outputs: dict[str, Any] = field(default_factory=dict)
    # Odd answers the step saw and the report shows (``ActionContext.notice``).
    notices: list[str] = field(default_factory=list)

    @classmethod
    def not_run(cls, step: Step, why: str) -> StepOutcome:
        """A step the run did not get to (or chose not to run), and why."""
        return cls(
            step_id=step.id,
            action=step.action,
            status=StepStatus.SKIPPED,
            message=f"not run: {why}",
        )


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
class RunResult:
    """One run, finished or interrupted. ``mutating``: whether the runbook changes jobs (a
    read-only run's selected jobs are its success). API figures are the wiring's, not the
    executor's: the session adds them."""

    run_id: str
    runbook: Runbook
    started_at: datetime
    finished_at: datetime
    wall_s: float
    targets: Sequence[TargetOutcome]
    mutating: bool
    api_calls: Mapping[str, int] = field(default_factory=dict)
    api_resilience: Mapping[str, int | float] = field(default_factory=dict)
    plan: bool = False
    interrupted: bool = False
    resumed_at: Sequence[str] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    shard: str | None = None  # --shard I/N
    # Why the run stopped early because its journal could not be written (a full disk).
    storage_failure: StorageError | None = None
    # Every approval and decline (ApprovalRecord.to_json), and the plan file an apply ran.
    approvals: Sequence[Mapping[str, Any]] = ()
    plan_hash: str | None = None
    # Which stop condition tripped, and when (engine.run.stop); None when none did. A
    # notifier reads it after the run, or subscribes with StopSignal.on_trip during it.
    stopped_by: Tripped | None = None

    @property
    def exit_code(self) -> int:
        if self.storage_failure is not None:
            return EXIT_STORAGE
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.stopped_by is not None:
            return EXIT_JOBS_NOT_HEALTHY  # stopped short: not a run that did its work
        if self.plan:
            return EXIT_JOBS_NOT_HEALTHY if any(t.failed for t in self.targets) else EXIT_OK
        healthy = all(
            not t.failed and all(job.disposition.is_good(mutating=self.mutating) for job in t.jobs)
            for t in self.targets
        )
        return EXIT_OK if healthy else EXIT_JOBS_NOT_HEALTHY
