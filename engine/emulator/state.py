"""The emulator's seeded DRS fleet and its clock-driven job state machine (no HTTP here).

A ``Fleet`` is generated deterministically from ``(seed, project_id)``: each project draws from
its own ``random.Random(f"{seed}:{project_id}")``, never from the global generator, so adding a
project does not change the others. Time is an injected clock (``time.monotonic`` by default).

The state machine is lazy, not a simulation loop: an accepted retry gives the job a schedule of
``(at, status)`` transitions, and due transitions are applied whenever the job is read. There are
no background tasks, so a test drives a fake clock and reads again instead of sleeping. An
accepted pause (``batch-pause-task``) moves a running job straight to ``PAUSING``.

Every job that the API would let you retry carries a hidden ``Fate`` that decides how its retry
ends. Fates are dealt by quota, not by coin flips: in a project with ``k`` retryable jobs,
``ceil(k * fail_again_rate)`` fail again and ``ceil(k * stuck_rate)`` get stuck (a rate of 0
means none), so every project exercises every path while large fleets approach the rates.

A project of ``RARE_KIND_MIN_JOBS`` or more jobs also holds one job in each rare status (the
in-progress and ended statuses the usual mix lacks, and the rarer failures), so a large fleet
shows every status of the fact sheet; smaller projects are generated exactly as before, so
their fleets do not change with this feature.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from engine.api.types import (
    ACTION_PAUSE,
    ACTION_RETRY,
    FAILED_STATUSES,
    IN_PROGRESS_STATUSES,
    PAUSED_STATUSES,
    DbUseType,
    JobActions,
    JobInfo,
    JobStatus,
    StatusGroup,
    status_group,
)
from engine.emulator.faults import FaultConfig

Clock = Callable[[], float]

REGIONS = ("cn-north-4", "ap-southeast-1", "eu-west-101")
DEMO_PASSWORD = "Emu-Demo-Passw0rd!7"  # fixed on purpose: the emulator holds no real secret
DEMO_AK = "EMUDEMOAKRUNBOOK0DRS"  # 20 upper-case characters, like a real AK; not a secret
DEMO_SK = "EmuDemoSkRunbook0DrsV3SignMe4TestsOnly0x"  # 40 characters; not a secret
TOKEN_TTL_S = 24 * 3600.0

ACTION_START = "START"
ACTION_SWITCH_OVER = "SWITCH_OVER"
ACTION_DELETE = "DELETE"
ALL_ACTIONS = (ACTION_START, ACTION_PAUSE, ACTION_RETRY, ACTION_SWITCH_OVER, ACTION_DELETE)

# Failed statuses the service never lets you retry: the only way out is DELETE.
DELETE_ONLY_FAILURES = frozenset({JobStatus.CREATE_FAILED, JobStatus.RELEASE_RESOURCE_FAILED})

STEP_DELAY_S = (0.5, 2.0)  # each retry step takes this long, times config.time_scale
CREATE_TIME_EPOCH_MS = 1_717_200_000_000  # 2024-06-01 UTC; create_time never reads wall time
CREATE_TIME_SPREAD_MS = 180 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectSpec:
    """One tenant project of the fleet; ``project_id`` is 32 lowercase hex characters."""

    project_id: str
    region: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """What fleet to seed and how its jobs behave; the same config always yields the same fleet.

    The gateway settings: ``token_ttl_s`` (IAM tokens expire that long after issue, on the fleet
    clock; the pre-issued ``Emulator.token`` too, but only with ``expire_static_token``),
    ``rate_limit_per_s`` (None: no throttling), ``faults`` (see ``FaultConfig``; drawn from
    ``seed``) and the demo ``ak`` / ``sk`` pair the AK/SK verifier accepts.
    """

    projects: tuple[ProjectSpec, ...]
    jobs_per_project: int = 20
    seed: int = 0
    time_scale: float = 1.0
    fail_again_rate: float = 0.15
    stuck_rate: float = 0.05
    parent_refusal: Literal["per_job", "request"] = "per_job"
    user: str = "runbook-demo"
    password: str = DEMO_PASSWORD
    domain: str = "drs-emulator"
    token_ttl_s: float = TOKEN_TTL_S
    expire_static_token: bool = False
    rate_limit_per_s: float | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    ak: str = DEMO_AK
    sk: str = DEMO_SK

    def __post_init__(self) -> None:
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be greater than zero, got {self.token_ttl_s}")
        if self.rate_limit_per_s is not None and self.rate_limit_per_s <= 0:
            raise ValueError(
                f"rate_limit_per_s must be greater than zero, got {self.rate_limit_per_s}"
            )
        if not self.ak or not self.sk:
            raise ValueError("ak and sk must both be non-empty")

    @staticmethod
    def generate_projects(count: int, seed: int) -> tuple[ProjectSpec, ...]:
        """``count`` projects with ids drawn from ``seed``; regions cycle through REGIONS."""
        rng = random.Random(f"{seed}:projects")
        return tuple(
            ProjectSpec(project_id=f"{rng.getrandbits(128):032x}", region=REGIONS[i % len(REGIONS)])
            for i in range(count)
        )


class Fate(StrEnum):
    """How the next accepted retry of a job ends."""

    RECOVER = "recover"
    FAIL_AGAIN = "fail_again"
    STUCK = "stuck"


class _Kind(StrEnum):
    """What a generated top-level job looks like."""

    DUAL_ACTIVE = "dual_active"
    FAILED = "failed"
    FAILED_DELETE_ONLY = "failed_delete_only"
    PAUSED = "paused"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    HEALTHY = "healthy"
    RARE = "rare"


@dataclass(slots=True, kw_only=True)
class Job:
    """One emulated job; mutable state, read only through ``Fleet`` so transitions apply."""

    project_id: str
    id: str
    name: str
    status: JobStatus
    create_time: str
    description: str
    engine_type: str
    net_type: str
    billing_tag: bool
    job_direction: str
    db_use_type: DbUseType
    task_type: str
    failure_reason: str  # what failed_reason says when the job is failed
    failure_code: str = ""
    parent_id: str | None = None
    children: list[Job] = field(default_factory=list)
    fate: Fate | None = None
    retries_accepted: int = 0
    schedule: list[tuple[float, JobStatus]] = field(default_factory=list)

    @property
    def is_dual_active_parent(self) -> bool:
        return bool(self.children)

    @property
    def failure_message(self) -> str:
        """The ``error_msg`` / ``error_message`` of the job when failed: code and reason."""
        return f"{self.failure_code}: {self.failure_reason}" if self.failure_code else ""

    def advance(self, now: float) -> None:
        """Apply every scheduled transition that is due at ``now``."""
        while self.schedule and self.schedule[0][0] <= now:
            self.status = self.schedule.pop(0)[1]
        for child in self.children:
            child.advance(now)

    def current_status(self) -> JobStatus:
        """The status as the API shows it; a dual-active parent shows its worst child."""
        if not self.children:
            return self.status
        statuses = [c.current_status() for c in self.children]
        for wanted, shown in (
            (FAILED_STATUSES, JobStatus.INCRE_TRANSFER_FAILED),
            (PAUSED_STATUSES, JobStatus.PAUSING),
        ):
            if any(s in wanted for s in statuses):
                return shown
        return next(
            (s for s in statuses if s in IN_PROGRESS_STATUSES), JobStatus.INCRE_TRANSFER_STARTED
        )


def available_actions(status: JobStatus, *, db_use_type: DbUseType) -> tuple[str, ...]:
    """What ``job_action.available_actions`` lists for a status (a parent too: that is the trap)."""
    group = status_group(status)
    if group is StatusGroup.HEALTHY:
        if db_use_type is DbUseType.CLOUD_DATA_GUARD:
            return (ACTION_PAUSE, ACTION_SWITCH_OVER, ACTION_DELETE)
        return (ACTION_PAUSE, ACTION_DELETE)
    if group is StatusGroup.FAILED and status in DELETE_ONLY_FAILURES:
        return (ACTION_DELETE,)
    if group in (StatusGroup.FAILED, StatusGroup.PAUSED):
        return (ACTION_RETRY, ACTION_DELETE)
    return ()


def _current_action(job: Job, status: JobStatus) -> str | None:
    if status in (JobStatus.STARTJOBING, JobStatus.WAITING_FOR_START):
        return ACTION_RETRY if job.retries_accepted else ACTION_START
    if status is JobStatus.RELEASE_RESOURCE_STARTED:
        return ACTION_DELETE
    return None


def job_info(job: Job) -> JobInfo:
    """The wire view of a job (already advanced); children carry ``error_msg``."""
    status = job.current_status()
    available = available_actions(status, db_use_type=job.db_use_type)
    error_msg: str | None = None
    if job.parent_id is not None:
        error_msg = job.failure_message if status in FAILED_STATUSES else ""
    return JobInfo(
        id=job.id,
        name=job.name,
        status=status.value,
        create_time=job.create_time,
        description=job.description,
        engine_type=job.engine_type,
        net_type=job.net_type,
        billing_tag=job.billing_tag,
        job_direction=job.job_direction,
        db_use_type=job.db_use_type.value,
        task_type=job.task_type,
        node_new_framework=True,
        error_msg=error_msg,
        job_action=JobActions(
            available_actions=available,
            unavailable_actions=tuple(a for a in ALL_ACTIONS if a not in available),
            current_action=_current_action(job, status),
        ),
        children=tuple(job_info(c) for c in job.children),
    )


class ActionVerdict(StrEnum):
    """The service's answer for one job named in ``batch-retry-task`` / ``batch-pause-task``."""

    ACCEPTED = "accepted"
    UNKNOWN_JOB = "unknown_job"
    DUAL_ACTIVE_PARENT = "dual_active_parent"
    STATUS_FORBIDS = "status_forbids"


