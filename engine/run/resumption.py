"""Whether and how an interrupted run can be taken over: its runbook, params and approvals.

A resumed run continues with exactly what it started with: the runbook file (the one given, if
unchanged; else the original if unchanged; else the run's own copy), the params, guard rails and
shard of its journal. A run against the in-process emulator, or with a secret param (which the
journal does not keep), cannot be resumed; the reasons are ``UsageError``s.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import UsageError
from engine.run.inputs import Inputs, TargetLimit, as_bound, read_bytes
from engine.run.journal import (
    RUNBOOK_COPY,
    JournalState,
    RunHeader,
    is_secret_param,
    runbook_digest,
)
from engine.run.result import StepStatus
from engine.runbook import Runbook


def check_resumable(header: RunHeader, directory: Path, file: Path | None) -> None:
    if header.emulator:
        raise UsageError(
            f"run {header.run_id} ran against the in-process emulator, which ended with it; "
            "there is nothing to resume (start a new run)"
        )
    secret = [name for name in header.params if is_secret_param(name)]
    if secret:
        raise UsageError(
            f"run {header.run_id} had the secret param '{secret[0]}', which the journal does "
            "not keep; it cannot be resumed, start a new run"
        )
    if file is not None and runbook_digest(read_bytes(file)) != header.runbook_sha256:
        raise UsageError(
            f"{file} changed since run {header.run_id} started; resume with the file it "
            f"started with, or run `runbook resume {directory}` (it uses the copy in "
            f"{directory / RUNBOOK_COPY})"
        )


def resumed_inputs(header: RunHeader, directory: Path, file: Path | None) -> Inputs:
    """The runbook as the run started it: the given file, else the original if unchanged, else
    the run's own copy; with the params, guard rails and shard of its journal."""
    source = Path(header.runbook_path)
    if file is None and not (
        source.is_file() and runbook_digest(read_bytes(source)) == header.runbook_sha256
    ):
        source = directory / RUNBOOK_COPY  # the original moved or changed: use the run's copy
    return as_bound(
        file or source,
        params=header.params,
        overrides=header.overrides,
        shard=header.shard,
        limit=TargetLimit.from_json(header.limit),
    )


def approved_gates(state: JournalState, runbook: Runbook) -> frozenset[str]:
    """Gates every target passed before the interruption: not asked again."""
    return frozenset.intersection(
        *(
            frozenset(
                k for k, v in state.target(i).steps.items() if v.status is StepStatus.SUCCEEDED
            )
            for i in range(len(runbook.targets))
        )
    )
