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
            job.schedule = _retry_schedule(job, self.clock(), self.config)
            job.retries_accepted += 1
            job.status = JobStatus.STARTJOBING
            job.changed_at = job.started_at = self.clock()
            if job.fate is Fate.FAIL_AGAIN:
                job.fate = Fate.RECOVER  # consumed: the next retry recovers
        return verdict


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
