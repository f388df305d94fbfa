"""The seeded fleet: every project's jobs, generated from the seed alone.

The same seed gives the same jobs (ids, names, statuses, fates), whatever the machine or the
order projects are asked for; the draws depend on each constant here, so changing one changes
every seeded fleet. What came later draws from its own generators, after the fates, so it
moves nothing earlier: which jobs stay behind and which the service retries by itself
(``random.Random(f"{seed}:{project_id}:lag")``), and each job's labels — tags, enterprise
project, instances — (``random.Random(f"{seed}:{job_id}:labels")``).
"""

from __future__ import annotations

import math
import random
import uuid

from engine.emulator.accounts import ProjectSpec
from engine.emulator.state import (
    CREATE_TIME_EPOCH_MS,
    CREATE_TIME_SPREAD_MS,
    DELETE_ONLY_FAILURES,
    EmulatorConfig,
    Fate,
    Job,
    Kind,
    Labels,
    available_actions,
    resume_status,
    walk,
)
from engine.emulator.wire import (
    ACTION_RETRY,
    FAILED_STATUSES,
    DbUseType,
    JobStatus,
)

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
_STATUS_BY_KIND: dict[Kind, tuple[JobStatus, ...]] = {
    Kind.HEALTHY: (_S.INCRE_TRANSFER_STARTED,) * 3
    + (_S.FULL_TRANSFER_STARTED, _S.FULL_TRANSFER_COMPLETE),
    Kind.FAILED: (_S.INCRE_TRANSFER_FAILED,) * 2 + (_S.FULL_TRANSFER_FAILED, _S.START_JOB_FAILED),
    Kind.FAILED_DELETE_ONLY: tuple(sorted(DELETE_ONLY_FAILURES)),
    Kind.PAUSED: (_S.PAUSING,),
    Kind.IN_PROGRESS: (_S.CREATING, _S.CONFIGURATION, _S.CHANGE_JOB_STARTED),
    Kind.ENDED: (_S.RELEASE_RESOURCE_COMPLETE, _S.NODE_UPGRADE_COMPLETE),
}  # fmt: skip
# Statuses no other kind yields (STARTJOBING / WAITING_FOR_START also come from retries).
RARE_STATUSES: tuple[JobStatus, ...] = tuple(
    s for s in JobStatus
    if s not in {x for kind in _STATUS_BY_KIND.values() for x in kind}
    and s not in DELETE_ONLY_FAILURES
)  # fmt: skip
# The statuses of a re-edited synchronisation task's sub-task (SDK: "再编辑子任务"): a rare job
# in one of them is always a sync task.
RE_EDIT_STATUSES = frozenset(
    {
        _S.CHILD_TRANSFER_STARTING, _S.CHILD_TRANSFER_STARTED, _S.CHILD_TRANSFER_COMPLETE,
        _S.CHILD_TRANSFER_FAILED, _S.RELEASE_CHILD_TRANSFER_STARTED,
        _S.RELEASE_CHILD_TRANSFER_COMPLETE,
    }
)  # fmt: skip
RARE_KIND_MIN_JOBS = 40
# The service's own retries of a failed job (the fact sheet: it retries 3 times by itself): the
# job failed FAILED_AGO_S before the emulator started, and each of the service's SERVICE_TRIES
# tries begins SELF_RETRY_AFTER_S after the failure before it (fleet seconds, all times
# time_scale: the margin keeps a client that retries at once ahead of it). Whether a try works
# is EmulatorConfig.self_retry_success_rate's (engine.emulator.fleet).
FAILED_AGO_S = (2.0, 6.0)
SELF_RETRY_AFTER_S = 20.0
SERVICE_TRIES = 3


def _share(n: int, ratio: float) -> int:
    return int(n * ratio + 0.5)


