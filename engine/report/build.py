"""Turn a finished run into the report document that every renderer reads (report.json's shape)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine import __version__
from engine.actions.context import GOOD_DISPOSITIONS, Disposition, JobBook, JobRecord
from engine.run.executor import RunResult, TargetOutcome
from engine.run.journal import REDACTED, JournalState, is_secret_param
from engine.run.outcome import StepOutcome
from engine.runbook import Runbook

REPORT_VERSION = 1

# Dispositions a human has to look at, in the order the report lists them.
NEEDS_A_HUMAN = (
    Disposition.FAILED_AGAIN,
    Disposition.FAILED,
    Disposition.RETRY_REJECTED,
    Disposition.RETRY_UNKNOWN,
    Disposition.TIMED_OUT,
    Disposition.NOT_FOUND,
    Disposition.NOT_RETRIED,
    Disposition.NOT_VERIFIED,
    Disposition.CANCELLED,
    Disposition.PAUSED,
    Disposition.PAUSE_REJECTED,
    Disposition.PAUSE_UNKNOWN,
)


def build_report(result: RunResult) -> dict[str, Any]:
    names = {s.id: s.name for s in (*result.runbook.steps, *result.runbook.rollback)}
    targets = [_target(t, names) for t in result.targets]
    all_jobs = [job for t in result.targets for job in t.jobs]
    return {
        "report_version": REPORT_VERSION,
        "run_id": result.run_id,
        "runbook": {
            "name": result.runbook.name,
            "path": result.runbook.path,
            "description": result.runbook.description,
        },
        "engine": {"version": __version__},
        "plan": result.plan,
        # Secret-looking params are redacted, as in the journal.
        "params": {
            name: REDACTED if is_secret_param(name) else value
            for name, value in result.params.items()
        },
        "settings": _settings(result.runbook),
        # --shard I/N: this run took only that slice of the runbook's targets.
        "shard": result.shard,
        "started_at": result.started_at.isoformat(timespec="seconds"),
        "finished_at": result.finished_at.isoformat(timespec="seconds"),
        "wall_s": result.wall_s,
        "exit_code": result.exit_code,
        "mutating": result.mutating,
        "interrupted": result.interrupted,
        # When a later process took the run over after it was interrupted (runbook resume).
        "resumed_at": result.resumed_at,
        "totals": _totals(all_jobs),
        "time_to_recover_s": rto_summary(
            j.time_to_recover_s for j in all_jobs if j.time_to_recover_s is not None
        ),
        "api_calls": dict(sorted(result.api_calls.items())),
        # Retries, throttled answers (429 / DRS.M01503), server errors, time spent backing off.
        "api_resilience": result.api_resilience,
        "targets": targets,
    }


def _settings(runbook: Runbook) -> dict[str, Any]:
    """The limits the run worked within, as the runbook (and command-line overrides) set them."""
    return {
        "concurrency": runbook.concurrency,
        "concurrency_per_target": runbook.concurrency_per_target,
        "rate_limit_per_s": runbook.rate_limit_per_s,
        "max_jobs": runbook.max_jobs,
        "max_jobs_total": runbook.max_jobs_total,
        "max_errors": runbook.max_errors,
        "max_error_ratio": runbook.max_error_ratio,
    }


def _totals(jobs: Sequence[JobRecord]) -> dict[str, int]:
    counts = Counter(j.disposition._value_ for j in jobs)
    selected = sum(1 for j in jobs if j.disposition is not Disposition.SKIPPED)
    good = sum(1 for j in jobs if j.disposition in GOOD_DISPOSITIONS)
    return {
        "jobs": len(jobs),
        "selected": selected,
        "ok": good - counts[Disposition.SKIPPED.value],
        "needs_attention": sum(counts[d.value] for d in NEEDS_A_HUMAN),
        **{d.value: counts[d.value] for d in Disposition if counts[d.value]},
    }


def _target(outcome: TargetOutcome, names: dict[str, str | None]) -> dict[str, Any]:
    target = outcome.target
    jobs = list(outcome.jobs)
    return {
        "project_id": target.project_id,
        "name": target.name,
        "region": target.region,
        "endpoint": outcome.endpoint,
        "status": "failed" if outcome.failed else "ok",
        "totals": _totals(jobs),
        "steps": [_step(s, names) for s in outcome.steps],
        "jobs": [_job(j) for j in jobs],
    }


def _step(step: StepOutcome, names: dict[str, str | None]) -> dict[str, Any]:
    return {
        "id": step.step_id,
        "name": names.get(step.step_id),
        "action": step.action,
        "attempts": step.attempts,
        "status": step.status.value,
        "started_t": step.started_t,
        "duration_s": step.duration_s,
        "message": step.message,
        # Lists of ids are already in the jobs' timelines: the step keeps their sizes.
        "outputs": {k: len(v) if isinstance(v, list) else v for k, v in step.outputs.items()},
    }


def _job(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "name": job.name,
        "parent_id": job.parent_id,
        "engine_type": job.engine_type,
        "db_use_type": job.db_use_type,
        "status_at_selection": job.status_at_selection,
        "last_status": job.last_status,
        "disposition": job.disposition._value_,  # not .value: see JobEvent.to_json
        "reason": job.reason,
        "error_code": job.error_code,
        "time_to_recover_s": job.time_to_recover_s,
        "paused_at_t": job.paused_at,
        "events": [event.to_json() for event in job.events],
    }


def rto_summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """Count, median, p95 and max of time-to-recover figures (nearest-rank percentiles)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {
        "count": len(ordered),
        "p50": _percentile(ordered, 50),
        "p95": _percentile(ordered, 95),
        "max": ordered[-1],
    }


def _percentile(ordered: Sequence[float], pct: int) -> float:
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def result_from_journal(state: JournalState, runbook: Runbook) -> RunResult:
    """A run as far as its journal goes (a run killed before it wrote its report).

    Jobs keep the dispositions the journal last recorded (``selected``, ``retry_accepted`` for
    work the run did not finish); API figures are not journaled and are left empty.
    """
    header = state.header
    started = datetime.fromisoformat(header.started_at)
    targets = []
    last_t = 0.0
    for index, target in enumerate(runbook.targets):
        known = state.target(index)
        jobs = JobBook(lambda: 0.0)
        jobs.restore(list(known.records.values()))
        last_t = max([last_t, *(e.t for r in known.records.values() for e in r.events)])
        targets.append(
            TargetOutcome(
                target=target,
                endpoint=header.endpoint or target.endpoint or "",
                jobs=jobs,
                steps=list(known.steps.values()),
            )
        )
    return RunResult(
        run_id=header.run_id,
        runbook=runbook,
        started_at=started,
        finished_at=started + timedelta(seconds=last_t),
        wall_s=last_t,
        targets=targets,
        api_calls=Counter(),
        interrupted=not state.finished or state.interrupted,
        resumed_at=list(state.resumes),
        params=header.params,
        shard=header.shard,
    )
