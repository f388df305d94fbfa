"""The emulator's jobs: its configuration, the job model and what each status offers (no HTTP).

A fleet is generated deterministically from ``(seed, project_id)`` (``engine.emulator.seeding``):
each project draws from its own ``random.Random(f"{seed}:{project_id}")``, never from the global
generator, so adding a project does not change the others. ``engine.emulator.fleet`` holds the
jobs and moves them through their statuses on an injected clock (``time.monotonic`` by default).

Every job that the API would let you retry carries a hidden ``Fate`` that decides how its retry
ends. Fates are dealt by quota, not by coin flips: in a project with ``k`` retryable jobs,
``ceil(k * fail_again_rate)`` fail again and ``ceil(k * stuck_rate)`` get stuck (a rate of 0
means none), so every project exercises every path while large fleets approach the rates.
Two more quotas are dealt the same way, after the fates (``engine.emulator.seeding``): the jobs
that recover but stay behind (``behind_rate``) and the failed ones the service retries by
itself (``self_retry_rate``).

A project of ``RARE_KIND_MIN_JOBS`` or more jobs also holds one job in each rare status (the
in-progress and ended statuses the usual mix lacks, and the rarer failures), so a large fleet
shows every status of the fact sheet; smaller projects are generated exactly as before, so
their fleets do not change with this feature.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from engine.emulator.accounts import (
    DEMO_AK,
    DEMO_DOMAIN,
    DEMO_PASSWORD,
    DEMO_SK,
    DEMO_USER,
    AccountSpec,
    ProjectSpec,
    check_tenancy,
    demo_account,
    generate_projects,
)
from engine.emulator.faults import FaultConfig
from engine.emulator.lag import Lag
from engine.emulator.wire import (
    ACTION_DELETE,
    ACTION_PAUSE,
    ACTION_RETRY,
    ACTION_START,
    ACTION_SWITCH_OVER,
    FAILED_STATUSES,
    HEALTHY_STATUSES,
    IN_PROGRESS_STATUSES,
    PAUSED_STATUSES,
    DbUseType,
    JobStatus,
    StatusGroup,
    job_action_json,
    status_group,
)

Clock = Callable[[], float]

TOKEN_TTL_S = 24 * 3600.0


# Failed statuses the service never lets you retry: the only way out is DELETE.
DELETE_ONLY_FAILURES = frozenset({JobStatus.CREATE_FAILED, JobStatus.RELEASE_RESOURCE_FAILED})

TASK_FULL_ONLY = "FULL_TRANS"  # task_type of a full-only task: it never enters incremental
STEP_DELAY_S = (0.5, 2.0)  # each retry step takes this long, times config.time_scale
CREATE_TIME_EPOCH_MS = 1_717_200_000_000  # 2024-06-01 UTC; create_time never reads wall time
CREATE_TIME_SPREAD_MS = 180 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """What fleet to seed and how its jobs behave; the same config always yields the same fleet.

    How jobs behave beyond their retry fates: ``behind_rate`` (the share of a project's
    retryable jobs that recover but stay minutes behind: ``engine.emulator.lag``),
    ``self_retry_rate`` (the share, rounded down, of a project's retryable jobs that failed
    moments before the emulator started and that the service retries by itself, up to three
    times: ``engine.emulator.seeding``), ``self_retry_success_rate`` (the chance that each of
    those tries works; 1: the first does, 0: all three fail and the job stays failed) and
    ``pause_delay_s`` (an accepted pause shows ``PAUSING`` only that many fleet seconds later;
    0: at once). ``parent_status``: what a dual-active parent shows, its worst child's status
    (``worst_child``) or one of its own that its children do not move (``own``); no source
    says which (``Job.current_status``).

    The gateway settings: ``token_ttl_s`` (IAM tokens expire that long after issue, on the fleet
    clock; the pre-issued ``Emulator.token`` too, but only with ``expire_static_token``),
    ``rate_limit_per_s`` (None: no throttling), ``faults`` (see ``FaultConfig``; drawn from
    ``seed``) and the demo ``ak`` / ``sk`` pair the AK/SK verifier accepts.

    The tenancy (``engine.emulator.accounts``): ``projects``, ``user``, ``password``,
    ``domain``, ``ak`` and ``sk`` are the first account's (``account-1``), as they were when
    the emulator had one; ``other_accounts`` are the further ones. ``accounts`` lists them all,
    ``all_projects`` every account's projects; ``for_accounts`` builds a config from a list.
    """

    projects: tuple[ProjectSpec, ...]
    jobs_per_project: int = 20
    seed: int = 0
    time_scale: float = 1.0
    fail_again_rate: float = 0.15
    stuck_rate: float = 0.05
    behind_rate: float = 0.1
    self_retry_rate: float = 0.15
    self_retry_success_rate: float = 1.0
    pause_delay_s: float = 0.0
    parent_refusal: Literal["per_job", "request"] = "per_job"
    parent_status: Literal["worst_child", "own"] = "worst_child"
    user: str = DEMO_USER
    password: str = DEMO_PASSWORD
    domain: str = DEMO_DOMAIN
    token_ttl_s: float = TOKEN_TTL_S
    expire_static_token: bool = False
    rate_limit_per_s: float | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    ak: str = DEMO_AK
    sk: str = DEMO_SK
    other_accounts: tuple[AccountSpec, ...] = ()
    account_name: str = "account-1"  # the first account's name (stats, the first line)

    def __post_init__(self) -> None:
        rates = ("fail_again_rate", "stuck_rate", "behind_rate", "self_retry_rate")
        for name in (*rates, "self_retry_success_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.pause_delay_s < 0:
            raise ValueError(f"pause_delay_s must be >= 0, got {self.pause_delay_s}")
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be greater than zero, got {self.token_ttl_s}")
        if self.rate_limit_per_s is not None and self.rate_limit_per_s <= 0:
            raise ValueError(
                f"rate_limit_per_s must be greater than zero, got {self.rate_limit_per_s}"
            )
        if not self.ak or not self.sk:
            raise ValueError("ak and sk must both be non-empty")
        check_tenancy(self.accounts)

    @staticmethod
    def generate_projects(count: int, seed: int) -> tuple[ProjectSpec, ...]:
        """``count`` projects with ids drawn from ``seed``; regions cycle through REGIONS."""
        return generate_projects(count, seed)

    @classmethod
    def for_accounts(cls, accounts: tuple[AccountSpec, ...], **settings: Any) -> EmulatorConfig:
        """A config serving ``accounts`` (the first becomes the single-account fields)."""
        first, *others = accounts
        return cls(
            projects=first.projects,
            user=first.user,
            password=first.password,
            domain=first.domain,
            ak=first.ak,
            sk=first.sk,
            other_accounts=tuple(others),
            account_name=first.name,
            **settings,
        )

    @property
    def accounts(self) -> tuple[AccountSpec, ...]:
        """Every account, the first (``account-1``) from the single-account fields."""
        first = demo_account(
            1,
            self.projects,
            self.seed,
            user=self.user,
            password=self.password,
            domain=self.domain,
            ak=self.ak,
            sk=self.sk,
            name=self.account_name,
        )
        return (first, *self.other_accounts)

    @property
    def all_projects(self) -> tuple[ProjectSpec, ...]:
        """Every account's projects, account by account."""
        return (*self.projects, *(p for a in self.other_accounts for p in a.projects))


