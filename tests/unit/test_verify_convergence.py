"""Healthy as an operator judges it (issue 15): replication delay, stable runs, lagging, flapping.

Every test runs ``drs.verify_status`` against ``FakeFleet`` on a ``FakeClock`` with a fixed pace
of one poll every 2 s from t=0, so poll n (0-based) happens at t = 2n and each scripted status
or delay is the answer of one poll.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fakes import FakeClock, FakeFleet

from engine.actions import verify_status
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import OutputValue, output_values
from engine.api.progress import ProgressResult
from engine.errors import TransportError
from engine.ledger import Disposition, EventKind, JobBook, JobRecord

RUNNING = "INCRE_TRANSFER_STARTED"
FAILED = "INCRE_TRANSFER_FAILED"


def retried(clock: FakeClock, api: FakeFleet, job_id: str, statuses: list[str]) -> ActionContext:
    ctx = ActionContext(
        api=api,
        jobs=JobBook(clock),
        step_id="verify",
        project_id="p" * 32,
        deadline=clock.now + 30.0,
        sleep=clock.sleep,
    )
    add(ctx, api, job_id, statuses)
    return ctx


def add(ctx: ActionContext, api: FakeFleet, job_id: str, statuses: list[str]) -> JobRecord:
    api.statuses[job_id] = statuses[0]
    api.upcoming[job_id] = list(statuses)
    return ctx.jobs.add(
        JobRecord(
            job_id=job_id,
            name=job_id,
            status_at_selection=FAILED,
            retry_acknowledged_at=0.0,
        )
    )


async def verify(
    ctx: ActionContext, *ids: str, max_delay: float | None = 60.0, stable_for: int = 1
) -> dict[str, OutputValue]:
    params = verify_status.VerifyStatusParams(
        jobs=ids,
        poll_interval_s=2.0,
        max_poll_interval_s=2.0,
        max_delay_s=max_delay,
        stable_for=stable_for,
    )
    return output_values(await verify_status.run(ctx, params))


def kinds(record: JobRecord) -> list[EventKind]:
    return [e.kind for e in record.events if e.kind is not EventKind.STATUS_OBSERVED]


async def test_a_job_recovers_after_stable_for_healthy_polls_timed_from_the_first() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", ["STARTJOBING", RUNNING, RUNNING, RUNNING, RUNNING])
    api.upcoming_delays["a"] = [5.0, 4.0, 3.0]

    out = await verify(ctx, "a", stable_for=3)

    record = ctx.jobs.ensure("a")
    assert out["recovered"] == ["a"]
    assert record.disposition is Disposition.RECOVERED
    assert record.time_to_recover_s == 2.0  # the first of the three healthy polls, at t=2
    assert clock.now == 6.0  # the third, at t=6: not one poll more
    assert (record.delay_s, record.delay_max_s) == (3.0, 5.0)
    assert api.progress_calls == [["a"], ["a"], ["a"]]  # none while it was STARTJOBING


async def test_a_job_healthy_then_behind_then_stable_recovers_timed_from_its_last_run() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING] * 6)
    api.upcoming_delays["a"] = [5.0, 90.0, 5.0, 5.0]

    out = await verify(ctx, "a", stable_for=2)

    record = ctx.jobs.ensure("a")
    assert out["recovered"] == ["a"]
    assert record.time_to_recover_s == 4.0  # the run that held began at the third poll
    assert (
        record.reason
        == "healthy 0.0s after the retry, then unhealthy again (1 flap), before it held"
    )
    assert kinds(record) == [EventKind.FELL_BEHIND, EventKind.CAUGHT_UP, EventKind.RECOVERED]
    assert record.delay_max_s == 90.0


async def test_a_job_that_is_healthy_then_not_three_times_is_flapping_at_once() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING, RUNNING, RUNNING, FAILED, RUNNING, RUNNING] * 2)
    api.upcoming_delays["a"] = [5.0, 90.0, 5.0, 5.0, 120.0]

    out = await verify(ctx, "a", stable_for=3)

    record = ctx.jobs.ensure("a")
    assert out["flapping"] == ["a"]
    assert out["recovered"] == []
    assert record.disposition is Disposition.FLAPPING
    # healthy, behind (1), healthy, failed (2), healthy, behind (3): at t=10, not t=30
    assert clock.now == 10.0
    assert (
        record.reason
        == "healthy 0.0s after the retry, then unhealthy again (3 flaps); last seen 120s behind"
    )
    assert record.time_to_recover_s is None


async def test_a_job_healthy_then_failed_for_the_grace_is_flapping_and_spends_the_budget() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING, FAILED])
    api.upcoming_delays["a"] = [5.0]

    out = await verify(ctx, "a", stable_for=2)

    record = ctx.jobs.ensure("a")
    assert out["flapping"] == ["a"]
    # Watched on while the service might retry it itself, but not to the deadline: down at
    # t=2, flapping once it stayed down for the grace (15 s, half the step's 30 s) at t=18.
    assert clock.now == 18.0
    assert record.reason == (
        "healthy 0.0s after the retry, then unhealthy again (1 flap); "
        "last seen INCRE_TRANSFER_FAILED"
    )
    assert ctx.errors.errors == 1  # as failing again does


async def test_a_job_that_flapped_and_is_not_stable_at_the_deadline_is_flapping() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING])
    api.upcoming_delays["a"] = [5.0, 90.0]

    out = await verify(ctx, "a", stable_for=2)

    record = ctx.jobs.ensure("a")
    assert out["flapping"] == ["a"]
    assert clock.now == 30.0  # behind from the second poll on: watched to the deadline
    assert record.reason == (
        "healthy 0.0s after the retry, then unhealthy again (1 flap); last seen 90s behind"
    )


async def test_a_job_running_but_behind_at_the_deadline_is_lagging_with_its_delay() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", ["STARTJOBING", RUNNING])
    api.upcoming_delays["a"] = [400.0, 300.0, 240.0]

    out = await verify(ctx, "a")

    record = ctx.jobs.ensure("a")
    assert out["lagging"] == ["a"]
    assert out["delay_max_s"] == 240.0
    assert record.disposition is Disposition.LAGGING
    assert record.disposition.needs_a_human
    assert (record.delay_s, record.delay_max_s) == (240.0, 400.0)
    assert record.reason == (
        "running (INCRE_TRANSFER_STARTED), but 240s behind, over max_delay 60s, "
        "when the step's timeout ran out"
    )
    assert kinds(record) == [EventKind.FELL_BEHIND, EventKind.LAGGING]  # one crossing, once


async def test_a_running_job_whose_delay_is_never_given_is_not_healthy() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING])  # FakeFleet leaves "a" out of batch-progress

    out = await verify(ctx, "a")

    record = ctx.jobs.ensure("a")
    assert out["timed_out"] == ["a"]
    assert (
        record.reason == "running (INCRE_TRANSFER_STARTED), but batch-progress never gave its delay"
    )
    assert record.delay_s is None


async def test_full_transfer_is_judged_by_its_status_and_never_asks_for_a_delay() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", ["FULL_TRANSFER_STARTED"])

    out = await verify(ctx, "a")

    assert out["recovered"] == ["a"]
    assert api.progress_calls == []


async def test_without_max_delay_batch_progress_is_never_asked_and_status_suffices() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", ["STARTJOBING", RUNNING])
    api.delays["a"] = 5000.0

    out = await verify(ctx, "a", max_delay=None)

    assert out["recovered"] == ["a"]
    assert api.progress_calls == []
    assert ctx.jobs.ensure("a").delay_s is None


async def test_one_progress_request_per_poll_for_the_running_jobs_only() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING] * 3)
    add(ctx, api, "b", ["STARTJOBING", "STARTJOBING", RUNNING, RUNNING])
    api.delays.update(a=1.0, b=1.0)

    out = await verify(ctx, "a", "b", stable_for=2)

    assert out["recovered"] == ["a", "b"]
    assert api.progress_calls == [["a"], ["a"], ["b"], ["b"]]


async def test_stable_for_out_of_range_fails_the_step() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING])
    with pytest.raises(StepFailedError, match="stable_for must be between 1 and 1000"):
        await verify(ctx, "a", stable_for=0)


class FlakyProgress(FakeFleet):
    """batch-progress fails on the polls named in ``failing`` (0-based), else answers."""

    def __init__(self, failing: set[int]) -> None:
        super().__init__()
        self.failing = failing
        self.calls = 0

    async def batch_progress(self, job_ids: Sequence[str]) -> list[ProgressResult]:
        self.calls += 1
        if self.calls - 1 in self.failing:
            raise TransportError("connection reset by peer")
        return await super().batch_progress(job_ids)


async def test_a_poll_without_a_delay_neither_extends_nor_breaks_a_stable_run() -> None:
    clock, api = FakeClock(), FlakyProgress(failing={1, 2, 3})
    ctx = retried(clock, api, "a", [RUNNING] * 8)
    api.delays["a"] = 5.0

    out = await verify(ctx, "a", stable_for=3)

    record = ctx.jobs.ensure("a")
    # Polls 1-3 had no delay: no flap, and not healthy either; 0, 4, 5 were.
    assert out["recovered"] == ["a"]
    assert record.reason is None
    assert clock.now == 10.0
    assert record.time_to_recover_s == 0.0  # the run began at poll 0 and was never broken


async def test_a_job_behind_whose_last_delay_read_failed_is_still_lagging() -> None:
    clock, api = FakeClock(), FlakyProgress(failing=set(range(5, 100)))
    ctx = retried(clock, api, "a", [RUNNING])
    api.delays["a"] = 300.0

    out = await verify(ctx, "a")

    record = ctx.jobs.ensure("a")
    assert out["lagging"] == ["a"]
    assert record.delay_s == 300.0
    assert "but 300s behind, over max_delay 60s" in (record.reason or "")


async def test_an_ended_job_after_a_healthy_poll_failed_again_at_once() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING, "DELETED"])
    api.delays["a"] = 5.0

    out = await verify(ctx, "a", stable_for=2)

    assert out["failed"] == ["a"]
    assert ctx.jobs.ensure("a").disposition is Disposition.FAILED_AGAIN
    assert clock.now == 2.0


async def test_stable_for_zero_from_a_runbook_is_refused_not_taken_as_one() -> None:
    params = verify_status.VerifyStatusParams.from_with({"jobs": ["a"], "stable_for": 0})
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING])
    with pytest.raises(StepFailedError, match="stable_for must be between 1 and 1000"):
        await verify_status.run(ctx, params)


async def test_a_resumed_verify_keeps_flapping_and_polls_a_lagging_job_again() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "flap", [RUNNING])
    add(ctx, api, "lag", [RUNNING])
    api.delays.update(flap=5.0, lag=5.0)
    # The run before the resume: "flap" got its verdict, "lag" was lagging at the deadline.
    ctx.jobs.conclude("flap", Disposition.FLAPPING, EventKind.FLAPPING, step="verify")
    ctx.jobs.conclude("lag", Disposition.LAGGING, EventKind.LAGGING, step="verify")

    out = await verify(ctx, "flap", "lag")

    assert api.status_calls == [["lag"]]  # a flapping verdict stands; lagging is looked at again
    assert out["flapping"] == ["flap"]
    assert out["recovered"] == ["lag"]  # caught up since


async def test_a_job_behind_then_restarting_at_the_deadline_is_timed_out_not_lagging() -> None:
    clock, api = FakeClock(), FakeFleet()
    ctx = retried(clock, api, "a", [RUNNING, "STARTJOBING"])
    api.delays["a"] = 300.0

    out = await verify(ctx, "a")

    assert out["timed_out"] == ["a"]
    assert ctx.jobs.ensure("a").reason == "still STARTJOBING when the step's timeout ran out"