RetryVerdict = ActionVerdict  # the name from before pause existed


class Fleet:
    """Every project's jobs, generated from a config, with the retry state machine."""

    def __init__(self, config: EmulatorConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.projects = {p.project_id: p for p in config.projects}
        self._jobs = {p.project_id: generate_project_jobs(config, p) for p in config.projects}
        self._index = {
            (job.project_id, job.id): job for jobs in self._jobs.values() for job in _walk(jobs)
        }

    def has_project(self, project_id: str) -> bool:
        return project_id in self.projects

    def top_level_jobs(self, project_id: str) -> list[Job]:
        """The project's listable jobs (children only nested), advanced to now."""
        jobs = self._jobs.get(project_id, [])
        now = self.clock()
        for job in jobs:
            job.advance(now)
        return list(jobs)

    def find(self, project_id: str, job_id: str) -> Job | None:
        """A job or child of that project by id, advanced to now; None if unknown."""
        job = self._index.get((project_id, job_id))
        if job is None:
            return None
        root = self._index[(project_id, job.parent_id)] if job.parent_id else job
        root.advance(self.clock())
        return job

    def all_jobs(self) -> Iterator[Job]:
        """Every job of every project, parents before their children, advanced to now."""
        for project_id in self._jobs:
            yield from _walk(self.top_level_jobs(project_id))

    def retry_verdict(self, project_id: str, job_id: str) -> RetryVerdict:
        """What a retry of that job would get, without changing anything."""
        return self.action_verdict(project_id, job_id, ACTION_RETRY)

    def action_verdict(self, project_id: str, job_id: str, action: str) -> ActionVerdict:
        """What ``action`` (RETRY or PAUSE) on that job would get, without changing anything."""
        job = self.find(project_id, job_id)
        if job is None:
            return ActionVerdict.UNKNOWN_JOB
        if job.is_dual_active_parent:
            return ActionVerdict.DUAL_ACTIVE_PARENT
        if action not in available_actions(job.status, db_use_type=job.db_use_type):
            return ActionVerdict.STATUS_FORBIDS
        return ActionVerdict.ACCEPTED

    def pause(self, project_id: str, job_id: str) -> ActionVerdict:
        """Pause a running job: it shows ``PAUSING`` (paused) at once and offers RETRY (resume).

        A job paused here that had no fate gets ``RECOVER``: its resume succeeds.
        """
        verdict = self.action_verdict(project_id, job_id, ACTION_PAUSE)
        if verdict is ActionVerdict.ACCEPTED:
            job = self._index[(project_id, job_id)]
            job.schedule = []
            job.status = JobStatus.PAUSING
            if job.fate is None:
                job.fate = Fate.RECOVER
        return verdict

    def retry(self, project_id: str, job_id: str) -> RetryVerdict:
        """Retry a failed job or resume a paused one; starts its transition schedule if accepted."""
        verdict = self.retry_verdict(project_id, job_id)
        if verdict is RetryVerdict.ACCEPTED:
            job = self._index[(project_id, job_id)]
            job.schedule = _retry_schedule(job, self.clock(), self.config)
            job.retries_accepted += 1
            job.status = JobStatus.STARTJOBING
            if job.fate is Fate.FAIL_AGAIN:
                job.fate = Fate.RECOVER  # consumed: the next retry recovers
        return verdict


def _walk(jobs: list[Job]) -> Iterator[Job]:
    for job in jobs:
        yield job
        yield from job.children


def _retry_schedule(job: Job, now: float, config: EmulatorConfig) -> list[tuple[float, JobStatus]]:
    """STARTJOBING now, then (WAITING_FOR_START), then the fate's final status."""
    rng = random.Random(f"{config.seed}:{job.id}:{job.retries_accepted}")
    first = now + rng.uniform(*STEP_DELAY_S) * config.time_scale
    second = first + rng.uniform(*STEP_DELAY_S) * config.time_scale
    origin = job.status
    fate = job.fate or Fate.RECOVER
    if fate is Fate.STUCK:
        return [(first, JobStatus.WAITING_FOR_START)]
    if job.parent_id is not None:
        running = JobStatus.CHILD_TRANSFER_STARTED
        failed = origin if origin in FAILED_STATUSES else JobStatus.CHILD_TRANSFER_FAILED
    elif origin is JobStatus.FULL_TRANSFER_FAILED:
        running, failed = JobStatus.FULL_TRANSFER_STARTED, origin
    else:
        running = JobStatus.INCRE_TRANSFER_STARTED
        failed = origin if origin in FAILED_STATUSES else JobStatus.INCRE_TRANSFER_FAILED
    final = failed if fate is Fate.FAIL_AGAIN else running
    if origin is JobStatus.FULL_TRANSFER_FAILED:
        return [(second, final)]  # a full transfer restarts without waiting for increments
    return [(first, JobStatus.WAITING_FOR_START), (second, final)]


# --------------------------------------------------------------------------- generation

_APPS = (
    "orders", "billing", "inventory", "users", "payments", "catalog",
    "shipping", "analytics", "auth", "search", "reviews", "ledger",
)  # fmt: skip
_ENGINES: dict[DbUseType, tuple[str, ...]] = {
    DbUseType.MIGRATION: ("mysql", "mysql", "postgresql"),
    DbUseType.SYNC: ("mysql", "postgresql", "gaussdbv5", "mysql-to-kafka"),
    DbUseType.CLOUD_DATA_GUARD: ("cloudDataGuard-mysql",),
}
_ENGINE_SHORT = {
    "mysql": "mysql", "postgresql": "pg", "gaussdbv5": "gauss",
    "mysql-to-kafka": "kafka", "cloudDataGuard-mysql": "mysql",
}  # fmt: skip
_USE_SHORT = {DbUseType.MIGRATION: "migr", DbUseType.SYNC: "sync", DbUseType.CLOUD_DATA_GUARD: "dr"}
# (error_code, failed_reason); keep four entries: the generator's draws depend on the count.
_FAILURES = (
    ("DRS.Z0001", "Connection to source database timed out"),
    ("DRS.Z0002", "Duplicate entry for key 'PRIMARY' while applying an incremental event"),
    ("DRS.Z0003", "The binlog file requested by the task has been purged on the source database"),
    ("DRS.Z0004", "The destination database disk is full"),
)
_S = JobStatus
_STATUS_BY_KIND: dict[_Kind, tuple[JobStatus, ...]] = {
    _Kind.HEALTHY: (_S.INCRE_TRANSFER_STARTED,) * 3
    + (_S.FULL_TRANSFER_STARTED, _S.FULL_TRANSFER_COMPLETE),
    _Kind.FAILED: (_S.INCRE_TRANSFER_FAILED,) * 2 + (_S.FULL_TRANSFER_FAILED, _S.START_JOB_FAILED),
    _Kind.FAILED_DELETE_ONLY: tuple(sorted(DELETE_ONLY_FAILURES)),
    _Kind.PAUSED: (_S.PAUSING,),
    _Kind.IN_PROGRESS: (_S.CREATING, _S.CONFIGURATION, _S.CHANGE_JOB_STARTED),
    _Kind.ENDED: (_S.RELEASE_RESOURCE_COMPLETE, _S.NODE_UPGRADE_COMPLETE),
}  # fmt: skip
# Statuses no other kind yields (STARTJOBING / WAITING_FOR_START also come from retries).
RARE_STATUSES: tuple[JobStatus, ...] = tuple(
    s for s in JobStatus
    if s not in {x for kind in _STATUS_BY_KIND.values() for x in kind}
    and s not in {_S.CHILD_TRANSFER_STARTED, _S.CHILD_TRANSFER_FAILED}  # dual-active children
    and s not in DELETE_ONLY_FAILURES
)  # fmt: skip
RARE_KIND_MIN_JOBS = 40


def _share(n: int, ratio: float) -> int:
    return int(n * ratio + 0.5)


def _kinds(n: int) -> list[_Kind]:
    """The mix of one project: ~20% failed, ~10% paused, a few in progress or ended, >=1 parent."""
    failed = _share(n, 0.2)
    delete_only = (failed + 2) // 4 if failed >= 3 else 0
    few = max(1, _share(n, 0.05)) if n >= 10 else 0
    kinds = [_Kind.DUAL_ACTIVE] * max(1, n // 20)
    kinds += [_Kind.FAILED] * (failed - delete_only) + [_Kind.FAILED_DELETE_ONLY] * delete_only
    kinds += [_Kind.PAUSED] * _share(n, 0.1) + [_Kind.IN_PROGRESS] * few + [_Kind.ENDED] * few
    if n >= RARE_KIND_MIN_JOBS:
        kinds += [_Kind.RARE] * len(RARE_STATUSES)
    kinds += [_Kind.HEALTHY] * max(0, n - len(kinds))
    return kinds[:n]


def _job_id(rng: random.Random, suffix: str) -> str:
    """UUID-shaped like the service's ids (``140b5236-88ad-43c8-811c-1268453jb101``)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:27]}{suffix}"


def _task_type(rng: random.Random, status: JobStatus) -> str:
    if status.name.startswith("FULL_TRANSFER"):
        return rng.choice(("FULL_TRANS", "FULL_INCR_TRANS"))
    return rng.choice(("FULL_INCR_TRANS", "FULL_INCR_TRANS", "INCR_TRANS"))


def _new_job(
    rng: random.Random,
    project_id: str,
    *,
    name: str,
    status: JobStatus,
    db_use_type: DbUseType,
    engine_type: str,
    suffix: str = "jb101",
    parent_id: str | None = None,
) -> Job:
    # The draws happen in this order, as they always did: a fleet must not change with the code.
    job_id = _job_id(rng, suffix)
    create_time = str(CREATE_TIME_EPOCH_MS - rng.randrange(CREATE_TIME_SPREAD_MS))
    net_type = rng.choice(("vpc", "vpc", "vpn", "eip"))
    billing_tag = rng.random() < 0.3
    job_direction = rng.choice(("up", "down")) if parent_id else "up"
    task_type = _task_type(rng, status)
    failure_code, failure_reason = rng.choice(_FAILURES)
    return Job(
        project_id=project_id,
        id=job_id,
        name=name,
        status=status,
        create_time=create_time,
        description=f"{engine_type} {db_use_type.value} task {name}",
        engine_type=engine_type,
        net_type=net_type,
        billing_tag=billing_tag,
        job_direction=job_direction,
        db_use_type=db_use_type,
        task_type=task_type,
        failure_reason=failure_reason,
        failure_code=failure_code,
        parent_id=parent_id,
    )


def _top_level_job(
    rng: random.Random, project_id: str, kind: _Kind, number: int, rare: list[JobStatus]
) -> Job:
    if kind is _Kind.DUAL_ACTIVE:
        use = DbUseType.CLOUD_DATA_GUARD
    else:
        use = rng.choice((DbUseType.MIGRATION, DbUseType.SYNC, DbUseType.SYNC))
    engine = rng.choice(_ENGINES[use])
    name = f"{rng.choice(_APPS)}-{_ENGINE_SHORT[engine]}-{_USE_SHORT[use]}-{number:02d}"
    if kind is not _Kind.DUAL_ACTIVE:
        status = rare.pop() if kind is _Kind.RARE else rng.choice(_STATUS_BY_KIND[kind])
        return _new_job(
            rng, project_id, name=name, status=status, db_use_type=use, engine_type=engine
        )
    parent = _new_job(
        rng,
        project_id,
        name=name,
        status=JobStatus.INCRE_TRANSFER_FAILED,
        db_use_type=use,
        engine_type=engine,
    )
    # One child always needs a retry; the other is healthy or paused.
    statuses = (
        rng.choice((JobStatus.CHILD_TRANSFER_FAILED, JobStatus.INCRE_TRANSFER_FAILED)),
        rng.choice((JobStatus.CHILD_TRANSFER_STARTED, JobStatus.PAUSING)),
    )
    parent.children = [
        _new_job(
            rng,
            project_id,
            name=f"{name}-child-{i}",
            status=status,
            db_use_type=use,
            engine_type=engine,
            suffix=f"jb20{i}",
            parent_id=parent.id,
        )
        for i, status in enumerate(statuses, start=1)
    ]
    return parent


def _deal_fates(rng: random.Random, config: EmulatorConfig, jobs: list[Job]) -> None:
    """Give every job the API would retry a fate, by quota (see the module docstring)."""
    retryable = [
        job
        for job in _walk(jobs)
        if not job.is_dual_active_parent
        and ACTION_RETRY in available_actions(job.status, db_use_type=job.db_use_type)
    ]
    rng.shuffle(retryable)
    k = len(retryable)

    def quota(rate: float) -> int:
        return min(k, math.ceil(k * rate - 1e-9)) if rate > 0 else 0

    fail_again = quota(config.fail_again_rate)
    stuck = min(k - fail_again, quota(config.stuck_rate))
    for i, job in enumerate(retryable):
        if i < fail_again:
            job.fate = Fate.FAIL_AGAIN
        elif i < fail_again + stuck:
            job.fate = Fate.STUCK
        else:
            job.fate = Fate.RECOVER


def generate_project_jobs(config: EmulatorConfig, project: ProjectSpec) -> list[Job]:
    """The top-level jobs of one project, newest first (the stable list order)."""
    rng = random.Random(f"{config.seed}:{project.project_id}")
    kinds = _kinds(config.jobs_per_project)
    rng.shuffle(kinds)
    rare = list(RARE_STATUSES)  # one job each, handed out in the shuffled order of the kinds
    jobs = [
        _top_level_job(rng, project.project_id, kind, number, rare)
        for number, kind in enumerate(kinds, start=1)
    ]
    _deal_fates(rng, config, jobs)
    jobs.sort(key=lambda j: (-int(j.create_time), j.id))
    return jobs
