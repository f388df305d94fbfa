"""Report documents for renderer tests, built by ``build_report`` from a hand-made RunResult.

Going through the real builder keeps the fixtures honest: a field build.py renames or adds shows
up here, in the contract test, instead of in a hand-written dict that drifts from report.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from engine.api.resilience import ResilienceStats
from engine.errors import Location, StorageError
from engine.ledger import Disposition, EventKind, JobBook, JobRecord
from engine.report.build import build_report
from engine.report.document import JobReport, Report, to_json_bytes
from engine.run.result import RunResult, StepOutcome, StepStatus, TargetOutcome
from engine.runbook.model import Runbook, Step, Target

Fate = Literal[
    "recovered",
    "failed_again",
    "timed_out",
    "retry_rejected",
    "skipped",
    "healthy",
    "not_retried",
    "lagging",
    "flapping",
]
STARTED = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)
HERE = Location(path="rb.yaml", line=1, col=1)
# A fleet with one job of every fate in each project; names say what happens to the job.
FATES: tuple[Fate, ...] = (
    "recovered",
    "recovered",
    "failed_again",
    "timed_out",
    "retry_rejected",
    "skipped",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    job_id: str
    name: str
    fate: Fate
    # Seconds after the retry is acknowledged at which the job's last status is seen.
    settles_after_s: float = 4.0
    # (last, largest) replication delay a verify step with max_delay read, if any.
    delays: tuple[float, float] | None = None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _step(step_id: str, action: str) -> Step:
    return Step(id=step_id, name=None, action=action, with_={}, timeout_s=None, location=HERE)


def steps(*, verify: bool = True) -> tuple[Step, ...]:
    chosen = [_step("select", "drs.select_jobs"), _step("retry", "drs.batch_retry")]
    if verify:
        chosen.append(_step("verify", "drs.verify_status"))
    return tuple(chosen)


def _play(book: JobBook, clock: _Clock, spec: JobSpec, *, verify: bool) -> None:
    """Write one job's timeline into ``book`` the way the actions would."""
    clock.now = 0.01
    at_selection = "INCRE_TRANSFER_FAILED" if spec.fate != "healthy" else "INCRE_TRANSFER_STARTED"
    record = book.add(
        JobRecord(
            job_id=spec.job_id,
            name=spec.name,
            status_at_selection=at_selection,
            engine_type="mysql",
            db_use_type="sync",
            last_status=at_selection,
        )
    )
    if spec.fate == "skipped":
        reason = "RETRY not in available_actions (offered: DELETE)"
        book.record(spec.job_id, EventKind.SKIPPED, step="select", detail=reason)
        record.disposition, record.reason = Disposition.SKIPPED, reason
        return
    book.record(spec.job_id, EventKind.SELECTED, step="select", status=at_selection)
    if spec.fate == "healthy":
        clock.now = 0.5
        book.record(spec.job_id, EventKind.RECOVERED, step="verify", status=at_selection)
        record.disposition = Disposition.HEALTHY
        return
    if spec.fate == "not_retried":
        record.disposition = Disposition.NOT_RETRIED
        record.reason = "not sent: error budget spent (3 of 3 errors)"
        book.record(spec.job_id, EventKind.WITHHELD, step="retry", detail=record.reason)
        return
    clock.now = 0.02
    book.record(spec.job_id, EventKind.RETRY_SENT, step="retry", detail="batch 1")
    clock.now = 0.03
    if spec.fate == "retry_rejected":
        record.error_code = "DRS.M05004"
        record.disposition = Disposition.RETRY_REJECTED
        record.reason = "the job is not in a state that allows retry"
        book.record(
            spec.job_id,
            EventKind.RETRY_REJECTED,
            step="retry",
            error_code="DRS.M05004",
            detail=record.reason,
        )
        return
    book.record(spec.job_id, EventKind.RETRY_ACKNOWLEDGED, step="retry")
    record.retry_acknowledged_at = 0.03
    record.disposition = Disposition.RETRY_ACCEPTED
    if not verify:
        record.disposition = Disposition.NOT_VERIFIED
        record.reason = "retry accepted but not verified"
        return
    clock.now = 0.05
    book.record(spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="STARTJOBING")
    if spec.delays is not None:
        record.delay_s, record.delay_max_s = spec.delays
    clock.now = 0.03 + spec.settles_after_s
    if spec.fate == "recovered":
        book.record(
            spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_STARTED"
        )
        book.record(spec.job_id, EventKind.RECOVERED, step="verify")
        record.disposition = Disposition.RECOVERED
        record.time_to_recover_s = round(spec.settles_after_s, 3)
    elif spec.fate == "failed_again":
        book.record(
            spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_FAILED"
        )
        book.record(spec.job_id, EventKind.FAILED_AGAIN, step="verify")
        record.disposition = Disposition.FAILED_AGAIN
        record.reason = "status INCRE_TRANSFER_FAILED after the retry"
    elif spec.fate == "lagging":
        book.record(
            spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_STARTED"
        )
        book.record(spec.job_id, EventKind.FELL_BEHIND, step="verify", detail="400s behind")
        clock.now = 30.03
        record.disposition = Disposition.LAGGING
        record.reason = "running (INCRE_TRANSFER_STARTED), but 240s behind, over max_delay 60s"
        book.record(spec.job_id, EventKind.LAGGING, step="verify", detail=record.reason)
    elif spec.fate == "flapping":
        book.record(
            spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_STARTED"
        )
        book.record(
            spec.job_id, EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_FAILED"
        )
        clock.now = 30.03
        record.disposition = Disposition.FLAPPING
        record.reason = "healthy, then INCRE_TRANSFER_FAILED, and not stable again by the deadline"
        book.record(spec.job_id, EventKind.FLAPPING, step="verify", detail=record.reason)
    else:
        clock.now = 30.03
        book.record(spec.job_id, EventKind.TIMED_OUT, step="verify")
        record.disposition = Disposition.TIMED_OUT
        record.reason = "still STARTJOBING when the step's timeout ran out"