class Fate(StrEnum):
    """How the next accepted retry of a job ends."""

    RECOVER = "recover"
    FAIL_AGAIN = "fail_again"
    STUCK = "stuck"


class Kind(StrEnum):
    """What a generated top-level job looks like."""

    DUAL_ACTIVE = "dual_active"
    FAILED = "failed"
    FAILED_DELETE_ONLY = "failed_delete_only"
    PAUSED = "paused"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    HEALTHY = "healthy"
    RARE = "rare"


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """What the list filters match on: tags, enterprise project, the two database instances
    (``source_endpoint`` / ``target_endpoint`` in batch-detail); drawn per job by the seeding
    from its own generator, so they never move another draw."""

    tags: tuple[tuple[str, str], ...] = ()
    enterprise_project_id: str = "0"
    source_instance_id: str = ""
    source_ip: str = ""
    target_instance_id: str = ""
    target_ip: str = ""


@dataclass(slots=True, kw_only=True)
class Job:
    """One emulated job; mutable state, read only through ``Fleet`` so transitions apply."""

    project_id: str
    id: str
    name: str
    status: JobStatus
    created_ms: int  # epoch ms; the wire shows it as create_time_text() does
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
    paused_from: JobStatus | None = None  # the status a pause found: the phase a resume returns to
    # When the job last changed and last started, on the fleet's clock (batch-detail's
    # update_time / actual_start_time); None: before the emulator started (an age drawn from
    # the id, so listings stay the same for a seed).
    changed_at: float | None = None
    started_at: float | None = None
    # The replication delay (engine.emulator.lag), set by the Fleet when it starts; a job that
    # "stays behind" has a floor of minutes (EmulatorConfig.behind_rate).
    lag: Lag | None = None
    stays_behind: bool = False
    # A failed job the service retries by itself: it failed this long before the emulator
    # started (EmulatorConfig.self_retry_rate); service_retry_at: when its first try begins
    # (None: the service does not retry it, or a client's retry or pause called its tries
    # off); service_tries: when each of its tries begins (those called off dropped).
    failed_ago_s: float | None = None
    service_retry_at: float | None = None
    service_tries: tuple[float, ...] = ()
    pause_due: float | None = None  # an accepted pause shows as PAUSING from then on
    # A dual-active parent shows its worst child's status (EmulatorConfig.parent_status
    # "worst_child") or, when False, its own (``status``, which its children never move).
    status_from_children: bool = True
    labels: Labels = field(default_factory=lambda: Labels())

    @property
    def is_dual_active_parent(self) -> bool:
        return bool(self.children)

    @property
    def create_time(self) -> str:
        """``create_time`` as the reference example writes it, ``"2020-12-21 10:57:49"`` (UTC:
        the example names no zone, nor does the emulator)."""
        return datetime.fromtimestamp(self.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def failure_message(self) -> str:
        """The ``error_msg`` / ``error_message`` of the job when failed: code and reason."""
        return f"{self.failure_code}: {self.failure_reason}" if self.failure_code else ""

    def set_status(self, at: float, status: JobStatus) -> None:
        """The job is in ``status`` from ``at`` on; its delay starts or stops draining."""
        self.status, self.changed_at = status, at
        if status is JobStatus.STARTJOBING:
            self.started_at = at
        if status is JobStatus.PAUSING:
            self.pause_due = None
        if self.lag is not None:
            self.lag.turn(at, running=status in HEALTHY_STATUSES)

    def call_off_service_retries(self, now: float) -> None:
        """A client's retry or pause came first: the service's tries not begun by ``now`` are
        off (the caller replaces the schedule)."""
        self.service_retry_at = None
        self.service_tries = tuple(t for t in self.service_tries if t <= now)

    def service_tries_begun(self, now: float) -> int:
        """How many of the service's own tries have begun by ``now``."""
        return sum(t <= now for t in self.service_tries)

    def advance(self, now: float) -> None:
        """Apply every scheduled transition that is due at ``now``."""
        while self.schedule and self.schedule[0][0] <= now:
            self.set_status(*self.schedule.pop(0))
        for child in self.children:
            child.advance(now)

    def current_status(self) -> JobStatus:
        """The status as the API shows it; a dual-active parent shows its worst child, or its
        own.

        No source says what a dual-active parent's status is (the fact sheet, the SDK's models
        and docstrings are silent), so the emulator plays two readings
        (``EmulatorConfig.parent_status``, listed in ``docs/known-unknowns.md``). By default it
        derives it from its children (any failed: ``INCRE_TRANSFER_FAILED``; else any paused:
        ``PAUSING``; else the first in progress; else ``INCRE_TRANSFER_STARTED``). With
        ``own`` it shows the status it was created with (the seeding gives every parent
        ``INCRE_TRANSFER_FAILED``), whatever its children do: a parent that looks failed, and
        offers RETRY, after its children recovered.
        """
        if not self.children or not self.status_from_children:
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


# OTC drs_03_0133: only migration and synchronisation tasks in these statuses can be paused
# (not DR tasks, not CHILD_TRANSFER_* re-edit sub-tasks, not the dual-active parent).
PAUSABLE_STATUSES = frozenset(
    {
        JobStatus.FULL_TRANSFER_STARTED,
        JobStatus.FULL_TRANSFER_FAILED,
        JobStatus.FULL_TRANSFER_COMPLETE,
        JobStatus.INCRE_TRANSFER_STARTED,
        JobStatus.INCRE_TRANSFER_FAILED,
    }
)
PAUSABLE_USES = frozenset({DbUseType.MIGRATION, DbUseType.SYNC})


def available_actions(status: JobStatus, *, db_use_type: DbUseType) -> tuple[str, ...]:
    """What ``job_action.available_actions`` lists for a status (a parent too: that is the trap)."""
    group = status_group(status)
    pause = (ACTION_PAUSE,) if status in PAUSABLE_STATUSES and db_use_type in PAUSABLE_USES else ()
    if group is StatusGroup.HEALTHY:
        if db_use_type is DbUseType.CLOUD_DATA_GUARD:
            return (ACTION_SWITCH_OVER, ACTION_DELETE)
        return (*pause, ACTION_DELETE)
    if group is StatusGroup.FAILED and status in DELETE_ONLY_FAILURES:
        return (ACTION_DELETE,)
    if group in (StatusGroup.FAILED, StatusGroup.PAUSED):
        return (ACTION_RETRY, *pause, ACTION_DELETE)
    return ()


def _current_action(job: Job, status: JobStatus) -> str | None:
    """``job_action.current_action``. During the service's own retry it says ``RETRY``, as for
    ours: no source says what the real service shows then (unverified)."""
    if job.pause_due is not None:
        return ACTION_PAUSE
    if status in (JobStatus.STARTJOBING, JobStatus.WAITING_FOR_START):
        retrying = job.retries_accepted or job.service_retry_at is not None
        return ACTION_RETRY if retrying else ACTION_START
    if status is JobStatus.RELEASE_RESOURCE_STARTED:
        return ACTION_DELETE
    return None


def job_info(job: Job) -> dict[str, Any]:
    """The wire view of a listed job (already advanced), as the SDK's ``JobInfo`` names its
    fields (``node_newFramework``, camel-case F); children carry ``error_msg``, and so does a
    failed top-level job (the fact sheet; the SDK's ``JobInfo`` lacks the key)."""
    status = job.current_status()
    available = available_actions(status, db_use_type=job.db_use_type)
    if job.pause_due is not None:  # a pause is under way: nothing more until it lands
        available = tuple(a for a in available if a not in (ACTION_PAUSE, ACTION_RETRY))
    wire: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "status": status.value,
        "create_time": job.create_time,
        "description": job.description,
        "engine_type": job.engine_type,
        "net_type": job.net_type,
        "billing_tag": job.billing_tag,
        "job_direction": job.job_direction,
        "db_use_type": job.db_use_type.value,
        "task_type": job.task_type,
        "node_newFramework": True,
        "job_action": job_action_json(available, _current_action(job, status)),
    }
    if job.parent_id is None:
        wire["children"] = [job_info(c) for c in job.children]  # a child has none (SDK)
        if status in FAILED_STATUSES:  # "error_msg (also on a failed top-level job)"
            wire["error_msg"] = _top_level_error(job)
    else:
        wire["error_msg"] = job.failure_message if status in FAILED_STATUSES else ""
    return wire


