"""The run's error budget: after too many failures, stop sending further mutating batches.

Like SSM Automation's MaxErrors: ``max_errors`` is exceeded by the error after the last one
allowed (``max_errors: 0`` stops at the first); ``max_error_ratio`` is exceeded when errors over
jobs attempted passes it. One budget is shared by every target of a run, so a bad change
stops everywhere, not project by project. A budget is not a retry policy: it never re-sends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class ErrorBudget:
    max_errors: int | None = None
    max_error_ratio: float | None = None
    attempted: int = 0
    errors: int = 0

    def attempt(self, jobs: int) -> None:
        self.attempted += jobs

    def fail(self, jobs: int = 1) -> None:
        self.errors += jobs

    @property
    def exhausted(self) -> bool:
        if self.max_errors is not None and self.errors > self.max_errors:
            return True
        return (
            self.max_error_ratio is not None
            and self.attempted > 0
            and self.errors / self.attempted > self.max_error_ratio
        )

    def describe(self) -> str:
        limits = []
        if self.max_errors is not None:
            limits.append(f"max_errors {self.max_errors}")
        if self.max_error_ratio is not None:
            limits.append(f"max_error_ratio {self.max_error_ratio:g}")
        return f"{self.errors} error(s) in {self.attempted} job(s) exceed {' and '.join(limits)}"
