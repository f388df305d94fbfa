"""Test doubles every tier shares: a virtual clock and a scripted DRS fleet.

``FakeClock`` is the one fake clock of the suite: call it for the time, ``advance`` it by hand,
or ``await sleep(s)`` on it. A sleep waits for the virtual time to reach its wake-up, and the
clock jumps to the next wake-up as soon as nothing else on the event loop is ready to run (as
trio's ``MockClock(autojump_threshold=0)`` does), so concurrent sleepers keep their true order
and a test never waits in real time.

``FakeFleet`` implements ``engine.api.protocol.DrsApi`` over a dict of job statuses: listings,
status queries, retries and pauses, each recorded, with scripted answers where a test needs
them.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from engine.api.client import JobDetail
from engine.api.progress import ProgressResult
from engine.api.types import (
    BatchActionResult,
    BatchOutcome,
    JobActions,
    JobInfo,
    JobListing,
    RetryItem,
    StatusResult,
)

RETRYABLE = JobActions(available_actions=("RETRY", "DELETE"))


class FakeClock:
    """Virtual time: ``clock()`` reads it, ``advance`` moves it, ``sleep`` waits on it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0
        self._watching = False

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), self._order, woken))
        self._order += 1
        if not self._watching:
            self._watching = True
            loop.call_soon(self._jump_when_idle, loop)
        await woken

    def _jump_when_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the earliest sleepers once nothing else is ready to run (a test-only peek at
        asyncio's ready queue: the loop is idle when it holds only this callback)."""
        ready = len(getattr(loop, "_ready", ()))
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)
        if not self._sleepers:
            self._watching = False
            return
        if ready == 0:
            wake = self._sleepers[0][0]
            self.now = max(self.now, wake)
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, woken = heapq.heappop(self._sleepers)
                if not woken.done():
                    woken.set_result(None)
        loop.call_soon(self._jump_when_idle, loop)


async def until(
    condition: Callable[[], bool], clock: FakeClock, *, within_s: float = 3600.0
) -> None:
    """Wait, on the virtual clock, until ``condition()`` holds; fail after ``within_s`` of it.

    Polls in virtual milliseconds (never ``sleep(0)`` in a loop: that would keep the event loop
    busy, and the clock only moves when it is idle)."""
    deadline = clock.now + within_s
    while not condition():
        assert clock.now < deadline, f"not reached within {within_s:g}s of virtual time"
        await clock.sleep(0.001)


def job(
    job_id: str,
    status: str = "INCRE_TRANSFER_FAILED",
    *,
    name: str | None = None,
    actions: JobActions = RETRYABLE,
    engine: str = "mysql",
    db_use_type: str = "migration",
    children: tuple[JobInfo, ...] = (),
) -> JobInfo:
    """A listed job as the API would describe it."""
    return JobInfo(
        id=job_id,
        name=name or f"job-{job_id}",
        status=status,
        engine_type=engine,
        db_use_type=db_use_type,
        job_action=actions,
        children=children,
    )


Answer = Callable[["FakeFleet", list[str]], list[BatchActionResult]]


