"""The emulator's fleet: every project's jobs, and the clock-driven retry and pause machine.

The state machine is lazy, not a simulation loop: an accepted retry gives the job a schedule of
``(at, status)`` transitions, and due transitions are applied whenever the job is read. There are
no background tasks, so a test drives a fake clock and reads again instead of sleeping. An
accepted pause (``batch-pause-task``) moves a job to ``PAUSING`` at once, or
``pause_delay_s`` later. Every status change also starts or stops the job's replication delay
draining (``engine.emulator.lag``), and the service's own retries of recently failed jobs are
schedules given when the fleet starts (``engine.emulator.seeding``): up to ``SERVICE_TRIES``
tries, each ``SELF_RETRY_AFTER_S`` after the failure before it, each through ``STARTJOBING``,
that work or fail again by ``EmulatorConfig.self_retry_success_rate`` (drawn per job from the
seed); after the last failed try the job stays failed until a client retries it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from engine.emulator.lag import CATCH_UP_PER_S, PRE_START_BACKLOG_S, Lag, draw_floor
from engine.emulator.seeding import SELF_RETRY_AFTER_S, SERVICE_TRIES, generate_project_jobs
from engine.emulator.state import (
    STEP_DELAY_S,
    ActionVerdict,
    Clock,
    EmulatorConfig,
    Fate,
    Job,
    RetryVerdict,
    available_actions,
    resume_status,
    walk,
)
from engine.emulator.wire import (
    ACTION_PAUSE,
    ACTION_RETRY,
    FAILED_STATUSES,
    HEALTHY_STATUSES,
    JobStatus,
)


class Fleet:
    """Every project's jobs, generated from a config, with the retry state machine."""

    def __init__(self, config: EmulatorConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.started = clock()  # jobs changed before this, each at an age drawn from its id
        self.projects = {p.project_id: p for p in config.all_projects}
        self._jobs = {p.project_id: generate_project_jobs(config, p) for p in config.all_projects}
        self._index = {
            (job.project_id, job.id): job for jobs in self._jobs.values() for job in walk(jobs)
        }
        self._spikes = random.Random(f"{config.seed}:lag-spikes")
        for job in self._index.values():
            self._start(job)

    def _start(self, job: Job) -> None:
        """Give a job its delay (engine.emulator.lag) and, if the service retries it by itself,
        the schedule of its tries (``service_retry_schedule``)."""
        job.status_from_children = self.config.parent_status == "worst_child"
        running = job.status in HEALTHY_STATUSES
        floor = draw_floor(self.config.seed, job.id, stays_behind=job.stays_behind)
        backlog = floor if running else PRE_START_BACKLOG_S
        if job.failed_ago_s is not None:
            # Both times are the service's pace, compressed by time_scale like every step.
            scale = self.config.time_scale
            job.changed_at = self.started - job.failed_ago_s * scale
            backlog = floor + job.failed_ago_s
            job.schedule, job.service_tries = service_retry_schedule(
                job, job.changed_at, self.config
            )
            job.service_retry_at = job.service_tries[0]
        job.lag = Lag(
            floor_s=floor,
            catch_up_per_s=CATCH_UP_PER_S / self.config.time_scale,
            at=self.started,
            delay_s=backlog,
            running=running,
        )

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
            yield from walk(self.top_level_jobs(project_id))

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
        if job.pause_due is not None:  # an accepted pause is under way
            return ActionVerdict.STATUS_FORBIDS
        if action not in available_actions(job.status, db_use_type=job.db_use_type):
            return ActionVerdict.STATUS_FORBIDS
        return ActionVerdict.ACCEPTED

    def pause(self, project_id: str, job_id: str) -> ActionVerdict:
        """Pause a job: it shows ``PAUSING`` (paused) and offers RETRY (resume) — at once, or
        ``config.pause_delay_s`` later (until then it keeps its status, offers neither PAUSE nor
        RETRY, and its ``current_action`` is PAUSE).

        A job paused here that had no fate gets ``RECOVER``: its resume succeeds. A pause also
        calls off the service's own retry of a failed job, if it has not begun.
        """
        verdict = self.action_verdict(project_id, job_id, ACTION_PAUSE)
        if verdict is ActionVerdict.ACCEPTED:
            job = self._index[(project_id, job_id)]
            now = self.clock()
            job.paused_from = job.status
            job.call_off_service_retries(now)
            if self.config.pause_delay_s > 0:
                job.pause_due = now + self.config.pause_delay_s
                job.schedule = [(job.pause_due, JobStatus.PAUSING)]
            else:
                job.schedule = []
                job.set_status(now, JobStatus.PAUSING)
            if job.fate is None:
                job.fate = Fate.RECOVER
        return verdict

    def delay_of(self, job: Job) -> float:
        """The replication delay of a job (already advanced) now, in seconds; a parent's is its
        worst child's. A running job read here may take a lag spike (``FaultConfig``)."""
        if job.children:
            return max(self.delay_of(child) for child in job.children)
        if job.lag is None:
            raise RuntimeError(f"job {job.id} has no delay: it was not started by this fleet")
        now, faults = self.clock(), self.config.faults
        if (
            faults.lag_spike_rate > 0
            and job.status in HEALTHY_STATUSES
            and self._spikes.random() < faults.lag_spike_rate
        ):
            job.lag.spike(now, faults.lag_spike_s)
        return job.lag.delay(now)

    def retry(self, project_id: str, job_id: str) -> RetryVerdict:
        """Retry a failed job or resume a paused one; starts its transition schedule if accepted."""
        verdict = self.retry_verdict(project_id, job_id)
        if verdict is RetryVerdict.ACCEPTED:
            job = self._index[(project_id, job_id)]
            now = self.clock()
            job.schedule = retry_schedule(job, now, self.config)
            job.paused_from = None
            job.call_off_service_retries(now)  # ours came first: the service's tries are off
            job.retries_accepted += 1
            job.set_status(now, JobStatus.STARTJOBING)
            if job.fate is Fate.FAIL_AGAIN:
                job.fate = Fate.RECOVER  # consumed: the next retry recovers
        return verdict


_FAILURE_OF = {
    JobStatus.FULL_TRANSFER_STARTED: JobStatus.FULL_TRANSFER_FAILED,
    JobStatus.FULL_TRANSFER_COMPLETE: JobStatus.FULL_TRANSFER_FAILED,
    JobStatus.CHILD_TRANSFER_STARTED: JobStatus.CHILD_TRANSFER_FAILED,
    JobStatus.INCRE_TRANSFER_STARTED: JobStatus.INCRE_TRANSFER_FAILED,
}


def retry_schedule(
    job: Job,
    now: float,
    config: EmulatorConfig,
    *,
    draw: str | None = None,
    fate: Fate | None = None,
) -> list[tuple[float, JobStatus]]:
    """After STARTJOBING at ``now``: (WAITING_FOR_START), then the fate's final status.

    ``draw`` names the random stream of the delays (the number of accepted retries by default);
    ``fate`` is the job's own unless given (a try of the service's has one of its own).
    """
    n = str(job.retries_accepted) if draw is None else draw
    rng = random.Random(f"{config.seed}:{job.id}:{n}")
    first = now + rng.uniform(*STEP_DELAY_S) * config.time_scale
    second = first + rng.uniform(*STEP_DELAY_S) * config.time_scale
    origin = job.status
    fate = fate or job.fate or Fate.RECOVER
    if fate is Fate.STUCK:
        return [(first, JobStatus.WAITING_FOR_START)]
    running = resume_status(job, origin)
    failed = origin if origin in FAILED_STATUSES else _FAILURE_OF[running]
    final = failed if fate is Fate.FAIL_AGAIN else running
    if origin is JobStatus.FULL_TRANSFER_FAILED:
        return [(second, final)]  # a full transfer restarts without waiting for increments
    return [(first, JobStatus.WAITING_FOR_START), (second, final)]


def service_retry_schedule(
    job: Job, failed_at: float, config: EmulatorConfig
) -> tuple[list[tuple[float, JobStatus]], tuple[float, ...]]:
    """The service's own tries of a job that failed at ``failed_at``, and when each begins.

    Up to ``SERVICE_TRIES``: each begins ``SELF_RETRY_AFTER_S`` (times ``time_scale``) after
    the failure before it, goes ``STARTJOBING`` (WAITING_FOR_START) as a client's retry does,
    then works, or fails back into the job's failed status, by ``self_retry_success_rate``:
    one draw per try from ``random.Random(f"{seed}:{job_id}:service-tries")``, so the outcome
    depends on the seed and the job only. The tries end at the first that works; after the
    last failed one the job stays failed. The first try's delays draw from the stream they
    always did (``"service"``), so a fleet whose first try works is the one it always was.
    """
    outcomes = random.Random(f"{config.seed}:{job.id}:service-tries")
    schedule: list[tuple[float, JobStatus]] = []
    begins: list[float] = []
    for n in range(1, SERVICE_TRIES + 1):
        at = failed_at + SELF_RETRY_AFTER_S * config.time_scale
        works = outcomes.random() < config.self_retry_success_rate
        steps = retry_schedule(
            job,
            at,
            config,
            draw="service" if n == 1 else f"service-{n}",
            fate=Fate.RECOVER if works else Fate.FAIL_AGAIN,
        )
        schedule += [(at, JobStatus.STARTJOBING), *steps]
        begins.append(at)
        if works:
            break
        failed_at = steps[-1][0]
    return schedule, tuple(begins)
