"""Actions against a fake DRS API: selection, batching, rejections, reconciliation, verify."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from fakes import FakeClock, ids_of, job

from engine.actions import batch_retry, mutation, select_jobs, verify_status
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import output_values
from engine.api.client import JobDetail
from engine.api.progress import ProgressResult
from engine.api.ratelimit import TokenBucket
from engine.api.types import (
    BatchActionResult,
    BatchOutcome,
    JobActions,
    JobInfo,
    JobListing,
    RetryItem,
    StatusResult,
    wire_epoch,
)
from engine.errors import DrsApiError, TransportError
from engine.ledger import Disposition, EventKind, JobBook, JobEvent, JobRecord


@dataclass
class FakeApi:
    """Scripted DRS API; records every call."""

    listed: dict[str, list[JobInfo]] = field(default_factory=dict)
    retry_answers: list[Callable[[Sequence[RetryItem]], list[BatchActionResult]]] = field(
        default_factory=list
    )
    status_answers: list[dict[str, str]] = field(default_factory=list)
    retry_calls: list[list[str]] = field(default_factory=list)
    status_calls: list[list[str]] = field(default_factory=list)
    list_calls: list[str] = field(default_factory=list)
    list_statuses: list[Collection[str] | None] = field(default_factory=list)
    # When each job last changed (batch-detail's update_time): an hour ago unless set.
    changed_at: dict[str, float] = field(default_factory=dict)
    detail_calls: list[list[str]] = field(default_factory=list)

    clock_skew_s: float | None = 0.0  # the server's clock minus ours (its Date header)
    # Text of update_time where a test sets it (None: absent); else epoch from changed_at.
    update_time_text: dict[str, str | None] = field(default_factory=dict)

    async def batch_detail(self, job_ids: Sequence[str]) -> list[JobDetail]:
        self.detail_calls.append(list(job_ids))
        old = time.time() - 3600
        details = []
        for j in job_ids:
            if j in self.update_time_text:
                text = self.update_time_text[j]
                when = wire_epoch(text)
            else:
                when = self.changed_at.get(j, old + (self.clock_skew_s or 0.0))
                text = str(int(when * 1000))
            details.append(
                JobDetail(
                    id=j,
                    status="",
                    updated_at=when,
                    update_time=text,
                    clock_skew_s=self.clock_skew_s,
                )
            )
        return details

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
        self.list_statuses.append(statuses)
        jobs = self.listed.get(db_use_type, [])
        return JobListing(jobs=jobs, listed=len(jobs), total_record=len(jobs))

    async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
        self.status_calls.append(list(job_ids))
        answer = (
            self.status_answers.pop(0) if len(self.status_answers) > 1 else self.status_answers[0]
        )
        return [StatusResult(id=j, status=answer[j]) for j in job_ids if j in answer]

    async def batch_progress(self, job_ids: Sequence[str]) -> list[ProgressResult]:
        raise AssertionError("these tests never set max_delay")

    async def batch_retry(self, jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        self.retry_calls.append([j.job_id for j in jobs])
        return self.retry_answers.pop(0)(jobs)

    async def batch_pause(
        self, job_ids: Sequence[str], *, pause_mode: str
    ) -> list[BatchActionResult]:
        raise AssertionError("these tests never pause")


def all_succeed(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
    return [BatchActionResult(id=j.job_id, status=BatchOutcome.SUCCESS) for j in jobs]


def make_ctx(
    api: FakeApi, clock: FakeClock, step: str = "s", deadline: float | None = None
) -> ActionContext:
    return ActionContext(
        api=api,
        jobs=JobBook(clock),
        step_id=step,
        project_id="p" * 32,
        deadline=deadline,
        sleep=clock.sleep,
    )


# ----------------------------------------------------------------------------- select


async def test_select_takes_children_of_dual_active_parent_and_skips_the_parent() -> None:
    child_failed = job("c1", "CHILD_TRANSFER_FAILED")
    child_ok = job("c2", "CHILD_TRANSFER_STARTED", actions=JobActions(available_actions=("PAUSE",)))
    parent = job("p1", "CHILD_TRANSFER_FAILED", children=(child_failed, child_ok))
    api = FakeApi(listed={"cloudDataGuard": [parent]})
    ctx = make_ctx(api, FakeClock())

    out = output_values(await select_jobs.run(ctx, select_jobs.SelectJobsParams.from_with({})))

    assert out == {"jobs": ["c1"], "skipped": ["p1"], "count": 1}
    parent_record = ctx.jobs.get("p1")
    assert parent_record is not None
    assert parent_record.disposition is Disposition.SKIPPED
    assert parent_record.reason is not None
    assert "dual-active parent" in parent_record.reason
    child_record = ctx.jobs.get("c1")
    assert child_record is not None
    assert child_record.parent_id == "p1"
    assert ctx.jobs.get("c2") is None  # healthy child does not match the status filter


async def test_select_filters_status_name_glob_engine_and_retry_offer() -> None:
    api = FakeApi(
        listed={
            "migration": [
                job("a", name="orders-1"),
                job("b", name="billing-1"),
                job("c", name="orders-2", engine="postgresql"),
                job("d", "FULL_TRANSFER_STARTED", name="orders-3"),
                job(
                    "e",
                    "CREATE_FAILED",
                    name="orders-4",
                    actions=JobActions(available_actions=("DELETE",)),
                ),
            ]
        }
    )
    ctx = make_ctx(api, FakeClock())
    params = select_jobs.SelectJobsParams.from_with(
        {"db_use_type": "migration", "name": "orders-*", "engine_type": ["mysql"]}
    )

    out = output_values(await select_jobs.run(ctx, params))

    assert out["jobs"] == ["a"]
    assert out["skipped"] == ["e"]
    skipped = ctx.jobs.get("e")
    assert skipped is not None
    assert skipped.reason == "RETRY not in available_actions (offered: DELETE)"
    assert api.list_calls == ["migration"]


async def test_select_lists_every_db_use_type_by_default() -> None:
    api = FakeApi()
    await select_jobs.run(make_ctx(api, FakeClock()), select_jobs.SelectJobsParams.from_with({}))
    assert api.list_calls == ["migration", "sync", "cloudDataGuard"]


async def test_select_asks_the_client_to_filter_by_its_statuses() -> None:
    api = FakeApi()
    params = select_jobs.SelectJobsParams.from_with({"statuses": ["PAUSED"]})
    await select_jobs.run(make_ctx(api, FakeClock()), params)
    assert api.list_statuses == [{"PAUSED"}] * 3


# ----------------------------------------------------------------------------- retry


def seeded(ctx: ActionContext, *ids: str) -> None:
    for job_id in ids:
        ctx.jobs.add(
            JobRecord(job_id=job_id, name=job_id, status_at_selection="INCRE_TRANSFER_FAILED")
        )


async def test_retry_splits_into_batches_and_records_acceptance() -> None:
    ids = [f"j{i}" for i in range(25)]
    api = FakeApi(retry_answers=[all_succeed] * 3)
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, *ids)

    out = output_values(
        await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=tuple(ids), batch_size=10))
    )

    assert [len(c) for c in api.retry_calls] == [10, 10, 5]
    assert out == {"accepted": ids, "rejected": []}
    assert all(r.disposition is Disposition.RETRY_ACCEPTED for r in ctx.jobs)


async def test_retry_per_job_failure_inside_200_is_recorded_with_error_code() -> None:
    def parent_refused(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        return [
            BatchActionResult(id="a", status=BatchOutcome.SUCCESS),
            BatchActionResult(
                id="p",
                status=BatchOutcome.FAILED,
                error_code="DRS.M00307",
                error_msg="Only subtasks can invoke this interface",
            ),
        ]

    api = FakeApi(retry_answers=[parent_refused])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "p")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "p"))))

    assert out == {"accepted": ["a"], "rejected": ["p"]}
    rejected = ctx.jobs.get("p")
    assert rejected is not None
    assert rejected.disposition is Disposition.RETRY_REJECTED
    assert rejected.error_code == "DRS.M00307"
    assert rejected.reason == "DRS.M00307: Only subtasks can invoke this interface"


async def test_retry_whole_request_400_is_split_so_other_jobs_still_retry() -> None:
    def reject_whole(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise DrsApiError(
            http_status=400,
            error_code="DRS.M00307",
            error_msg="Only subtasks can invoke this interface",
            request_id="r1",
            operation="batch-retry-task",
        )

    def reject_single(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        return reject_whole(jobs)

    api = FakeApi(retry_answers=[reject_whole, all_succeed, reject_single, all_succeed])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "p", "b")

    out = output_values(
        await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "p", "b")))
    )

    assert api.retry_calls == [["a", "p", "b"], ["a"], ["p"], ["b"]]
    assert out == {"accepted": ["a", "b"], "rejected": ["p"]}
    rejected = ctx.jobs.get("p")
    assert rejected is not None
    assert rejected.error_code == "DRS.M00307"


async def test_retry_unknown_outcome_is_reconciled_by_status_never_resent_for_moved_jobs() -> None:
    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("connection reset after the request was sent")

    # "a" moved on (the retry took effect); "b" is still failed, so it is sent once more alone.
    api = FakeApi(
        retry_answers=[lost, all_succeed],
        status_answers=[{"a": "STARTJOBING", "b": "INCRE_TRANSFER_FAILED"}],
    )
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "b")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b"))))

    assert api.retry_calls == [["a", "b"], ["b"]]
    assert sorted(ids_of(out["accepted"])) == ["a", "b"]
    a = ctx.jobs.get("a")
    assert a is not None
    assert [e.kind for e in a.events][-1] is EventKind.RETRY_RECONCILED


async def test_retry_second_unknown_outcome_gives_up_without_a_third_send() -> None:
    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("timeout")

    api = FakeApi(retry_answers=[lost, lost], status_answers=[{"b": "INCRE_TRANSFER_FAILED"}])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",))))

    assert len(api.retry_calls) == 2
    assert out == {"accepted": [], "rejected": []}
    record = ctx.jobs.get("b")
    assert record is not None
    assert record.disposition is Disposition.RETRY_UNKNOWN


FAILED = "INCRE_TRANSFER_FAILED"


def lost_after_applying(
    api: FakeApi, when: float | None = None
) -> Callable[[Sequence[RetryItem]], list[BatchActionResult]]:
    """The retry reached the service (which changed the job at ``when``), its answer was lost."""

    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        for item in jobs:
            api.changed_at[item.job_id] = time.time() if when is None else when
        raise TransportError("connection reset after the request was sent")

    return lost


async def test_a_retry_that_arrived_and_failed_again_at_once_is_not_sent_twice() -> None:
    # The status after the grace is failed, exactly as if the retry never arrived; batch-detail's
    # update_time, after the intent, tells them apart (issue 14, item 6).
    api = FakeApi(status_answers=[{"b": "INCRE_TRANSFER_FAILED"}])
    api.retry_answers = [lost_after_applying(api)]
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",))))

    assert api.retry_calls == [["b"]]
    assert api.detail_calls == [["b"]]
    assert ids_of(out["accepted"]) == ["b"]
    record = ctx.jobs.get("b")
    assert record is not None
    assert record.disposition is Disposition.RETRY_ACCEPTED
    assert record.events[-1].kind is EventKind.RETRY_RECONCILED
    assert "is after the retry was sent, so it arrived" in (record.events[-1].detail or "")
    assert "or the service retried it itself" in (record.events[-1].detail or "")


async def test_a_retry_under_way_by_its_current_action_is_not_sent_twice() -> None:
    # The status still shows the failure (it lags), but the listing's job_action says a retry
    # is running: it arrived.
    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("timeout")

    running = JobActions(available_actions=(), current_action="RETRY")
    api = FakeApi(retry_answers=[lost], status_answers=[{"b": "INCRE_TRANSFER_FAILED"}])
    api.listed = {"migration": [JobInfo(id="b", name="b", status=FAILED, job_action=running)]}
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    assert api.retry_calls == [["b"]]
    assert api.list_calls == ["migration"]
    record = ctx.jobs.get("b")
    assert record is not None
    assert record.events[-1].kind is EventKind.RETRY_RECONCILED
    assert "current_action is RETRY" in (record.events[-1].detail or "")


async def test_a_retry_that_never_arrived_is_sent_once_more() -> None:
    def lost_before(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("connection refused")  # the fake's update_time stays an hour ago

    api = FakeApi(retry_answers=[lost_before, all_succeed])
    api.status_answers = [{"b": "INCRE_TRANSFER_FAILED"}]
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",))))

    assert api.retry_calls == [["b"], ["b"]]
    assert ids_of(out["accepted"]) == ["b"]


async def test_the_servers_clock_is_read_through_its_date_header() -> None:
    # The server's clock runs an hour ahead: its update_time for a retry that arrived is an hour
    # "after" ours; one that did not arrive, changed 10 minutes before the send by the server's
    # clock, would read as 50 minutes after it without the skew.
    ahead = 3600.0
    api = FakeApi(status_answers=[{"x": "INCRE_TRANSFER_FAILED"}], retry_answers=[])

    def lost_before(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        api.changed_at["x"] = time.time() + ahead - 600
        raise TransportError("connection refused")

    api.retry_answers = [lost_before, all_succeed]
    api.clock_skew_s = ahead
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "x")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("x",)))

    assert api.retry_calls == [["x"], ["x"]]  # it did not arrive: sent once more


async def test_a_server_clock_behind_ours_does_not_make_an_arrived_retry_look_lost() -> None:
    # The server's clock is an hour behind: its update_time for the retry that arrived reads an
    # hour before our intent, unless its Date header sets the clocks straight.
    behind = -3600.0
    api = FakeApi(status_answers=[{"b": FAILED}])
    api.retry_answers = [lost_after_applying(api, when=time.time() + behind)]
    api.clock_skew_s = behind
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    assert api.retry_calls == [["b"]]


@pytest.mark.parametrize(
    ("skew", "update_time", "said"),
    [
        (None, None, "no Date header to set the server's clock against ours"),
        (0.0, "99999999999999999999", "'99999999999999999999' tells no instant"),
        (0.0, "-5", "'-5' tells no instant"),
    ],
)
async def test_untrustworthy_times_are_no_evidence_and_nothing_is_resent(
    skew: float | None, update_time: str | None, said: str
) -> None:
    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("timeout")

    api = FakeApi(retry_answers=[lost], status_answers=[{"b": FAILED}])
    api.clock_skew_s = skew
    if update_time is not None:
        api.update_time_text = {"b": update_time}
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    assert api.retry_calls == [["b"]]
    record = ctx.jobs.get("b")
    assert record is not None
    assert record.disposition is Disposition.RETRY_UNKNOWN
    assert said in (record.reason or "")


@pytest.mark.parametrize(
    ("update_time", "said"),
    [(None, "no update_time"), ("2026-12-02 10:57:49", "tells no instant (no time zone given)")],
)
async def test_without_a_usable_update_time_the_retry_is_not_resent_and_stays_unknown(
    update_time: str | None, said: str
) -> None:
    def lost(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise TransportError("timeout")

    api = FakeApi(retry_answers=[lost], status_answers=[{"b": "INCRE_TRANSFER_FAILED"}])
    api.update_time_text = {"b": update_time}
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    assert api.retry_calls == [["b"]]
    record = ctx.jobs.get("b")
    assert record is not None
    assert record.disposition is Disposition.RETRY_UNKNOWN
    assert said in (record.reason or "")
    assert "not re-sent" in (record.reason or "")


# ----------------------------------------------------------------------------- verify


async def test_verify_records_recovery_failure_and_timeout_with_time_to_recover() -> None:
    clock = FakeClock()
    api = FakeApi(
        status_answers=[
            {"ok": "STARTJOBING", "bad": "STARTJOBING", "stuck": "WAITING_FOR_START"},
            {
                "ok": "INCRE_TRANSFER_STARTED",
                "bad": "INCRE_TRANSFER_FAILED",
                "stuck": "WAITING_FOR_START",
            },
            {"stuck": "WAITING_FOR_START"},
        ]
    )
    ctx = make_ctx(api, clock, deadline=10.0)
    seeded(ctx, "ok", "bad", "stuck")
    for record in ctx.jobs:
        record.retry_acknowledged_at = 0.0

    out = output_values(
        await verify_status.run(
            ctx, verify_status.VerifyStatusParams(jobs=("ok", "bad", "stuck"), poll_interval_s=2.0)
        )
    )

    assert out == {
        "recovered": ["ok"],
        "failed": ["bad"],
        "timed_out": ["stuck"],
        "lagging": [],
        "flapping": [],
        "recovered_ratio": 0.3333,
        "rto_p50_s": 2.0,
        "rto_p95_s": 2.0,
        "rto_max_s": 2.0,
        "delay_max_s": 0.0,
    }  # no drill_rto_p95_s: this run paused none of the jobs
    ok = ctx.jobs.get("ok")
    assert ok is not None
    assert ok.disposition is Disposition.RECOVERED
    assert ok.time_to_recover_s == 2.0
    stuck = ctx.jobs.get("stuck")
    assert stuck is not None
    assert stuck.reason == "still WAITING_FOR_START when the step's timeout ran out"
    # Only unresolved jobs are polled after the first round.
    assert api.status_calls[-1] == ["stuck"]
    assert clock.now == 10.0


async def test_verify_gives_a_just_retried_job_time_before_calling_it_failed_again() -> None:
    clock = FakeClock()
    api = FakeApi(
        status_answers=[{"j": "INCRE_TRANSFER_FAILED"}] * 3 + [{"j": "INCRE_TRANSFER_STARTED"}]
    )
    ctx = make_ctx(api, clock, deadline=60.0)
    seeded(ctx, "j")
    record = ctx.jobs.get("j")
    assert record is not None
    record.retry_acknowledged_at = 0.0

    fixed_pace = verify_status.VerifyStatusParams(
        jobs=("j",), poll_interval_s=5.0, max_poll_interval_s=5.0
    )
    out = output_values(await verify_status.run(ctx, fixed_pace))

    assert out["recovered"] == ["j"]
    assert record.time_to_recover_s == 15.0


async def test_verify_waits_longer_while_nothing_changes_and_resets_when_something_does() -> None:
    clock = FakeClock()
    starting, failed = "STARTJOBING", "INCRE_TRANSFER_FAILED"
    answers = [{"a": starting, "b": starting}] * 5 + [
        {"a": "INCRE_TRANSFER_STARTED", "b": starting}
    ]
    api = FakeApi(status_answers=[*answers, {"b": starting}, {"b": starting}, {"b": failed}])
    ctx = make_ctx(api, clock, deadline=100.0)
    seeded(ctx, "a", "b")
    for record in ctx.jobs:
        record.retry_acknowledged_at = 0.0
    polled_at: list[float] = []
    status = api.batch_status

    async def timed(job_ids: Sequence[str]) -> list[StatusResult]:
        polled_at.append(clock.now)
        return await status(job_ids)

    api.batch_status = timed  # type: ignore[method-assign]
    out = output_values(
        await verify_status.run(
            ctx, verify_status.VerifyStatusParams(jobs=("a", "b"), poll_interval_s=1.0)
        )
    )

    # 0: both start (a change), wait 1s; unchanged at 1, 3, 7 and 11: waits 2, 4, 4, 4 (the
    # limit, 4 x 1s); "a" recovers at 15 (a change: back to 1s); "b" unchanged at 16 and 18,
    # fails at 22.
    assert polled_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 16.0, 18.0, 22.0]
    assert out["recovered"] == ["a"]
    assert out["failed"] == ["b"]


@pytest.mark.parametrize(
    ("answer_s", "polled_at"),
    [
        (0.5, [0.0, 1.5, 3.0, 4.5]),  # faster than the poll interval: the interval sets the pace
        (3.0, [0.0, 6.0, 12.0, 18.0]),  # slower: poll again only as long after the answer
        (6.0, [0.0, 10.0, 20.0, 30.0]),  # slower than max_poll_interval: capped at it (4s)
    ],
)
async def test_verify_never_polls_faster_than_the_answers_come(
    answer_s: float, polled_at: list[float]
) -> None:
    clock = FakeClock()
    starting = ["STARTJOBING", "WAITING_FOR_START"]  # a change at every poll
    api = FakeApi(status_answers=[{"j": starting[i % 2]} for i in range(4)])
    ctx = make_ctx(api, clock, deadline=100.0)
    seeded(ctx, "j")
    asked: list[float] = []
    status = api.batch_status

    async def slow(job_ids: Sequence[str]) -> list[StatusResult]:
        asked.append(clock.now)
        clock.now += answer_s
        return await status(job_ids)

    api.batch_status = slow  # type: ignore[method-assign]
    params = verify_status.VerifyStatusParams(
        jobs=("j",), poll_interval_s=1.0, max_poll_interval_s=4.0
    )
    await verify_status.run(ctx, params)

    assert asked[:4] == polled_at


async def test_verify_refuses_a_max_poll_interval_below_poll_interval() -> None:
    ctx = make_ctx(FakeApi(), FakeClock(), deadline=10.0)
    seeded(ctx, "j")
    params = verify_status.VerifyStatusParams.from_with(
        {"jobs": ["j"], "poll_interval": "5s", "max_poll_interval": "1s"}
    )
    with pytest.raises(
        StepFailedError, match=r"max_poll_interval must be >= poll_interval, got 1s < 5s"
    ):
        await verify_status.run(ctx, params)


async def test_verify_grace_is_at_most_half_a_short_step_so_failures_are_not_timeouts() -> None:
    clock = FakeClock()
    api = FakeApi(status_answers=[{"j": "INCRE_TRANSFER_FAILED"}] * 10)
    ctx = make_ctx(api, clock, deadline=8.0)  # a short step: 4 s of grace, not 30
    seeded(ctx, "j")
    record = ctx.jobs.get("j")
    assert record is not None
    record.retry_acknowledged_at = 0.0

    fixed_pace = verify_status.VerifyStatusParams(
        jobs=("j",), poll_interval_s=1.0, max_poll_interval_s=1.0
    )
    out = output_values(await verify_status.run(ctx, fixed_pace))

    assert out["failed"] == ["j"]
    assert out["timed_out"] == []
    assert record.disposition is Disposition.FAILED_AGAIN
    assert clock.now == 4.0


async def test_verify_unknown_job_is_not_found() -> None:
    clock = FakeClock()

    class Unknown(FakeApi):
        async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
            return [
                StatusResult(id=j, status="", error_code="DRS.K02000", error_message="no such task")
                for j in job_ids
            ]

    ctx = make_ctx(Unknown(), clock, deadline=5.0)
    out = output_values(await verify_status.run(ctx, verify_status.VerifyStatusParams(jobs=("x",))))
    assert out["failed"] == ["x"]
    record = ctx.jobs.get("x")
    assert record is not None
    assert record.disposition is Disposition.NOT_FOUND


async def test_verify_says_when_batch_status_never_answered_for_a_job() -> None:
    clock = FakeClock()

    class Silent(FakeApi):
        async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
            return []  # the service leaves the job out of every answer

    ctx = make_ctx(Silent(), clock, deadline=5.0)
    seeded(ctx, "x")
    record = ctx.jobs.get("x")
    assert record is not None
    record.last_status = "INCRE_TRANSFER_FAILED"
    await verify_status.run(ctx, verify_status.VerifyStatusParams(jobs=("x",)))
    assert record.disposition is Disposition.TIMED_OUT
    assert record.reason == (
        "batch-status never gave its status during the step; "
        "last seen INCRE_TRANSFER_FAILED before it"
    )


async def test_odd_batch_answers_are_reconciled_and_said_in_the_report() -> None:
    def odd(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        return [
            BatchActionResult(id="a", status=BatchOutcome.SUCCESS),
            BatchActionResult(id="b", status=BatchOutcome.SUCCESS),
            BatchActionResult(id="b", status=BatchOutcome.FAILED, error_msg="no, failed"),
            BatchActionResult.from_wire({"id": "c", "status": "queued"}),
            BatchActionResult(id="stranger", status=BatchOutcome.SUCCESS),
        ]

    api = FakeApi(
        retry_answers=[odd],
        status_answers=[{"b": "STARTJOBING", "c": "WAITING_FOR_START"}],
    )
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "b", "c")

    out = output_values(
        await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b", "c")))
    )

    assert api.retry_calls == [["a", "b", "c"]]  # nothing sent twice
    assert sorted(ids_of(out["accepted"])) == ["a", "b", "c"]
    for job_id, kind in (("a", EventKind.RETRY_ACKNOWLEDGED), ("b", EventKind.RETRY_RECONCILED)):
        record = ctx.jobs.get(job_id)
        assert record is not None
        assert record.events[-1].kind is kind
    assert ctx.jobs.get("stranger") is None
    assert ctx.notices == [
        "batch-retry-task answered for 1 job(s) not in the request (stranger); "
        "those answers were ignored",
        "batch-retry-task answered 1 job(s) more than once (b); "
        "what became of them was learnt from their status",
        "batch-retry-task answered job c with status 'queued', which the API does not define; "
        "what became of it was learnt from its status",
    ]


@pytest.mark.parametrize("bad", [None, "j1", [1, 2], {"a": 1}])
def test_jobs_parameter_must_resolve_to_a_list_of_ids(bad: object) -> None:
    from engine.actions.context import StepFailedError

    with pytest.raises(StepFailedError, match="jobs must be a list of job ids"):
        batch_retry.BatchRetryParams.from_with({"jobs": bad})


async def test_retry_never_resends_a_job_already_answered_in_this_run() -> None:
    def reject(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        return [
            BatchActionResult(id=j.job_id, status=BatchOutcome.FAILED, error_code="DRS.M00304")
            for j in jobs
        ]

    api = FakeApi(retry_answers=[all_succeed, reject, all_succeed])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "b", "c")
    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a",)))
    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    # A second step (or a retried attempt) naming the same jobs sends only the new one.
    out = output_values(
        await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b", "c")))
    )

    assert api.retry_calls == [["a"], ["b"], ["c"]]
    assert out == {"accepted": ["a", "c"], "rejected": ["b"]}


async def test_retry_reconciles_a_job_sent_by_an_attempt_that_was_cut_short() -> None:
    api = FakeApi(retry_answers=[all_succeed], status_answers=[{"a": "STARTJOBING"}])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "b")
    ctx.jobs.record("a", EventKind.RETRY_SENT, step="s")  # no answer recorded

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b"))))

    assert api.status_calls == [["a"]]
    assert api.retry_calls == [["b"]]
    assert sorted(ids_of(out["accepted"])) == ["a", "b"]


async def test_select_output_lists_matches_even_when_an_earlier_step_saw_them() -> None:
    api = FakeApi(listed={"migration": [job("a"), job("b", "PAUSING")]})
    ctx = make_ctx(api, FakeClock())
    params = select_jobs.SelectJobsParams.from_with({"db_use_type": "migration"})
    first = output_values(await select_jobs.run(ctx, params))
    second = output_values(await select_jobs.run(ctx, params))
    assert first == second == {"jobs": ["a", "b"], "skipped": [], "count": 2}
    record = ctx.jobs.get("a")
    assert record is not None
    assert [e.kind for e in record.events] == [EventKind.SELECTED]


def api_error(status: int, code: str) -> DrsApiError:
    return DrsApiError(
        http_status=status, error_code=code, error_msg="no", request_id="r", operation="batch-retry"
    )


def raising(exc: Exception) -> Callable[[Sequence[RetryItem]], list[BatchActionResult]]:
    def answer(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise exc

    return answer


async def test_a_job_is_never_sent_a_third_time_even_through_a_split_batch() -> None:
    api = FakeApi(
        retry_answers=[
            raising(TransportError("reset")),  # [a, b]: unknown -> both still failed -> resend
            raising(api_error(400, "DRS.M00202")),  # [a, b] again: rejected whole -> split
            raising(api_error(500, "DRS.M00004")),  # [a]: unknown again -> no third send
            all_succeed,  # [b]
        ],
        status_answers=[{"a": "INCRE_TRANSFER_FAILED", "b": "INCRE_TRANSFER_FAILED"}],
    )
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a", "b")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b"))))

    assert api.retry_calls == [["a", "b"], ["a", "b"], ["a"], ["b"]]
    assert out == {"accepted": ["b"], "rejected": []}
    a = ctx.jobs.get("a")
    assert a is not None
    assert a.disposition is Disposition.RETRY_UNKNOWN


async def test_reconcile_waits_for_a_lagging_status_instead_of_resending() -> None:
    clock = FakeClock()
    api = FakeApi(
        retry_answers=[raising(TransportError("timeout"))],
        status_answers=[
            {"a": "INCRE_TRANSFER_FAILED"},  # the service has not shown the retry yet
            {"a": "INCRE_TRANSFER_FAILED"},
            {"a": "STARTJOBING"},
        ],
    )
    ctx = make_ctx(api, clock)
    seeded(ctx, "a")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a",))))

    assert api.retry_calls == [["a"]]
    assert out == {"accepted": ["a"], "rejected": []}
    assert clock.now == 2 * mutation.RECONCILE_POLL_S


async def test_throttled_or_busy_batch_is_rejected_whole_not_split() -> None:
    # The client has already backed off and re-sent (engine.api.resilience); the action must not
    # multiply the load by splitting the batch into single-job requests.
    for error in (api_error(429, "APIGW.0308"), api_error(400, "DRS.M01503")):
        api = FakeApi(retry_answers=[raising(error)])
        ctx = make_ctx(api, FakeClock())
        seeded(ctx, "a", "b")

        out = output_values(
            await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a", "b")))
        )

        assert api.retry_calls == [["a", "b"]]
        assert out == {"accepted": [], "rejected": ["a", "b"]}
        a = ctx.jobs.get("a")
        assert a is not None
        assert a.error_code == error.error_code


async def test_verify_keeps_polling_through_a_transient_status_error() -> None:
    clock = FakeClock()

    class Flaky(FakeApi):
        calls = 0

        async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
            self.calls += 1
            if self.calls == 1:
                raise api_error(500, "DRS.M00004")
            return [StatusResult(id=j, status="INCRE_TRANSFER_STARTED") for j in job_ids]

    ctx = make_ctx(Flaky(), clock, deadline=30.0)
    seeded(ctx, "a")

    out = output_values(await verify_status.run(ctx, verify_status.VerifyStatusParams(jobs=("a",))))

    assert out["recovered"] == ["a"]
    # A failed poll saw no change: the next one waits twice as long.
    assert clock.now == 2 * verify_status.DEFAULT_POLL_INTERVAL_S


async def test_a_new_step_attempt_never_makes_a_third_send() -> None:
    # Attempt 1 sent twice (the second send's answer was lost when the step timed out);
    # attempt 2 must only learn from status, never send again.
    api = FakeApi(retry_answers=[], status_answers=[{"a": "INCRE_TRANSFER_FAILED"}])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "a")
    ctx.jobs.record("a", EventKind.RETRY_SENT, step="s")
    ctx.jobs.record("a", EventKind.RETRY_SENT, step="s")

    out = output_values(await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("a",))))

    assert api.retry_calls == []
    assert out == {"accepted": [], "rejected": []}
    record = ctx.jobs.get("a")
    assert record is not None
    assert record.disposition is Disposition.RETRY_UNKNOWN


def test_a_forked_record_equals_its_original_and_changes_apart_from_it() -> None:
    values = {f.name: f"value-{f.name}" for f in dataclasses.fields(JobRecord) if f.type == "str"}
    original = JobRecord(
        **values,
        engine_type="mysql",
        db_use_type="sync",
        parent_id="parent",
        disposition=Disposition.FAILED_AGAIN,
        reason="why",
        error_code="DRS.M00001",
        last_status="INCRE_TRANSFER_FAILED",
        retry_acknowledged_at=1.0,
        paused_at=2.0,
        time_to_recover_s=3.0,
        delay_s=4.0,
        delay_max_s=5.0,
        offered=("RETRY",),
        events=[JobEvent(t=0.5, kind=EventKind.SELECTED, step="select")],
    )
    # Every field is set away from its default, so a field fork() forgets shows up here.
    defaults = JobRecord(job_id="", name="", status_at_selection="")
    assert all(
        getattr(original, f.name) != getattr(defaults, f.name)
        for f in dataclasses.fields(JobRecord)
    )
    twin = original.fork()
    assert twin == original
    twin.events.append(JobEvent(t=1.0, kind=EventKind.WOULD_RETRY, step="retry"))
    twin.disposition = Disposition.RECOVERED
    assert len(original.events) == 1
    assert original.disposition is Disposition.FAILED_AGAIN


def test_a_recorded_event_is_the_frozen_event_its_constructor_makes() -> None:
    # JobBook.record builds events through their slots (the hot path); the result must be the
    # same as JobEvent(...), and stay frozen. A field added to JobEvent but not to the fast
    # path shows up as a difference here.
    clock = FakeClock()
    clock.now = 1.2345
    book = JobBook(clock)
    values = {"status": "FULL_TRANSFER_FAILED", "error_code": "DRS.M1", "detail": "why"}
    assert {f.name for f in dataclasses.fields(JobEvent)} == {"t", "kind", "step", *values}
    record = book.record("a", EventKind.FAILED_AGAIN, step="verify", **values)
    bare = book.record("b", EventKind.SELECTED, step="select")

    assert record.events == [
        JobEvent(t=1.234, kind=EventKind.FAILED_AGAIN, step="verify", **values)
    ]
    assert bare.events == [JobEvent(t=1.234, kind=EventKind.SELECTED, step="select")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.events[0].detail = "changed"  # type: ignore[misc]


async def test_a_422_service_abnormal_on_a_retry_is_an_unknown_outcome_not_a_rejection() -> None:
    # Huawei's pages give DRS.M00004 as a 422: a 4xx, yet the service failing, not refusing.
    def abnormal(jobs: Sequence[RetryItem]) -> list[BatchActionResult]:
        raise DrsApiError(
            http_status=422,
            error_code="DRS.M00004",
            error_msg="Service abnormal",
            request_id="r",
            operation="batch-retry-task",
        )

    api = FakeApi(retry_answers=[abnormal, all_succeed], status_answers=[{"b": FAILED}])
    ctx = make_ctx(api, FakeClock())
    seeded(ctx, "b")

    await batch_retry.run(ctx, batch_retry.BatchRetryParams(jobs=("b",)))

    record = ctx.jobs.get("b")
    assert record is not None
    assert record.disposition is not Disposition.RETRY_REJECTED
    # Reconciled: its update_time (an hour ago) says the first did not arrive, so sent again.
    assert api.retry_calls == [["b"], ["b"]]


class _Gateway:
    """One budget of ``rate`` status queries a second shared by many targets, each query
    answered ``latency_s`` after its token: what a rate-limited route does to the polls."""

    def __init__(self, clock: FakeClock, rate: float, latency_s: float) -> None:
        self.bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
        self.clock = clock
        self.latency_s = latency_s
        self.queued_s: list[float] = []  # how long each query waited for its token
        self.answered_at: list[float] = []

    def api(self) -> FakeApi:
        api = FakeApi(status_answers=[{"j": "STARTJOBING"}])  # never resolves: to the deadline
        status = api.batch_status

        async def queued(job_ids: Sequence[str]) -> list[StatusResult]:
            asked = self.clock.now
            await self.bucket.acquire()
            self.queued_s.append(self.clock.now - asked)
            await self.clock.sleep(self.latency_s)
            self.answered_at.append(self.clock.now)
            return await status(job_ids)

        api.batch_status = queued  # type: ignore[method-assign]
        return api


async def test_verify_polls_of_many_targets_settle_at_the_budget_instead_of_queueing() -> None:
    # 50 targets polling every 2 s want 25 queries/s of a budget of 20: before, every query
    # stood ~0.45 s in line, and the last poll before the deadline answered that late.
    clock = FakeClock()
    gateway = _Gateway(clock, rate=20.0, latency_s=0.05)
    params = verify_status.VerifyStatusParams(
        jobs=("j",), poll_interval_s=2.0, max_poll_interval_s=2.0
    )

    async def one_target(api: FakeApi, number: int) -> None:
        await clock.sleep(number / 20)  # the targets' retries went out at the budget's pace
        ctx = make_ctx(api, clock, deadline=clock.now + 30.0)
        seeded(ctx, "j")
        await verify_status.run(ctx, params)

    async with asyncio.timeout(10):  # real seconds: the clock is virtual
        async with asyncio.TaskGroup() as group:
            for number in range(50):
                group.create_task(one_target(gateway.api(), number))

    settled = gateway.queued_s[len(gateway.queued_s) // 3 :]  # after the first rounds
    # Without the backlog: median 0.45 s, mean 0.48 s in line.
    assert statistics.median(settled) < 0.2
    assert statistics.mean(settled) < 0.3
    # The polls still use the budget: ~20 a second over the 32.5 s, not a fraction of it.
    assert len(gateway.queued_s) >= 0.9 * 20 * 32.5
