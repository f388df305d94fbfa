"""Plain progress lines: one per step start and finish, for CI, pipes and logs.

A ``RunObserver``; nothing but notes with ``quiet``. On a terminal the CLI draws a live table
instead (``engine.report.live``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.ledger import JobBook
from engine.report.terminal import approval_summary
from engine.run.approval import ApprovalRequest
from engine.run.result import StepOutcome
from engine.runbook import Step, Target


class ProgressLines:
    """Plain progress lines, one per step start and finish, handed to ``write`` (stderr)."""

    def __init__(self, write: Callable[[str], None], *, quiet: bool) -> None:
        self._write = write
        self._quiet = quiet

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        pass

    def run_finished(self) -> None:
        pass

    def note(self, text: str) -> None:
        self._write(text)

    def step_started(self, target: Target, step: Step) -> None:
        if not self._quiet:
            self._write(f"[{target.label}] {step.id} ({step.action}) ...")

    @property
    def shows_plan(self) -> bool:
        return not self._quiet

    def about_to_change(self, request: ApprovalRequest) -> None:
        if not self._quiet:
            self._write(approval_summary(request, heading="about to change"))

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        if self._quiet:
            return
        detail = outcome.message or ", ".join(
            f"{k}: {len(v) if isinstance(v, list) else v}" for k, v in outcome.outputs.items()
        )
        self._write(
            f"[{target.label}] {outcome.step_id} {outcome.status.value} in "
            f"{outcome.duration_s:.1f}s: {detail}"
        )
