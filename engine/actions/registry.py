"""Every action a runbook step can name, each bound to its one definition (``ACTION``).

What validation needs (names, output types, which actions change jobs) is plain data in
``engine.actions.catalog``, so ``runbook validate`` never imports this; a test holds the two,
and the schema's action enum, to the same names and types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.actions import (
    approve,
    assertion,
    batch_retry,
    pause_jobs,
    select_jobs,
    sleep,
    verify_status,
)
from engine.actions.spec import Action

REGISTRY: Mapping[str, Action[Any, Any]] = {
    action.name: action
    for action in (
        select_jobs.ACTION,
        batch_retry.ACTION,
        verify_status.ACTION,
        pause_jobs.ACTION,
        sleep.ACTION,
        assertion.ACTION,
        approve.ACTION,
    )
}
