"""What became of one step in one target: the executor records it, the journal keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
