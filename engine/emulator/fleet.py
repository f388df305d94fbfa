"""The emulator's fleet: every project's jobs, and the clock-driven retry and pause machine.

The state machine is lazy, not a simulation loop: an accepted retry gives the job a schedule of
``(at, status)`` transitions, and due transitions are applied whenever the job is read. There are
no background tasks, so a test drives a fake clock and reads again instead of sleeping. An
accepted pause (``batch-pause-task``) moves a job to ``PAUSING`` at once, or
``pause_delay_s`` later. Every status change also starts or stops the job's replication delay
draining (``engine.emulator.lag``), and the service's own retries of recently failed jobs are
schedules given when the fleet starts (``engine.emulator.seeding``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from engine.emulator.lag import CATCH_UP_PER_S, PRE_START_BACKLOG_S, Lag, draw_floor
from engine.emulator.seeding import SELF_RETRY_AFTER_S, generate_project_jobs
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
        that retry's schedule: it begins ``SELF_RETRY_AFTER_S`` (times ``time_scale``) after
        the failure."""
        running = job.status in HEALTHY_STATUSES
        floor = draw_floor(self.config.seed, job.id, stays_behind=job.stays_behind)
        backlog = floor if running else PRE_START_BACKLOG_S
        if job.failed_ago_s is not None:
            # Both times are the service's pace, compressed by time_scale like every step.
            scale = self.config.time_scale
            job.changed_at = self.started - job.failed_ago_s * scale
            backlog = floor + job.failed_ago_s
            begins = job.changed_at + SELF_RETRY_AFTER_S * scale
            job.service_retry_at = begins
            job.schedule = [
                (begins, JobStatus.STARTJOBING),
                *retry_schedule(job, begins, self.config, draw="service"),
            ]
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
            job.service_retry_at = None
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
            job.service_retry_at = None  # ours came first: the service's own retry is off
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
    job: Job, now: float, config: EmulatorConfig, *, draw: str | None = None
) -> list[tuple[float, JobStatus]]:
    """After STARTJOBING at ``now``: (WAITING_FOR_START), then the fate's final status.

    ``draw`` names the random stream of the delays (the number of accepted retries by default).
    """
    n = str(job.retries_accepted) if draw is None else draw
    rng = random.Random(f"{config.seed}:{job.id}:{n}")
    first = now + rng.uniform(*STEP_DELAY_S) * config.time_scale
    second = first + rng.uniform(*STEP_DELAY_S) * config.time_scale
    origin = job.status
    fate = job.fate or Fate.RECOVER
    if fate is Fate.STUCK:
        return [(first, JobStatus.WAITING_FOR_START)]
    running = resume_status(job, origin)
    failed = origin if origin in FAILED_STATUSES else _FAILURE_OF[running]
    final = failed if fate is Fate.FAIL_AGAIN else running
    if origin is JobStatus.FULL_TRANSFER_FAILED:
        return [(second, final)]  # a full transfer restarts without waiting for increments
    return [(first, JobStatus.WAITING_FOR_START), (second, final)]
