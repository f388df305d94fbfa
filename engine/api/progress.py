"""Replication progress and delay: one ``batch-progress`` result (SDK ``QueryProgressResp``).

``incre_trans_delay`` is the incremental replication delay in seconds, ``incre_trans_delay_millis``
the same in milliseconds, both sent as strings (``"12"``), and results are keyed ``job_id``, not
``id`` as in batch-status. A delay is read from the milliseconds when they are there (their unit
is in their name), else from the seconds; a value that is not a finite, non-negative number (an
empty string during full transfer, ``"-"``, ``1e400``) is no delay at all: ``None``, never 0 —
a delay the service did not give must not read as "caught up".

Which statuses carry a meaningful delay: the incremental phase (``INCRE_TRANSFER_STARTED``, and
``CHILD_TRANSFER_STARTED`` of a re-edited task's sub-task). A job in full transfer has no
incremental delay yet and is judged by its status (``DELAY_STATUSES``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.api.types import JobStatus

# The statuses whose health depends on the replication delay, not the status alone.
DELAY_STATUSES = frozenset({JobStatus.INCRE_TRANSFER_STARTED, JobStatus.CHILD_TRANSFER_STARTED})
# A delay above this (about 31 years) is no delay but a server's nonsense: unreadable.
_MAX_DELAY_S = 1e9


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressResult:
    """What the engine reads of one job's progress: its delay. The answer's other fields
    (progress, rates, remaining time) are not read: nothing reports them yet, and this runs
    for every running job of every poll."""

    job_id: str
    delay_s: float | None = None  # None: the answer gave no readable delay

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ProgressResult:
        delay = _number(raw.get("incre_trans_delay_millis"))
        if delay is not None:
            delay /= 1000
        else:
            delay = _number(raw.get("incre_trans_delay"))
        if delay is not None and delay > _MAX_DELAY_S:
            delay = None
        return cls(job_id=str(raw["job_id"]), delay_s=None if delay is None else round(delay, 3))


def _number(value: Any) -> float | None:
    """A finite, non-negative number the service wrote as text or as a number; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value or len(value) > 32:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None