def all_succeed(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
    return [BatchActionResult(id=j, status=BatchOutcome.SUCCESS) for j in ids]


@dataclass
class FakeFleet:
    """A scripted DRS API over a dict of job statuses; records every call.

    ``listed`` is what ``list_jobs`` returns per db_use_type. A retried job shows
    ``STARTJOBING``, then whatever ``after_retry`` says for it (default: running again), one
    status per query. ``retry_answers`` / ``pause_answers`` script the answers in turn
    (default: every job acknowledged). ``upcoming`` are statuses a job shows next, in turn.
    ``batch_detail`` says when each job last changed (``changed_at``, epoch seconds): an hour
    ago, until a retry or pause the fake applied. ``batch_progress`` gives each job's
    ``delays`` entry, or the next of its ``upcoming_delays``.
    """

    statuses: dict[str, str] = field(default_factory=dict)
    listed: dict[str, list[JobInfo]] = field(default_factory=dict)
    retry_answers: list[Answer] = field(default_factory=list)
    pause_answers: list[Answer] = field(default_factory=list)
    after_retry: dict[str, list[str]] = field(default_factory=dict)
    upcoming: dict[str, list[str]] = field(default_factory=dict)
    list_calls: list[str] = field(default_factory=list)
    list_filters: list[dict[str, object]] = field(default_factory=list)
    status_calls: list[list[str]] = field(default_factory=list)
    retry_calls: list[list[str]] = field(default_factory=list)
    pause_calls: list[list[str]] = field(default_factory=list)
    pause_modes: list[str] = field(default_factory=list)
    changed_at: dict[str, float] = field(default_factory=dict)
    detail_calls: list[list[str]] = field(default_factory=list)
    delays: dict[str, float | None] = field(default_factory=dict)
    upcoming_delays: dict[str, list[float | None]] = field(default_factory=dict)
    progress_calls: list[list[str]] = field(default_factory=list)

    def listing(self, *jobs: JobInfo) -> FakeFleet:
        """List these jobs (under their db_use_type) and know their statuses."""
        for listed in jobs:
            self.listed.setdefault(listed.db_use_type or "migration", []).append(listed)
            for one in (listed, *listed.children):
                self.statuses[one.id] = one.status
        return self

    @property
    def mutating_calls(self) -> int:
        return len(self.retry_calls) + len(self.pause_calls)

    async def list_jobs(
        self,
        *,
        db_use_type: str,
        engine_type: str | None = None,
        status: str | None = None,
        name: str | None = None,
        net_type: str | None = None,
        statuses: Collection[str] | None = None,
        tags: Mapping[str, str] | None = None,
        enterprise_project_id: str | None = None,
        instance_ids: Sequence[str] | None = None,
    ) -> JobListing:
        self.list_calls.append(db_use_type)
        self.list_filters.append(
            {
                "engine_type": engine_type,
                "tags": dict(tags) if tags else None,
                "enterprise_project_id": enterprise_project_id,
                "instance_ids": list(instance_ids) if instance_ids is not None else None,
            }
        )
        jobs = [
            j
            for j in self.listed.get(db_use_type, [])
            if engine_type is None or j.engine_type == engine_type
        ]
        engines = frozenset(j.engine_type for j in jobs if j.engine_type)
        return JobListing(jobs=jobs, listed=len(jobs), total_record=len(jobs), engine_types=engines)

    async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
        self.status_calls.append(list(job_ids))
        for job_id in job_ids:
            if self.upcoming.get(job_id):
                self.statuses[job_id] = self.upcoming[job_id].pop(0)
        return [StatusResult(id=j, status=self.statuses[j]) for j in job_ids if j in self.statuses]

    async def batch_progress(self, job_ids: Sequence[str]) -> list[ProgressResult]:
        """Each job's delay: the next of ``upcoming_delays``, else its ``delays`` entry (a job
        in neither is left out of the answer, as an id the service does not know)."""
        self.progress_calls.append(list(job_ids))
        for job_id in job_ids:
            if self.upcoming_delays.get(job_id):
                self.delays[job_id] = self.upcoming_delays[job_id].pop(0)
        return [
            ProgressResult(job_id=j, delay_s=self.delays[j]) for j in job_ids if j in self.delays
        ]

    async def batch_detail(self, job_ids: Sequence[str]) -> list[JobDetail]:
        self.detail_calls.append(list(job_ids))
        an_hour_ago = time.time() - 3600
        return [
            JobDetail(
                id=j,
                status=self.statuses.get(j, ""),
                updated_at=self.changed_at.get(j, an_hour_ago),
                clock_skew_s=0.0,
            )
            for j in job_ids
        ]

    async def batch_retry(self, jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        ids = [j.job_id for j in jobs]
        self.retry_calls.append(ids)
        answer = self.retry_answers.pop(0) if self.retry_answers else all_succeed
        results = answer(self, ids)
        for result in results:
            if result.status is BatchOutcome.SUCCESS:
                self.changed_at[result.id] = time.time()
                self.statuses[result.id] = "STARTJOBING"
                then = self.after_retry.get(result.id, ["INCRE_TRANSFER_STARTED"])
                self.upcoming[result.id] = ["STARTJOBING", *then]
        return results

    async def batch_pause(
        self, job_ids: Sequence[str], *, pause_mode: str
    ) -> list[BatchActionResult]:
        self.pause_calls.append(list(job_ids))
        self.pause_modes.append(pause_mode)
        answer = self.pause_answers.pop(0) if self.pause_answers else all_paused
        return answer(self, list(job_ids))


def all_paused(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
    for job_id in ids:
        fleet.statuses[job_id] = "PAUSING"
        fleet.changed_at[job_id] = time.time()
    return [BatchActionResult(id=j, status=BatchOutcome.SUCCESS) for j in ids]


def ids_of(output: object) -> list[str]:
    """A step output that is a list of job ids (outputs are typed loosely for expressions)."""
    assert isinstance(output, list)
    assert all(isinstance(item, str) for item in output)
    return output
