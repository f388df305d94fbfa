"""The report document: what every renderer reads and report.json holds, as typed data.

    Report            one run (or a merge of shards): runbook, settings, totals, API figures
    │                 (its one-word ``verdict``, a ``RunVerdict``, follows from its exit code)
    ├── DrillReport   a drill's verdict, its paused jobs and their recovery (drills only)
    └── TargetReport  one target: its status, totals, steps and jobs
        ├── StepReport   one step's outcome (list outputs as their sizes)
        └── JobReport    one job: its disposition and timeline (``EventJson``, as the journal)

``to_json_bytes`` writes report.json (orjson serialises the dataclasses natively, in field
order: the field order *is* the file's key order, pinned by ``schemas/report.schema.json`` and a
byte-for-byte test); ``Report.from_json`` reads one back, so ``runbook report`` and ``merge``
render exactly what a run would. The document is built by ``engine.report.build``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import orjson

from engine.errors import (
    EXIT_INTERRUPTED,
    EXIT_JOBS_NOT_HEALTHY,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
)
from engine.ledger import NEEDS_A_HUMAN, Column, Disposition, EventJson
from engine.run.result import StepStatus

REPORT_VERSION = 1
# Above this many jobs report.json is written compact: indenting doubles the file.
INDENTED_UP_TO_JOBS = 10_000

# A step's output in the report: list outputs are counted (the ids are in the jobs' timelines).
OutputFigure = str | int | float | bool


class TargetStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


class Totals(dict[str, int]):
    """A run's or a target's counts, as report.json spells them: ``jobs``, ``selected`` (every
    job not skipped), ``ok`` (recovered or healthy), ``needs_attention``, then the number of jobs
    in each disposition that occurred (in the order ``Disposition`` declares them).

    A dict, so report.json keeps its flat shape; read it through the properties."""

    @classmethod
    def of(cls, dispositions: Iterable[Disposition]) -> Totals:
        counts = Counter(dispositions)
        jobs = sum(counts.values())
        skipped = counts.get(Disposition.SKIPPED, 0)
        totals = cls(
            jobs=jobs,
            selected=jobs - skipped,
            ok=sum(n for d, n in counts.items() if d.is_good()) - skipped,
            needs_attention=sum(counts.get(d, 0) for d in NEEDS_A_HUMAN),
        )
        # "selected" is the sum above; the jobs still in the selected disposition are what it
        # leaves after every other disposition (a per-disposition count would overwrite it).
        totals.update(
            (d._value_, counts[d]) for d in Disposition if d in counts and d is not _SELECTED
        )
        return totals

    @property
    def jobs(self) -> int:
        return self["jobs"]

    @property
    def selected(self) -> int:
        return self["selected"]

    @property
    def ok(self) -> int:
        return self["ok"]

    @property
    def needs_attention(self) -> int:
        return self["needs_attention"]

    def of_disposition(self, disposition: Disposition) -> int:
        return self.get(disposition._value_, 0)

    def in_column(self, column: Column) -> int:
        """The count the summary table shows in ``column``."""
        if column is Column.SELECTED:
            return self.selected
        return sum(self.get(value, 0) for value in _IN_COLUMN[column])


_SELECTED = Disposition.SELECTED
# Column -> the values of the dispositions it counts (a table row reads it 7 times a target).
_IN_COLUMN: Mapping[Column, tuple[str, ...]] = {
    column: tuple(d._value_ for d in Disposition if d.column is column) for column in Column
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunbookRef:
    name: str
    path: str
    description: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRef:
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The limits the run worked within, as the runbook (and command-line overrides) set them."""

    concurrency: int
    concurrency_per_target: int
    rate_limit_per_s: float | None
    max_jobs: int | None
    max_jobs_total: int | None
    max_errors: int | None
    max_error_ratio: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RtoSummary:
    """Count, median, p95 and max of time-to-recover figures (nearest-rank percentiles)."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None


class DrillVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PausedJob:
    """A job a drill paused: when (run-relative seconds, as events' ``t``) it was paused, resumed
    and seen recovered; ``pause_to_recovery_s`` is the outage it lived through end to end."""

    project: str  # the target's label
    id: str
    name: str
    disposition: Disposition
    paused_t: float | None
    resumed_t: float | None
    recovered_t: float | None
    time_to_recover_s: float | None  # from the resume, as the job's own figure
    pause_to_recovery_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillCheck:
    """One ``assert`` of the drill in one project (a steady-state or RTO check), and its end."""

    project: str
    step: str
    status: StepStatus
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillBudget:
    """The RTO budget an ``assert`` compared a step's RTO output with (``that``), in seconds;
    ``held``: the assert succeeded in every project it ran in."""

    step: str
    that: str
    measured: str  # the compared output, e.g. steps.verify_recovery.drill_rto_p95_s
    budget_s: float
    held: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StoppedBy:
    """The stop condition that tripped (as written, and where), when (ISO 8601 UTC), what it
    saw, and how many mutating requests were in flight then (awaited and reconciled)."""

    condition: str
    location: str
    tripped_at: str
    detail: str
    in_flight: int = 0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StoppedBy:
        return cls(
            condition=raw["condition"],
            location=raw["location"],
            tripped_at=raw["tripped_at"],
            detail=raw["detail"],
            in_flight=raw.get("in_flight", 0),
        )

    def describe(self) -> str:
        """One phrase: ``stopped by file: STOP (stop_when at rb.yaml:4:5) at ...: detail``."""
        return f"stopped by {self.condition} ({self.location}) at {self.tripped_at}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillReport:
    """A drill's verdict and why (``engine.report.drill`` states the rule), what it paused, and
    the pause-to-recovery percentiles over every paused job, one that did not recover counting
    as an outage without end (``engine.percentiles.pause_outages``): null when a percentile
    falls on such a job (``outage_words`` says it)."""

    verdict: DrillVerdict
    why: str
    paused: Sequence[PausedJob]
    rto_p50_s: float | None
    rto_p95_s: float | None
    rto_max_s: float | None
    budget: DrillBudget | None
    checks: Sequence[DrillCheck]

    @property
    def passed(self) -> bool:
        return self.verdict is DrillVerdict.PASSED

    @staticmethod
    def outage_words(seconds: float | None, shown: Callable[[float], str]) -> str:
        """A pause-to-recovery figure as a renderer shows it (``shown``), or "not recovered"
        for null: the percentile fell on a paused job that did not recover."""
        return "not recovered" if seconds is None else shown(seconds)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DrillReport:
        budget = raw["budget"]
        return cls(
            verdict=DrillVerdict(raw["verdict"]),
            why=raw["why"],
            paused=[
                PausedJob(**{**job, "disposition": Disposition(job["disposition"])})
                for job in raw["paused"]
            ],
            rto_p50_s=raw["rto_p50_s"],
            rto_p95_s=raw["rto_p95_s"],
            rto_max_s=raw["rto_max_s"],
            budget=None if budget is None else DrillBudget(**budget),
            checks=[
                DrillCheck(**{**check, "status": StepStatus(check["status"])})
                for check in raw["checks"]
            ],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepReport:
    id: str
    name: str | None
    action: str
    attempts: int
    status: StepStatus
    started_t: float
    duration_s: float
    message: str | None
    outputs: Mapping[str, OutputFigure]
    notices: Sequence[str] = ()  # odd answers of the service the step saw, in its words


@dataclass(frozen=True, slots=True, kw_only=True)
class JobReport:
    id: str
    name: str
    parent_id: str | None
    engine_type: str | None
    db_use_type: str | None
    status_at_selection: str
    last_status: str | None
    disposition: Disposition
    reason: str | None
    error_code: str | None
    time_to_recover_s: float | None
    paused_at_t: float | None
    # Replication delay a verify step with max_delay read (seconds): the last, and the largest.
    delay_s: float | None
    delay_max_s: float | None
    events: Sequence[EventJson]


# JobReport's slots, set through their descriptors by ``new_job_report``.
_JOB_SETTERS = tuple(
    JobReport.__dict__[name].__set__
    for name in (
        "id",
        "name",
        "parent_id",
        "engine_type",
        "db_use_type",
        "status_at_selection",
        "last_status",
        "disposition",
        "reason",
        "error_code",
        "time_to_recover_s",
        "paused_at_t",
        "delay_s",
        "delay_max_s",
        "events",
    )
)
(
    _SET_ID,
    _SET_NAME,
    _SET_PARENT,
    _SET_ENGINE,
    _SET_USE,
    _SET_AT_SELECTION,
    _SET_LAST,
    _SET_DISPOSITION,
    _SET_REASON,
    _SET_CODE,
    _SET_TTR,
    _SET_PAUSED,
    _SET_DELAY,
    _SET_DELAY_MAX,
    _SET_EVENTS,
) = _JOB_SETTERS


def new_job_report(
    id: str,
    name: str,
    parent_id: str | None,
    engine_type: str | None,
    db_use_type: str | None,
    status_at_selection: str,
    last_status: str | None,
    disposition: Disposition,
    reason: str | None,
    error_code: str | None,
    time_to_recover_s: float | None,
    paused_at_t: float | None,
    delay_s: float | None,
    delay_max_s: float | None,
    events: Sequence[EventJson],
) -> JobReport:
    """``JobReport(...)`` for the builders, which make one per job (100,000 in a large run):
    the frozen dataclass's ``__init__`` goes round ``frozen=True`` with an ``object.__setattr__``
    per field, setting each slot through its descriptor is 2.5x faster (as ``JobEvent``). The
    same frozen object; a test holds this to the constructor."""
    job = object.__new__(JobReport)
    _SET_ID(job, id)
    _SET_NAME(job, name)
    _SET_PARENT(job, parent_id)
    _SET_ENGINE(job, engine_type)
    _SET_USE(job, db_use_type)
    _SET_AT_SELECTION(job, status_at_selection)
    _SET_LAST(job, last_status)
    _SET_DISPOSITION(job, disposition)
    _SET_REASON(job, reason)
    _SET_CODE(job, error_code)
    _SET_TTR(job, time_to_recover_s)
    _SET_PAUSED(job, paused_at_t)
    _SET_DELAY(job, delay_s)
    _SET_DELAY_MAX(job, delay_max_s)
    _SET_EVENTS(job, events)
    return job


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetReport:
    project_id: str
    name: str | None
    region: str | None
    account: str | None = None  # the runbook account it ran as (names only, never secrets)
    endpoint: str
    status: TargetStatus
    totals: Totals
    steps: Sequence[StepReport]
    jobs: Sequence[JobReport]

    @property
    def label(self) -> str:
        """How tables and headings name the target (its project id when it has no name)."""
        return self.name or self.project_id

    @property
    def where(self) -> str:
        return self.region or self.endpoint


class RunVerdict(StrEnum):
    """A finished run in one word, as its exit code says it: the one verdict a notification
    (``verdict``) and a trace (``runbook.verdict``) give, so they cannot disagree.

    Not a drill's verdict (passed / failed, ``Report.drill``): a drill that passed may still
    leave a job for a human, and the exit code, hence this, says so."""

    OK = "ok"  # 0
    NEEDS_A_HUMAN = "needs_a_human"  # 1: a job did not recover, a step failed, a stop tripped
    REFUSED = "refused"  # 2: the runbook, params or command line refused; nothing was sent
    STORAGE_FAILED = "storage_failed"  # 3: the run directory could not be written
    INTERRUPTED = "interrupted"  # 130: Ctrl-C or SIGTERM

    @classmethod
    def of_exit_code(cls, exit_code: int) -> RunVerdict:
        """The verdict of ``exit_code`` (one of ``engine.errors``' ``EXIT_*``; another is a
        bug: ``ValueError``)."""
        try:
            return _VERDICTS[exit_code]
        except KeyError:
            raise ValueError(f"no run ends with exit code {exit_code}") from None


_VERDICTS = {
    EXIT_OK: RunVerdict.OK,
    EXIT_JOBS_NOT_HEALTHY: RunVerdict.NEEDS_A_HUMAN,
    EXIT_USAGE: RunVerdict.REFUSED,
    EXIT_STORAGE: RunVerdict.STORAGE_FAILED,
    EXIT_INTERRUPTED: RunVerdict.INTERRUPTED,
}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Report:
    """A run's report; ``merged_from`` is set (and written) only for a merge of shards.

    Its ``repr`` is one short line: the generated one would spell out every job (megabytes at
    100,000 jobs), and Python computes it where nobody looks (``asyncio.run`` formats the repr of
    its finished main task, result included, when it restores the SIGINT handler: 0.5 s a time).
    """

    report_version: int
    run_id: str
    runbook: RunbookRef
    engine: EngineRef
    plan: bool
    params: Mapping[str, Any]  # secret-looking params redacted, as in the journal
    settings: Settings
    shard: str | None  # --shard I/N: this run took only that slice of the runbook's targets
    started_at: str
    finished_at: str
    wall_s: float
    exit_code: int
    mutating: bool
    interrupted: bool
    resumed_at: Sequence[str]  # when a later process took the run over (runbook resume)
    totals: Totals
    time_to_recover_s: RtoSummary
    api_calls: Mapping[str, int]
    # Retries, throttled answers (429 / DRS.M01503), server errors, time spent backing off.
    api_resilience: Mapping[str, int | float]
    targets: Sequence[TargetReport]
    # Every approval and decline: step, approved, approved_by, approved_at, how, plan_hash.
    approvals: Sequence[Mapping[str, Any]] = ()
    plan_hash: str | None = None  # the plan file `runbook apply` ran
    merged_from: Sequence[str] | None = field(default=None)
    # A drill's verdict (``Runbook.drill``); written after time_to_recover_s, only for drills.
    drill: DrillReport | None = field(default=None)
    # The stop condition that tripped; written after ``interrupted``, only when one did.
    stopped_by: StoppedBy | None = field(default=None)

    def __repr__(self) -> str:
        return (
            f"Report(run_id={self.run_id!r}, exit_code={self.exit_code}, "
            f"targets={len(self.targets)}, jobs={self.totals.jobs})"
        )

    @property
    def verdict(self) -> RunVerdict:
        """The run in one word, from its exit code (``RunVerdict``)."""
        return RunVerdict.of_exit_code(self.exit_code)

    def jobs(self) -> Iterable[tuple[TargetReport, JobReport]]:
        """Every job of the run with its target, in report order."""
        for target in self.targets:
            for job in target.jobs:
                yield target, job

    def notices(self) -> list[tuple[TargetReport, StepReport, str]]:
        """Every notice of every step, in report order: answers of the service a human should
        know about although nothing failed."""
        return [
            (target, step, text)
            for target in self.targets
            for step in target.steps
            for text in step.notices
        ]

    def needing_a_human(self) -> list[tuple[TargetReport, JobReport]]:
        """The jobs that need a human, in report order."""
        return [(t, job) for t, job in self.jobs() if job.disposition.needs_a_human]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Report:
        """A document as ``to_json_bytes`` wrote it (an older report may lack the keys added
        since version 1: their defaults are what those runs did)."""
        runbook = raw["runbook"]
        return cls(
            report_version=raw["report_version"],
            run_id=raw["run_id"],
            runbook=RunbookRef(
                name=runbook["name"], path=runbook["path"], description=runbook["description"]
            ),
            engine=EngineRef(version=raw["engine"]["version"]),
            plan=raw["plan"],
            params=dict(raw["params"]),
            settings=Settings(**raw["settings"]),
            shard=raw.get("shard"),
            started_at=raw["started_at"],
            finished_at=raw["finished_at"],
            wall_s=raw["wall_s"],
            exit_code=raw["exit_code"],
            mutating=raw.get("mutating", True),
            interrupted=raw.get("interrupted", False),
            resumed_at=list(raw.get("resumed_at", [])),
            approvals=list(raw.get("approvals", [])),  # reports before issue 16 have none
            plan_hash=raw.get("plan_hash"),
            totals=Totals(raw["totals"]),
            time_to_recover_s=RtoSummary(**raw["time_to_recover_s"]),
            api_calls=dict(raw["api_calls"]),
            api_resilience=dict(raw.get("api_resilience", {})),
            targets=[_target_from_json(t) for t in raw["targets"]],
            merged_from=raw.get("merged_from"),
            drill=None if raw.get("drill") is None else DrillReport.from_json(raw["drill"]),
            stopped_by=None
            if raw.get("stopped_by") is None
            else StoppedBy.from_json(raw["stopped_by"]),
        )


def _target_from_json(raw: Mapping[str, Any]) -> TargetReport:
    return TargetReport(
        project_id=raw["project_id"],
        name=raw["name"],
        region=raw["region"],
        account=raw.get("account"),
        endpoint=raw["endpoint"],
        status=TargetStatus(raw["status"]),
        totals=Totals(raw["totals"]),
        steps=[
            StepReport(
                id=s["id"],
                name=s["name"],
                action=s["action"],
                attempts=s["attempts"],
                status=StepStatus(s["status"]),
                started_t=s["started_t"],
                duration_s=s["duration_s"],
                message=s["message"],
                outputs=dict(s["outputs"]),
                notices=tuple(s.get("notices", ())),
            )
            for s in raw["steps"]
        ],
        jobs=[
            new_job_report(
                j["id"],
                j["name"],
                j["parent_id"],
                j["engine_type"],
                j["db_use_type"],
                j["status_at_selection"],
                j["last_status"],
                Disposition(j["disposition"]),
                j["reason"],
                j["error_code"],
                j["time_to_recover_s"],
                j["paused_at_t"],
                j.get("delay_s"),  # reports before issue 15 have no delays
                j.get("delay_max_s"),
                cast(list[EventJson], j["events"]),
            )
            for j in raw["jobs"]
        ],
    )


def to_json_bytes(report: Report) -> bytes:
    """report.json's UTF-8 bytes, as a run writes them: straight from orjson (no round trip
    through ``str``), the final newline added by orjson, not by a copy (25 MB at 100,000 jobs)."""
    indent = orjson.OPT_INDENT_2 if report.totals.jobs <= INDENTED_UP_TO_JOBS else 0
    return orjson.dumps(_top(report), option=indent | orjson.OPT_APPEND_NEWLINE)


def to_json(report: Report) -> str:
    return to_json_bytes(report).decode()


def _top(report: Report) -> dict[str, Any]:
    """The document's top level as a dict: only a merged report has ``merged_from``, only a
    drill's has ``drill`` (after ``time_to_recover_s``), only a stopped run's ``stopped_by``
    (after ``interrupted``). Every part below it is a dataclass orjson writes natively."""
    top: dict[str, Any] = {}
    for name in _TOP_LEVEL:
        top[name] = getattr(report, name)
        if name == "time_to_recover_s" and report.drill is not None:
            top["drill"] = report.drill
        if name == "interrupted" and report.stopped_by is not None:
            top["stopped_by"] = report.stopped_by
    if report.merged_from is not None:
        top["merged_from"] = report.merged_from
    return top


_TOP_LEVEL = tuple(
    name
    for name in Report.__dataclass_fields__
    if name not in ("merged_from", "drill", "stopped_by")
)