def _kinds(n: int) -> list[Kind]:
    """The mix of one project: ~20% failed, ~10% paused, a few in progress or ended, >=1 parent."""
    failed = _share(n, 0.2)
    delete_only = (failed + 2) // 4 if failed >= 3 else 0
    few = max(1, _share(n, 0.05)) if n >= 10 else 0
    kinds = [Kind.DUAL_ACTIVE] * max(1, n // 20)
    kinds += [Kind.FAILED] * (failed - delete_only) + [Kind.FAILED_DELETE_ONLY] * delete_only
    kinds += [Kind.PAUSED] * _share(n, 0.1) + [Kind.IN_PROGRESS] * few + [Kind.ENDED] * few
    if n >= RARE_KIND_MIN_JOBS:
        kinds += [Kind.RARE] * len(RARE_STATUSES)
    kinds += [Kind.HEALTHY] * max(0, n - len(kinds))
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
    created_ms = CREATE_TIME_EPOCH_MS - rng.randrange(CREATE_TIME_SPREAD_MS)
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
        created_ms=created_ms,
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
    rng: random.Random, project_id: str, kind: Kind, number: int, rare: list[JobStatus]
) -> Job:
    rare_status = rare.pop() if kind is Kind.RARE else None
    if kind is Kind.DUAL_ACTIVE:
        use = DbUseType.CLOUD_DATA_GUARD
    else:
        use = rng.choice((DbUseType.MIGRATION, DbUseType.SYNC, DbUseType.SYNC))
        if rare_status in RE_EDIT_STATUSES:
            use = DbUseType.SYNC
    engine = rng.choice(_ENGINES[use])
    name = f"{rng.choice(_APPS)}-{_ENGINE_SHORT[engine]}-{_USE_SHORT[use]}-{number:02d}"
    if kind is not Kind.DUAL_ACTIVE:
        status = rare_status or rng.choice(_STATUS_BY_KIND[kind])
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
    # One child always needs a retry; the other is healthy or paused. DR children run through
    # the ordinary statuses (CHILD_TRANSFER_* are re-edit sub-task statuses: the fact sheet), so
    # the first child's failure is INCRE_TRANSFER_FAILED ("DR abnormal") whichever way its draw
    # goes; the draw stays, or every later draw of the project would change.
    rng.choice((0, 1))
    statuses = (
        JobStatus.INCRE_TRANSFER_FAILED,
        rng.choice((JobStatus.INCRE_TRANSFER_STARTED, JobStatus.PAUSING)),
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
        for job in walk(jobs)
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


def _deal_self_retries_and_laggards(
    config: EmulatorConfig, project_id: str, jobs: list[Job]
) -> None:
    """Which retryable jobs the service retries by itself, and which stay behind once running.

    From their own ``random.Random(f"{seed}:{project_id}:lag")``, after the fates, so neither
    changes a job's fields, status or fate. Of a project's ``k`` retryable jobs,
    ``floor(k * self_retry_rate)`` failed ones fated to recover are the service's to retry (a
    floor, unlike the other quotas: the default fleet has one or two, not one per project);
    then ``ceil(k * behind_rate)`` of the other recovering jobs whose resume leads to an
    incremental status stay 90-600 s behind (``engine.emulator.lag``).
    """
    rng = random.Random(f"{config.seed}:{project_id}:lag")
    retryable = sorted((job for job in walk(jobs) if job.fate is not None), key=lambda j: j.id)
    k = len(retryable)
    recovering = [job for job in retryable if job.fate is Fate.RECOVER]
    rng.shuffle(recovering)
    failed = [job for job in recovering if job.status in FAILED_STATUSES]
    for job in failed[: math.floor(k * config.self_retry_rate + 1e-9)]:
        job.failed_ago_s = round(rng.uniform(*FAILED_AGO_S), 3)
    incremental = (JobStatus.INCRE_TRANSFER_STARTED, JobStatus.CHILD_TRANSFER_STARTED)
    laggards = [
        job
        for job in recovering
        if job.failed_ago_s is None and resume_status(job, job.status) in incremental
    ]
    behind = math.ceil(k * config.behind_rate - 1e-9) if config.behind_rate > 0 else 0
    for job in laggards[:behind]:
        job.stays_behind = True


_ENVS = ("prod", "prod", "staging", "dev")
_TEAMS = ("orders", "payments", "data", "platform")


def _instance(rng: random.Random) -> tuple[str, str]:
    """An RDS-like instance id (32 hex characters and ``in01``) and a private address."""
    return (
        f"{rng.getrandbits(128):032x}in01",
        f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}",
    )


def _label(config: EmulatorConfig, jobs: list[Job]) -> None:
    """Give every job its tags, enterprise project and instances, each job from its own
    ``random.Random(f"{seed}:{job_id}:labels")``: no other draw of the fleet moves. A dual-active
    child shares its parent's instances (swapped for the ``down`` direction)."""
    eps = random.Random(f"{config.seed}:enterprise-projects")
    projects = [str(uuid.UUID(int=eps.getrandbits(128), version=4)) for _ in range(2)]
    for job in jobs:
        rng = random.Random(f"{config.seed}:{job.id}:labels")
        tags = (
            () if rng.random() < 0.1 else (("env", rng.choice(_ENVS)), ("team", rng.choice(_TEAMS)))
        )
        (source, source_ip), (target, target_ip) = _instance(rng), _instance(rng)
        job.labels = Labels(
            tags=tags,
            enterprise_project_id=rng.choice(projects) if rng.random() < 0.25 else "0",
            source_instance_id=source,
            source_ip=source_ip,
            target_instance_id=target,
            target_ip=target_ip,
        )
        for child in job.children:
            ends = (source, source_ip, target, target_ip)
            if child.job_direction == "down":
                ends = (target, target_ip, source, source_ip)
            child.labels = Labels(
                tags=tags,
                enterprise_project_id=job.labels.enterprise_project_id,
                source_instance_id=ends[0],
                source_ip=ends[1],
                target_instance_id=ends[2],
                target_ip=ends[3],
            )


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
    _deal_self_retries_and_laggards(config, project.project_id, jobs)
    _label(config, jobs)
    jobs.sort(key=lambda j: (-j.created_ms, j.id))
    return jobs