def fleet(project: str, fates: Sequence[Fate] = FATES) -> list[JobSpec]:
    """One job per fate, with ids unique to the project."""
    return [
        JobSpec(
            job_id=f"{project}-{i:05d}-jb101",
            name=f"{project}-{fate.replace('_', '-')}-{i}",
            fate=fate,
            settles_after_s=2.0 + (i % 5),
        )
        for i, fate in enumerate(fates)
    ]


def make_report(
    jobs: dict[str, Sequence[JobSpec]] | None = None,
    *,
    verify: bool = True,
    failed_step: tuple[str, str] | None = None,
    interrupted: bool = False,
    storage_failure: StorageError | None = None,
) -> Report:
    """The report of a run over ``jobs`` (project name -> its jobs); two projects by default.

    ``failed_step`` = (project name, step id) makes that step fail in that project;
    ``interrupted`` and ``storage_failure`` end the run as Ctrl-C or a full disk would.
    """
    jobs = jobs if jobs is not None else {"orders-prod": fleet("orders"), "pay": fleet("pay")}
    runbook_steps = steps(verify=verify)
    targets = tuple(
        Target(project_id=f"{i:032x}", region="cn-north-4", endpoint=None, name=name, location=HERE)
        for i, name in enumerate(jobs, start=1)
    )
    outcomes = []
    for target in targets:
        clock = _Clock()
        book = JobBook(clock)
        for spec in jobs[target.label]:
            _play(book, clock, spec, verify=verify)
        outcome_steps = []
        for step in runbook_steps:
            failed = failed_step == (target.label, step.id)
            outcome_steps.append(
                StepOutcome(
                    step_id=step.id,
                    action=step.action,
                    status=StepStatus.FAILED if failed else StepStatus.SUCCEEDED,
                    started_t=0.0,
                    duration_s=30.0 if step.id == "verify" else 0.01,
                    message="DRS answered 500 three times" if failed else None,
                    outputs={"jobs": [s.job_id for s in jobs[target.label]], "count": 1},
                )
            )
        outcomes.append(
            TargetOutcome(
                target=target,
                endpoint="http://127.0.0.1:8080",
                jobs=book,
                steps=outcome_steps,
            )
        )
    result = RunResult(
        run_id="20261129T060000Z-abcd",
        runbook=Runbook(
            path="runbooks/retry.yaml",
            version=1,
            name="retry-failed-jobs",
            description="retry failed jobs <and> verify",
            concurrency=2,
            language="en-us",
            targets=targets,
            steps=runbook_steps,
        ),
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=31),
        wall_s=30.5,
        targets=outcomes,
        api_calls=Counter({"POST /v3/{project_id}/jobs": 2, "POST /v3/{project_id}/jobs/x": 5}),
        api_resilience=ResilienceStats(sends=7, retries=1, throttled=1, waited_s=0.5).as_dict(),
        mutating=True,
        interrupted=interrupted,
        storage_failure=storage_failure,
    )
    return build_report(result)


def jobs_of(report: Report) -> list[JobReport]:
    return [job for _, job in report.jobs()]


def as_json(report: Report) -> dict[str, Any]:
    """The document as report.json holds it (for tests that edit or validate the raw JSON)."""
    document: dict[str, Any] = orjson.loads(to_json_bytes(report))
    return document