def _top_level_error(job: Job) -> str:
    """A failed job's own message; a parent's is its first failed child's (an assumption), or
    its own when it shows a status of its own."""
    if not job.children or not job.status_from_children:
        return job.failure_message
    failed = (c for c in job.children if c.current_status() in FAILED_STATUSES)
    return next((c.failure_message for c in failed), "")


def resume_status(job: Job, origin: JobStatus) -> JobStatus:
    """The running status a retry or resume of ``job`` (now in ``origin``) leads to.

    A task returns to the phase it stopped in (the fact sheet): a full transfer restarts its
    full transfer, a full-only task (``FULL_TRANS``) never enters incremental, a re-edit sub-task
    resumes as one; everything else, DR children too, goes to ``INCRE_TRANSFER_STARTED``.
    """
    stopped_in = job.paused_from if origin is JobStatus.PAUSING and job.paused_from else origin
    if stopped_in in (JobStatus.FULL_TRANSFER_STARTED, JobStatus.FULL_TRANSFER_FAILED):
        return JobStatus.FULL_TRANSFER_STARTED
    if stopped_in in (JobStatus.CHILD_TRANSFER_STARTED, JobStatus.CHILD_TRANSFER_FAILED):
        return JobStatus.CHILD_TRANSFER_STARTED
    if job.task_type == TASK_FULL_ONLY:
        if stopped_in is JobStatus.FULL_TRANSFER_COMPLETE:
            return JobStatus.FULL_TRANSFER_COMPLETE
        return JobStatus.FULL_TRANSFER_STARTED
    return JobStatus.INCRE_TRANSFER_STARTED


class ActionVerdict(StrEnum):
    """The service's answer for one job named in ``batch-retry-task`` / ``batch-pause-task``."""

    ACCEPTED = "accepted"
    UNKNOWN_JOB = "unknown_job"
    DUAL_ACTIVE_PARENT = "dual_active_parent"
    STATUS_FORBIDS = "status_forbids"


RetryVerdict = ActionVerdict  # the name from before pause existed


def walk(jobs: list[Job]) -> Iterator[Job]:
    for job in jobs:
        yield job
        yield from job.children


@dataclass(frozen=True, slots=True)
class WireTimes:
    """Fleet-clock moments as the wall-clock text batch-detail shows."""

    offset_s: float  # wall clock minus fleet clock, now
    started: float  # the fleet clock when the emulator started

    def wire(self, moment: float) -> str:
        return str(int((moment + self.offset_s) * 1000))

    def before_start(self, job: Job) -> float:
        """A job unchanged since the emulator started: 10 minutes to a day before it."""
        return self.started - 600 - zlib.crc32(job.id.encode()) % 86_400
