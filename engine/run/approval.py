"""What a human approves, and what the run shows before its first change.

An ``approve`` step (a gate) stops every target; the approver is shown an ``ApprovalRequest``:
the jobs each target selected, and what the next change would send there, worked out by the
step's preview on a scratch copy of the jobs (``preview_step``), so nothing is sent. The same
request, unanswered, is what ``run`` prints before its first change (``about to change``).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.actions.budget import ErrorBudget
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.registry import REGISTRY
from engine.api.protocol import DrsApi
from engine.ledger import WOULD_KINDS, JobBook, JobRecord
from engine.runbook import Step, Target
from engine.runbook.evaluation import evaluate, resolve
from engine.runbook.expressions import ExpressionError, Scope


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPreview:
    """What the next change would do in one target, worked out as a plan does: nothing sent."""

    step: Step
    would_send: tuple[JobRecord, ...] = ()
    batches: int = 0
    problem: str | None = None  # why it cannot be told before it runs


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """What a human approves at an ``approve`` step (and what ``run`` shows before its first
    change): the jobs each target selected, and what the next change would send."""

    step: Step
    selected: Mapping[Target, list[JobRecord]]
    next_steps: tuple[Step, ...]
    previews: Mapping[Target, StepPreview] = field(default_factory=dict)
    left_alone: Mapping[Target, list[JobRecord]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(jobs) for jobs in self.selected.values())


Approver = Callable[[ApprovalRequest], Awaitable[bool]]

# How a run's approvals are given: on the terminal, by --yes, or by applying a plan file.
HOW_TERMINAL, HOW_YES, HOW_PLAN = "terminal", "--yes", "plan"
# The CI systems whose actor approves a --yes run, by the variable that names the actor.
_CI_ACTORS = (
    ("GITHUB_ACTOR", "GitHub Actions"),
    ("GITLAB_USER_LOGIN", "GitLab CI"),
    ("BUILD_USER_ID", "Jenkins"),
    ("BUILDKITE_BUILD_CREATOR", "Buildkite"),
    ("CIRCLE_USERNAME", "CircleCI"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRecord:
    """One approval (or decline), as the journal and report.json keep it."""

    step: str  # the approve step, or "plan" for the plan file an apply ran
    approved: bool
    by: str  # "alice@host", or "alice (GitHub Actions)"
    how: str  # HOW_TERMINAL, HOW_YES or HOW_PLAN
    at: str  # ISO-8601, UTC
    plan_hash: str | None = None  # the plan file it covered

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "approved": self.approved,
            "approved_by": self.by,
            "approved_at": self.at,
            "how": self.how,
            "plan_hash": self.plan_hash,
        }


def approver_identity(environ: Mapping[str, str] = os.environ) -> str:
    """Who approves: the CI actor when a CI system names one, else the OS user at this host."""
    for variable, system in _CI_ACTORS:
        if actor := environ.get(variable, "").strip():
            return f"{actor[:100]} ({system})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def approval(step: str, approved: bool, how: str, plan_hash: str | None = None) -> ApprovalRecord:
    """An approval given now, by whoever runs this process."""
    return ApprovalRecord(
        step=step,
        approved=approved,
        by=approver_identity(),
        how=how,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        plan_hash=plan_hash,
    )


async def approve_all(request: ApprovalRequest) -> bool:
    """The approver of ``--yes``: every gate is approved."""
    return True


async def preview_step(
    step: Step,
    *,
    api: DrsApi,
    jobs: JobBook,
    scope: Scope,
    project_id: str,
    max_jobs: int | None,
) -> StepPreview:
    """Run the step's preview (the plan's view of it) on a scratch copy of ``jobs``."""
    action = REGISTRY[step.action]
    if action.preview is None:
        return StepPreview(step=step, problem="this action has no preview")
    scratch = JobBook(jobs.now)
    scratch.restore([record.fork() for record in jobs])
    ctx = ActionContext(
        api=api,
        jobs=scratch,
        step_id=step.id,
        project_id=project_id,
        max_jobs=max_jobs,
        errors=ErrorBudget(),
    )
    try:
        if step.when is not None and evaluate(step.when, scope) is False:
            return StepPreview(step=step, problem=f"skipped: when {step.when.text} is false")
        action.plan(ctx, resolve(step.with_, scope))
    except StepFailedError as exc:
        return StepPreview(step=step, problem=str(exc))
    except ExpressionError as exc:
        return StepPreview(step=step, problem=f"decided when it runs ({exc.format_message()})")
    would = [
        (record, event.detail)
        for record in scratch
        for event in record.events
        if event.step == step.id and event.kind in WOULD_KINDS
    ]
    return StepPreview(
        step=step,
        would_send=tuple(record for record, _ in would),
        batches=len({batch for _, batch in would}),
    )
