"""What an action sees while it runs: the target's API, its clock, the jobs it touches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from engine.actions.budget import ErrorBudget
from engine.api.protocol import DrsApi
from engine.ledger import Disposition, EventKind, JobBook
from engine.redact import redact

logger = logging.getLogger(__name__)


def _not_stopped() -> str | None:
    return None


class StepFailedError(Exception):
    """An action could not do its work; the step fails with this one-sentence message.

    ``outputs``: what the action did establish before it failed, kept as the step's outputs (an
    ``assert`` that was evaluated and did not hold says ``passed: false``, so the report tells it
    from one that could not be evaluated); None leaves them empty.
    """

    def __init__(self, message: str, *, outputs: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.outputs = outputs


@dataclass(slots=True, kw_only=True)
class ActionContext:
    """Per target, per step: the API, the book of jobs and the step's time budget."""

    api: DrsApi
    jobs: JobBook
    step_id: str
    project_id: str
    deadline: float | None = None
    # The runbook's cap on how many jobs one mutating step may act on in this target.
    max_jobs: int | None = None
    # Shared by every target: once spent, mutating actions send no further batch.
    errors: ErrorBudget = field(default_factory=ErrorBudget)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # What the step saw that a human should know, though it did not fail: a service whose
    # count and listing disagree, a batch answer naming jobs it was not asked about.
    notices: list[str] = field(default_factory=list)
    # A plan's step: read-only, and it does not wait for the world to change (settle).
    planning: bool = False
    # Applying a plan file: the jobs this step may send, each with the status it was planned
    # on; None when no plan binds the run (``engine.actions.mutation.admit_planned``).
    planned: Mapping[str, str] | None = None
    # Why the run has stopped (a stop condition tripped: ``engine.run.stop``), or None: once
    # it says why, a mutating action sends no further batch.
    stopped: Callable[[], str | None] = _not_stopped

    def now(self) -> float:
        return self.jobs.now()

    def notice(self, text: str) -> None:
        """Say in the report (once per step) that the service's answers were odd: a warning,
        logged as one too."""
        self._say(text, logging.WARNING)

    def note(self, text: str) -> None:
        """Say in the report (once per step) what a step found that explains its result, such
        as the selection's funnel or the engine filter a plan used: a notice as the report and
        ``runbook plan`` show them (the plan prints it under its step, on stdout), but nothing
        went wrong, so it is logged at INFO (shown with -v), not as a warning."""
        self._say(text, logging.INFO)

    def _say(self, text: str, level: int) -> None:
        text = redact(text)  # it may quote the server (an id it invented)
        if text not in self.notices:
            logger.log(level, "%s, step %r: %s", self.project_id, self.step_id, text)
            self.notices.append(text)

    def withhold(self, job_ids: list[str], why: str | None = None) -> None:
        """These jobs are not sent (the error budget is spent, unless ``why`` says otherwise),
        and the report says why."""
        why = why or f"not sent: {self.errors.describe()}"
        for job_id in job_ids:
            record = self.jobs.record(job_id, EventKind.WITHHELD, step=self.step_id, detail=why)
            record.disposition = Disposition.NOT_RETRIED
            record.reason = why
