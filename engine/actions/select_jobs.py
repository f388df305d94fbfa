"""``drs.select_jobs``: list a project's jobs and pick the ones a runbook may act on.

A dual-active DR parent is never selected: the API refuses it (DRS.M00307), so its children are
considered one by one instead, and the parent is recorded as skipped with that reason.

The API's own filters (``engine_type``, ``tags``, ``enterprise_project_id``, ``instance_ids``)
are sent with the listing; ``engine_type`` and ``name`` are checked again on every job listed,
since the answer carries them. ``engine_type`` is sent once per engine named: an omitted
``engine_type`` means mysql to OTC's reference and "any" to the SDK (the fact sheet's conflict),
so a selection without one that lists only mysql jobs says in a notice that other engines may
not have been listed. ``settle`` leaves the service's own retries alone (``settling``).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.settling import settle
from engine.actions.spec import Action
from engine.api.types import (
    ACTION_RETRY,
    FAILED_STATUSES,
    MAX_INSTANCE_IDS,
    PAUSED_STATUSES,
    DbUseType,
    JobInfo,
)
from engine.ledger import Disposition, EventKind, JobRecord

DEFAULT_STATUSES = frozenset(FAILED_STATUSES | PAUSED_STATUSES)
MYSQL = "mysql"  # what OTC says an omitted engine_type means


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectJobsParams:
    db_use_type: tuple[str, ...] = tuple(DbUseType)
    statuses: frozenset[str] = DEFAULT_STATUSES
    name: str = "*"
    engine_type: frozenset[str] | None = None
    retryable_only: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    enterprise_project_id: str | None = None
    instance_ids: tuple[str, ...] | None = None
    settle_s: float | None = None

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> SelectJobsParams:
        engine = fields.texts(raw, "engine_type", ())
        instances = fields.texts(raw, "instance_ids", ())
        if "instance_ids" in raw and not 1 <= len(instances) <= MAX_INSTANCE_IDS:
            raise StepFailedError(
                f"instance_ids takes 1 to {MAX_INSTANCE_IDS} ids, got {len(instances)}"
            )
        return cls(
            db_use_type=fields.texts(raw, "db_use_type", tuple(DbUseType)),
            statuses=frozenset(fields.texts(raw, "statuses", tuple(DEFAULT_STATUSES))),
            name=fields.text(raw, "name", "*"),
            engine_type=frozenset(engine) if "engine_type" in raw else None,
            retryable_only=fields.flag(raw, "retryable_only", True),
            tags=fields.labels(raw, "tags"),
            enterprise_project_id=fields.text(raw, "enterprise_project_id", "") or None,
            instance_ids=instances if "instance_ids" in raw else None,
            settle_s=fields.seconds(raw, "settle", None) or None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectJobsOutputs:
    jobs: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    count: int = 0


def _skip_reason(job: JobInfo, params: SelectJobsParams) -> str | None:
    """Why a job that passed the filters must still not be acted on, or None."""
    if job.is_dual_active_parent:
        return "dual-active parent: the API accepts only its subtasks; children considered instead"
    if params.retryable_only and ACTION_RETRY not in job.job_action.available_actions:
        offered = ", ".join(job.job_action.available_actions) or "none"
        return f"RETRY not in available_actions (offered: {offered})"
    return None


def _dropped_by(job: JobInfo, params: SelectJobsParams) -> str | None:
    """The filter that drops a job (engine_type, name, status), or None when it matches."""
    if params.engine_type is not None and job.engine_type not in params.engine_type:
        return "engine_type"
    if params.name != "*" and not fnmatch.fnmatchcase(job.name, params.name):
        return "name"  # (the default "*" matches every name: no pattern matching per job)
    if job.is_dual_active_parent:
        # A parent is worth a line in the report when it or one of its children matches.
        if job.status in params.statuses or any(
            _dropped_by(c, params) is None for c in job.children
        ):
            return None
        return "status"
    return None if job.status in params.statuses else "status"


@dataclass(slots=True)
class Funnel:
    """How a selection narrowed: the jobs listed, what each filter dropped, what was left
    alone and what was selected; said in a plan, and whenever nothing was selected."""

    listed: int = 0
    subtasks: int = 0  # the dual-active children of the listed parents
    dropped: Counter[str] = field(default_factory=Counter)
    left_alone: Counter[str] = field(default_factory=Counter)
    selected: int = 0

    def text(self) -> str:
        drops = ", ".join(
            f"{self.dropped[f]} by {f}"
            for f in ("status", "engine_type", "name")
            if self.dropped[f]
        )
        alone = ", ".join(f"{n} {why}" for why, n in self.left_alone.items())
        children = f" (and {self.subtasks} subtask(s))" if self.subtasks else ""
        return (
            f"funnel: {self.listed} job(s) listed{children}"
            + (f"; dropped {drops}" if drops else "")
            + (f"; left alone {alone}" if alone else "")
            + f"; {self.selected} selected"
        )


def _candidates(jobs: Iterable[JobInfo]) -> Iterable[tuple[JobInfo, str | None]]:
    """Every job and child, each with its parent id."""
    for job in jobs:
        yield job, None
        for child in job.children:
            yield child, job.id


async def run(ctx: ActionContext, params: SelectJobsParams) -> SelectJobsOutputs:
    """Select matching jobs; the output lists every match, the book records each job once."""
    selected: dict[str, JobInfo] = {}
    skipped: dict[str, None] = {}
    engines_seen: set[str] = set()
    # Self-timed (for settle): the listing itself must end by the step's deadline too.
    budget = None if ctx.deadline is None else max(ctx.deadline - ctx.now(), 0.0)
    funnel = Funnel()
    try:
        async with asyncio.timeout(budget):
            await _list(ctx, params, selected, skipped, engines_seen, funnel)
    except TimeoutError:
        raise StepFailedError(f"timed out after {budget:g}s listing jobs") from None
    if params.engine_type is None and not engines_seen - {MYSQL}:
        ctx.notice(
            "engine_type was not given and no job listed is of an engine other than mysql: "
            "OTC documents an omitted engine_type as mysql, so jobs of other engines may not "
            "have been listed; name engine_type (a list) to be sure"
        )
    elif ctx.planning:  # a plan says which engine filter was in effect, doubt or not
        listed = ", ".join(sorted(engines_seen)) or "none"
        if params.engine_type is None:
            ctx.note(f"engine_type not sent: every engine the service lists ({listed})")
        else:
            named = ", ".join(sorted(params.engine_type))
            ctx.note(f"engine_type sent: {named}, one listing each (listed: {listed})")
    if params.settle_s is not None:
        fresh = [job for job in selected.values() if _unsettled(ctx, job)]
        for job_id in await settle(ctx, params.settle_s, fresh, planning=ctx.planning):
            del selected[job_id]
    funnel.selected = len(selected)
    if ctx.planning or not selected:  # an empty selection says why
        ctx.note(funnel.text())
    return SelectJobsOutputs(jobs=tuple(selected), skipped=tuple(skipped), count=len(selected))


async def _list(
    ctx: ActionContext,
    params: SelectJobsParams,
    selected: dict[str, JobInfo],
    skipped: dict[str, None],
    engines_seen: set[str],
    funnel: Funnel,
) -> None:
    """List every db_use_type (and engine named), booking each matching job once."""
    engines = sorted(params.engine_type) if params.engine_type is not None else [None]
    for db_use_type in params.db_use_type:
        for engine in engines:
            listing = await ctx.api.list_jobs(
                db_use_type=db_use_type,
                statuses=params.statuses,
                engine_type=engine,
                tags=params.tags or None,
                enterprise_project_id=params.enterprise_project_id,
                instance_ids=params.instance_ids,
            )
            engines_seen |= listing.engine_types
            funnel.listed += listing.listed
            # The client keeps only jobs with the wanted statuses (or a child with one).
            funnel.dropped["status"] += max(listing.listed - len(listing.jobs), 0)
            if listing.count_disagrees:
                ctx.notice(
                    f"the service counted {listing.total_record} {db_use_type} job(s) "
                    f"(total_record) but listed {listing.listed}; every listed job was considered"
                )
            for job, parent_id in _candidates(listing.jobs):
                if parent_id is not None:
                    funnel.subtasks += 1
                if (dropped := _dropped_by(job, params)) is not None:
                    funnel.dropped[dropped] += 1
                    continue
                reason = _skip_reason(job, params)
                if reason is None:
                    selected[job.id] = job
                else:
                    skipped[job.id] = None
                    kind = "dual-active parent" if job.is_dual_active_parent else "without RETRY"
                    funnel.left_alone[kind] += 1
                if ctx.jobs.get(job.id) is None:
                    _first_sight(ctx, job, parent_id, db_use_type, reason)


def _unsettled(ctx: ActionContext, job: JobInfo) -> bool:
    """Whether the settle wait applies to a selected job: one seen for the first time, or one
    this step left to the service before (a resumed run) that is listed failed again."""
    record = ctx.jobs.get(job.id)
    if record is None or record.disposition is Disposition.SELECTED:
        return True
    settled_here = any(
        e.kind is EventKind.SETTLING and e.step == ctx.step_id for e in record.events
    )
    if not settled_here:
        return False  # seen by an earlier step: its verdict is that step's
    record.disposition, record.reason = Disposition.SELECTED, None
    ctx.jobs.record(
        job.id,
        EventKind.SELECTED,
        step=ctx.step_id,
        status=job.status,
        detail="listed failed again after the service's own retry",
    )
    return True


def _first_sight(
    ctx: ActionContext, job: JobInfo, parent_id: str | None, db_use_type: str, reason: str | None
) -> None:
    ctx.jobs.add(
        JobRecord(
            job_id=job.id,
            name=job.name,
            status_at_selection=job.status,
            engine_type=job.engine_type,
            db_use_type=job.db_use_type or db_use_type,
            parent_id=parent_id,
            last_status=job.status,
            offered=job.job_action.available_actions,
        )
    )
    if reason is None:
        ctx.jobs.record(job.id, EventKind.SELECTED, step=ctx.step_id, status=job.status)
        return
    ctx.jobs.conclude(
        job.id,
        Disposition.SKIPPED,
        EventKind.SKIPPED,
        step=ctx.step_id,
        reason=reason,
        status=job.status,
    )


ACTION = Action(
    name="drs.select_jobs",
    params=SelectJobsParams.from_with,
    outputs=SelectJobsOutputs,
    run=run,
    self_timed=True,  # the settle wait ends by the step's deadline, with its results
)
