"""Turn a finished run into the report document that every renderer reads (``Report``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine import __version__
from engine.ledger import JobRecord
from engine.percentiles import nearest_rank
from engine.report.document import (
    REPORT_VERSION,
    EngineRef,
    JobReport,
    OutputFigure,
    Report,
    RtoSummary,
    RunbookRef,
    Settings,
    StepReport,
    StoppedBy,
    TargetReport,
    TargetStatus,
    Totals,
    new_job_report,
)
from engine.report.drill import build_drill
from engine.run.journal import REDACTED, is_secret_param
from engine.run.result import RunResult, StepOutcome, TargetOutcome
from engine.runbook import Runbook


def build_report(result: RunResult) -> Report:
    names = {s.id: s.name for s in (*result.runbook.steps, *result.runbook.rollback)}
    targets = [_target(t, names) for t in result.targets]
    all_jobs = [job for t in result.targets for job in t.jobs]
    return Report(
        report_version=REPORT_VERSION,
        run_id=result.run_id,
        runbook=RunbookRef(
            name=result.runbook.name,
            path=result.runbook.path,
            description=result.runbook.description,
        ),
        engine=EngineRef(version=__version__),
        plan=result.plan,
        # Secret-looking params are redacted, as in the journal.
        params={
            name: REDACTED if is_secret_param(name) else value
            for name, value in result.params.items()
        },
        settings=_settings(result.runbook),
        shard=result.shard,
        started_at=result.started_at.isoformat(timespec="seconds"),
        finished_at=result.finished_at.isoformat(timespec="seconds"),
        wall_s=result.wall_s,
        exit_code=result.exit_code,
        mutating=result.mutating,
        interrupted=result.interrupted,
        resumed_at=list(result.resumed_at),
        totals=Totals.of(j.disposition for j in all_jobs),
        time_to_recover_s=rto_summary(
            j.time_to_recover_s for j in all_jobs if j.time_to_recover_s is not None
        ),
        api_calls=dict(sorted(result.api_calls.items())),
        api_resilience=dict(result.api_resilience),
        targets=targets,
        approvals=[dict(a) for a in result.approvals],
        plan_hash=result.plan_hash,
        drill=build_drill(result),
        stopped_by=None
        if result.stopped_by is None
        else StoppedBy.from_json(result.stopped_by.to_json()),
    )


def _settings(runbook: Runbook) -> Settings:
    return Settings(
        concurrency=runbook.concurrency,
        concurrency_per_target=runbook.concurrency_per_target,
        rate_limit_per_s=runbook.rate_limit_per_s,
        max_jobs=runbook.max_jobs,
        max_jobs_total=runbook.max_jobs_total,
        max_errors=runbook.max_errors,
        max_error_ratio=runbook.max_error_ratio,
    )


def _target(outcome: TargetOutcome, names: Mapping[str, str | None]) -> TargetReport:
    target = outcome.target
    jobs = list(outcome.jobs)
    return TargetReport(
        project_id=target.project_id,
        name=target.name,
        region=target.region,
        account=target.account,
        endpoint=outcome.endpoint,
        status=TargetStatus.FAILED if outcome.failed else TargetStatus.OK,
        totals=Totals.of(j.disposition for j in jobs),
        steps=[_step(s, names) for s in outcome.steps],
        jobs=[_job(j) for j in jobs],
    )


def _step(step: StepOutcome, names: Mapping[str, str | None]) -> StepReport:
    return StepReport(
        id=step.step_id,
        name=names.get(step.step_id),
        action=step.action,
        attempts=step.attempts,
        status=step.status,
        started_t=step.started_t,
        duration_s=step.duration_s,
        message=step.message,
        notices=tuple(step.notices),
        # Lists of ids are already in the jobs' timelines: the step keeps their sizes.
        outputs=_figures(step.outputs),
    )


def _figures(outputs: Mapping[str, Any]) -> dict[str, OutputFigure]:
    return {k: len(v) if isinstance(v, list) else v for k, v in outputs.items()}


def _job(job: JobRecord) -> JobReport:
    return new_job_report(
        job.job_id,
        job.name,
        job.parent_id,
        job.engine_type,
        job.db_use_type,
        job.status_at_selection,
        job.last_status,
        job.disposition,
        job.reason,
        job.error_code,
        job.time_to_recover_s,
        job.paused_at,
        job.delay_s,
        job.delay_max_s,
        [event.to_json() for event in job.events],
    )


def rto_summary(values: Iterable[float]) -> RtoSummary:
    """Count, median, p95 and max of time-to-recover figures (nearest-rank percentiles)."""
    ordered = sorted(values)
    if not ordered:
        return RtoSummary(count=0, p50=None, p95=None, max=None)
    return RtoSummary(
        count=len(ordered),
        p50=nearest_rank(ordered, 50),
        p95=nearest_rank(ordered, 95),
        max=ordered[-1],
    )
