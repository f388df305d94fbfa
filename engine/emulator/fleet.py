"""The emulator's fleet: every project's jobs, and the clock-driven retry and pause machine.

The state machine is lazy, not a simulation loop: an accepted retry gives the job a schedule of
``(at, status)`` transitions, and due transitions are applied whenever the job is read. There are
no background tasks, so a test drives a fake clock and reads again instead of sleeping. An
accepted pause (``batch-pause-task``) moves a running job straight to ``PAUSING``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from engine.emulator.seeding import generate_project_jobs
from engine.emulator.state import (
    STEP_DELAY_S,
    TASK_FULL_ONLY,
    ActionVerdict,
    Clock,
    EmulatorConfig,
    Fate,
    Job,
    RetryVerdict,
    available_actions,
    walk,
)
from engine.emulator.wire import ACTION_PAUSE, ACTION_RETRY, FAILED_STATUSES, JobStatus


class Fleet:
    """Every project's jobs, generated from a config, with the retry state machine."""

    def __init__(self, config: EmulatorConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.started = clock()  # jobs changed before this, each at an age drawn from its id
        self.projects = {p.project_id: p for p in config.projects}
        self._jobs = {p.project_id: generate_project_jobs(config, p) for p in config.projects}
        self._index = {
            (job.project_id, job.id): job for jobs in self._jobs.values() for job in walk(jobs)
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
            job.paused_from = job.status
            job.status = JobStatus.PAUSING
            job.changed_at = self.clock()
            if job.fate is None:
                job.fate = Fate.RECOVER
        return verdict

    def retry(self, project_id: str, job_id: str) -> RetryVerdict:
        """Retry a failed job or resume a paused one; starts its transition schedule if accepted."""
        verdict = self.retry_verdict(project_id, job_id)
        if verdict is RetryVerdict.ACCEPTED:
            job = self._index[(project_id, job_id)]
            job.schedule = retry_schedule(job, self.clock(), self.config)
            job.paused_from = None
            job.retries_accepted += 1
            job.status = JobStatus.STARTJOBING
            job.changed_at = job.started_at = self.clock()
            if job.fate is Fate.FAIL_AGAIN:
                job.fate = Fate.RECOVER  # consumed: the next retry recovers
        return verdict


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


_FAILURE_OF = {
    JobStatus.FULL_TRANSFER_STARTED: JobStatus.FULL_TRANSFER_FAILED,
    JobStatus.FULL_TRANSFER_COMPLETE: JobStatus.FULL_TRANSFER_FAILED,
    JobStatus.CHILD_TRANSFER_STARTED: JobStatus.CHILD_TRANSFER_FAILED,
    JobStatus.INCRE_TRANSFER_STARTED: JobStatus.INCRE_TRANSFER_FAILED,
}


def retry_schedule(
    job: Job, now: float, config: EmulatorConfig, *, draw: int | None = None
) -> list[tuple[float, JobStatus]]:
    """STARTJOBING now, then (WAITING_FOR_START), then the fate's final status.

    ``draw`` names the random stream of the delays (the number of accepted retries by default).
    """
    n = job.retries_accepted if draw is None else draw
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
