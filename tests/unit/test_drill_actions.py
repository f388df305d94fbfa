"""Drill actions against a fake DRS API: pause (batching, splitting, reconciling), sleep,
assert, and the RTO figures of verify."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeFleet, all_paused, ids_of

from engine.actions import batch_retry, pause_jobs, verify_status
from engine.actions.assertion import AssertParams
from engine.actions.assertion import run as run_assert
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.registry import REGISTRY
from engine.actions.sleep import SleepParams
from engine.actions.sleep import run as run_sleep
from engine.actions.spec import output_values
from engine.api.types import BatchActionResult, BatchOutcome
from engine.errors import DrsApiError, TransportError
from engine.ledger import Disposition, EventKind, JobBook, JobRecord


def http_error(status: int, code: str = "DRS.M00307") -> DrsApiError:
    return DrsApiError(
        http_status=status,
        error_code=code,
        error_msg="Only subtasks can invoke this interface",
        request_id="r1",
        operation="batch-pause-task",
    )


def make_ctx(
    api: FakeFleet,
    clock: FakeClock,
    step: str = "pause",
    *,
    deadline: float | None = None,
    max_jobs: int | None = None,
) -> ActionContext:
    return ActionContext(
        api=api,
        jobs=JobBook(clock),
        step_id=step,
        project_id="p" * 32,
        deadline=deadline,
        max_jobs=max_jobs,
        sleep=clock.sleep,
    )


def running(ctx: ActionContext, api: FakeFleet, *ids: str) -> None:
    for job_id in ids:
        api.statuses[job_id] = "INCRE_TRANSFER_STARTED"
        ctx.jobs.add(
            JobRecord(job_id=job_id, name=job_id, status_at_selection="INCRE_TRANSFER_STARTED")
        )


def record_of(ctx: ActionContext, job_id: str) -> JobRecord:
    record = ctx.jobs.get(job_id)
    assert record is not None
    return record


def kinds(ctx: ActionContext, job_id: str) -> list[EventKind]:
    return [e.kind for e in record_of(ctx, job_id).events]


# ----------------------------------------------------------------------------- pause


async def test_pause_sends_batches_with_the_mode_and_records_each_acknowledgement() -> None:
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock)
    ids = [f"j{i}" for i in range(12)]
    running(ctx, api, *ids)
    clock.now = 4.0

    params = pause_jobs.PauseJobsParams.from_with(
        {"jobs": ids, "batch_size": 5, "pause_mode": "target"}
    )
    out = output_values(await pause_jobs.run(ctx, params))

    assert api.pause_calls == [ids[:5], ids[5:10], ids[10:]]
    assert api.pause_modes == ["target"] * 3
    assert out == {"paused": ids, "rejected": []}
    first = record_of(ctx, "j0")
    assert first.disposition is Disposition.PAUSED
    assert first.paused_at == 4.0  # the first poll after the acknowledgements saw it paused
    assert kinds(ctx, "j0") == [
        EventKind.PAUSE_SENT,
        EventKind.PAUSE_ACKNOWLEDGED,
        EventKind.STATUS_OBSERVED,  # PAUSING: the pause took effect
    ]


async def test_pause_sample_takes_the_first_n_jobs_in_order() -> None:
    api = FakeFleet()
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b", "c", "d")

    params = pause_jobs.PauseJobsParams.from_with(
        {"pause_mode": "target", "jobs": ["c", "a", "d", "b"], "sample": 2}
    )
    out = output_values(await pause_jobs.run(ctx, params))

    assert api.pause_calls == [["c", "a"]]
    assert out == {"paused": ["c", "a"], "rejected": []}
    assert record_of(ctx, "d").events == []


async def test_pause_whole_request_400_is_split_and_the_parent_is_rejected_with_its_code() -> None:
    def refuse_batch(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        raise http_error(400)

    api = FakeFleet(pause_answers=[refuse_batch, all_paused, refuse_batch, all_paused])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "parent", "b")

    params = pause_jobs.PauseJobsParams.from_with(
        {"pause_mode": "target", "jobs": ["a", "parent", "b"]}
    )
    out = output_values(await pause_jobs.run(ctx, params))

    assert api.pause_calls == [["a", "parent", "b"], ["a"], ["parent"], ["b"]]
    assert out == {"paused": ["a", "b"], "rejected": ["parent"]}
    parent = record_of(ctx, "parent")
    assert parent.disposition is Disposition.PAUSE_REJECTED
    assert parent.error_code == "DRS.M00307"
    assert parent.reason == "pause refused: DRS.M00307: Only subtasks can invoke this interface"


async def test_pause_refused_inside_a_200_is_rejected_without_a_second_request() -> None:
    def parent_refused(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        fleet.statuses["a"] = "PAUSING"
        return [
            BatchActionResult(id="a", status=BatchOutcome.SUCCESS),
            BatchActionResult(
                id="p", status=BatchOutcome.FAILED, error_code="DRS.M00307", error_msg="parent"
            ),
        ]

    api = FakeFleet(pause_answers=[parent_refused])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "p")

    out = output_values(
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams.from_with({"pause_mode": "target", "jobs": ["a", "p"]})
        )
    )

    assert len(api.pause_calls) == 1
    assert out == {"paused": ["a"], "rejected": ["p"]}


async def test_pause_throttled_batch_is_rejected_whole_not_split() -> None:
    def throttled(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        raise http_error(429, "APIGW.0308")

    api = FakeFleet(pause_answers=[throttled])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b")

    out = output_values(
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams.from_with({"pause_mode": "target", "jobs": ["a", "b"]})
        )
    )

    assert api.pause_calls == [["a", "b"]]
    assert out == {"paused": [], "rejected": ["a", "b"]}


@pytest.mark.parametrize(
    "failure",
    [TransportError("connection reset after the request was sent"), http_error(503, "DRS.M00004")],
    ids=["transport", "5xx"],
)
async def test_pause_unknown_outcome_is_reconciled_by_status_and_never_resent(
    failure: Exception,
) -> None:
    def lost(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        fleet.statuses["a"] = "PAUSING"  # "a" was applied, "b" was not
        raise failure

    clock = FakeClock()
    api = FakeFleet(pause_answers=[lost])
    ctx = make_ctx(api, clock)
    running(ctx, api, "a", "b")

    params = pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a", "b"), reconcile_grace_s=6.0)
    out = output_values(await pause_jobs.run(ctx, params))

    assert api.pause_calls == [["a", "b"]]
    assert out == {"paused": ["a"], "rejected": []}
    assert kinds(ctx, "a")[-1] is EventKind.PAUSE_RECONCILED
    assert record_of(ctx, "a").disposition is Disposition.PAUSED
    assert record_of(ctx, "a").paused_at == 0.0  # from the send: the outage is not flattered
    b = record_of(ctx, "b")
    assert b.disposition is Disposition.PAUSE_UNKNOWN
    assert b.reason is not None
    assert b.reason.startswith("pause outcome unknown (not re-sent)")
    assert clock.now == 6.0  # watched for the grace period, then given up


async def test_pause_reconcile_waits_for_a_lagging_status() -> None:
    def lost(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        fleet.upcoming["a"] = ["INCRE_TRANSFER_STARTED", "PAUSING"]
        raise TransportError("timeout")

    api = FakeFleet(pause_answers=[lost])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a")

    out = output_values(
        await pause_jobs.run(ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a",)))
    )

    assert out == {"paused": ["a"], "rejected": []}
    assert len(api.status_calls) == 2
    assert len(api.pause_calls) == 1


async def test_pause_missing_result_is_reconciled_not_resent() -> None:
    def half(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        all_paused(fleet, ids)
        return [BatchActionResult(id="a", status=BatchOutcome.SUCCESS)]

    api = FakeFleet(pause_answers=[half])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b")

    out = output_values(
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams.from_with({"pause_mode": "target", "jobs": ["a", "b"]})
        )
    )

    assert out == {"paused": ["a", "b"], "rejected": []}
    assert api.pause_calls == [["a", "b"]]
    assert api.status_calls == [["b"], ["a"]]  # b reconciled; a's acknowledged pause confirmed


async def test_a_job_is_never_paused_twice_in_one_run() -> None:
    def refuse(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        return [
            BatchActionResult(id=j, status=BatchOutcome.FAILED, error_code="DRS.M00304")
            for j in ids
        ]

    api = FakeFleet(pause_answers=[all_paused, refuse, all_paused])
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b", "c")
    await pause_jobs.run(ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a",)))
    await pause_jobs.run(ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("b",)))

    # A later step, or a retried attempt, naming the same jobs sends only the new one.
    out = output_values(
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a", "b", "c"))
        )
    )

    assert api.pause_calls == [["a"], ["b"], ["c"]]
    assert out == {"paused": ["a", "c"], "rejected": ["b"]}


async def test_pause_sent_by_an_attempt_cut_short_is_reconciled_not_resent() -> None:
    api = FakeFleet()
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b")
    api.statuses["a"] = "PAUSING"
    ctx.jobs.record("a", EventKind.PAUSE_SENT, step="pause")  # no answer recorded

    out = output_values(
        await pause_jobs.run(ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a", "b")))
    )

    assert api.pause_calls == [["b"]]
    assert sorted(ids_of(out["paused"])) == ["a", "b"]


async def test_after_failure_reconciles_unanswered_pauses_and_sends_nothing() -> None:
    api = FakeFleet()
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b")
    api.statuses["a"] = "PAUSING"
    for job_id in ("a", "b"):
        ctx.jobs.record(job_id, EventKind.PAUSE_SENT, step="pause")

    await pause_jobs.reconcile_unanswered(ctx)

    assert api.pause_calls == []
    assert record_of(ctx, "a").disposition is Disposition.PAUSED
    # Not given up on: its send stays unanswered, for a resumed run to reconcile (a finished
    # run reports it pause_unknown).
    assert record_of(ctx, "b").events[-1].kind is EventKind.PAUSE_SENT


async def test_pause_preview_records_would_pause_and_sends_nothing() -> None:
    api = FakeFleet()
    ctx = make_ctx(api, FakeClock())
    running(ctx, api, "a", "b", "c")

    params = pause_jobs.PauseJobsParams.from_with(
        {"jobs": ["a", "b", "c"], "sample": 2, "batch_size": 1, "pause_mode": "target"}
    )
    out = output_values(pause_jobs.preview(ctx, params))

    assert out == {"paused": ["a", "b"], "rejected": []}
    assert api.pause_calls == []
    assert api.status_calls == []
    assert [(e.kind, e.detail) for e in record_of(ctx, "b").events] == [
        (EventKind.WOULD_PAUSE, "batch 2")
    ]
    assert record_of(ctx, "c").events == []


async def test_pause_over_max_jobs_sends_nothing() -> None:
    api = FakeFleet()
    ctx = make_ctx(api, FakeClock(), max_jobs=2)
    running(ctx, api, "a", "b", "c")

    with pytest.raises(StepFailedError, match="would pause 3 jobs, more than max_jobs 2"):
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a", "b", "c"))
        )
    # A sample within the cap is fine.
    out = output_values(
        await pause_jobs.run(
            ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a", "b", "c"), sample=2)
        )
    )
    assert out["paused"] == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"jobs": ["a"], "batch_size": 0}, "batch_size must be between 1 and 100, got 0"),
        ({"jobs": ["a"], "sample": 0, "pause_mode": "all"}, "sample must be >= 1, got 0"),
        ({"jobs": ["a"]}, "pause_mode must be target or all, got ''"),
        ({"jobs": ["a"], "pause_mode": "replay"}, "pause_mode must be target or all"),
        ({"jobs": "a"}, "jobs must be a list of job ids"),
    ],
)
async def test_pause_parameters_are_checked_at_run_time(
    raw: dict[str, object], message: str
) -> None:
    api = FakeFleet()
    with pytest.raises(StepFailedError, match=message):
        await pause_jobs.run(make_ctx(api, FakeClock()), pause_jobs.PauseJobsParams.from_with(raw))
    assert api.pause_calls == []


async def test_paused_job_is_resumed_by_batch_retry_and_recovers_from_the_resume() -> None:
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock)
    running(ctx, api, "a")
    clock.now = 1.0
    await pause_jobs.run(ctx, pause_jobs.PauseJobsParams(pause_mode="target", jobs=("a",)))
    clock.now = 11.0

    # The pause events do not count as an earlier retry: the resume is sent.
    resume = make_ctx(api, clock, "resume")
    resume.jobs = ctx.jobs
    out = output_values(await batch_retry.run(resume, batch_retry.BatchRetryParams(jobs=("a",))))
    assert out == {"accepted": ["a"], "rejected": []}
    assert api.retry_calls == [["a"]]

    verify = make_ctx(api, clock, "verify", deadline=60.0)
    verify.jobs = ctx.jobs
    result = await verify_status.run(
        verify, verify_status.VerifyStatusParams(jobs=("a",), poll_interval_s=2.0)
    )

    record = record_of(ctx, "a")
    assert record.disposition is Disposition.RECOVERED
    assert record.time_to_recover_s == 2.0  # from the resume's acknowledgement
    assert result.rto_p95_s == 2.0
    assert result.drill_rto_p95_s == 12.0  # from the pause: 1.0 -> 13.0


# ----------------------------------------------------------------------------- verify RTO


async def test_verify_rto_percentiles_over_this_steps_recovered_jobs() -> None:
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock, "verify", deadline=100.0)
    ids = [f"j{i}" for i in range(1, 11)]
    running(ctx, api, *ids)
    api.statuses["healthy"] = "INCRE_TRANSFER_STARTED"
    for index, job_id in enumerate(ids, start=1):
        record = record_of(ctx, job_id)
        record.retry_acknowledged_at = 0.0
        # j1..j10 recover at 1s..10s; only j1..j5 were paused by this run, at -4.0.
        api.statuses[job_id] = "STARTJOBING"
        api.upcoming[job_id] = ["STARTJOBING"] * index + ["INCRE_TRANSFER_STARTED"]
        if index <= 5:
            record.paused_at = -4.0

    out = output_values(
        await verify_status.run(
            ctx,
            verify_status.VerifyStatusParams(jobs=(*ids, "healthy"), poll_interval_s=1.0),
        )
    )

    assert out["recovered_ratio"] == 1.0
    # Nearest rank over 1..10 (the never-retried "healthy" job has no time to recover).
    assert (out["rto_p50_s"], out["rto_p95_s"], out["rto_max_s"]) == (5.0, 10.0, 10.0)
    # Paused jobs j1..j5 recovered 5s..9s after their pause at -4.0.
    assert out["drill_rto_p95_s"] == 9.0


async def test_verify_rto_outputs_are_zero_without_recovered_jobs() -> None:
    api = FakeFleet(statuses={"a": "INCRE_TRANSFER_STARTED"})
    ctx = make_ctx(api, FakeClock(), "verify", deadline=10.0)

    out = output_values(await verify_status.run(ctx, verify_status.VerifyStatusParams(jobs=("a",))))

    assert out["recovered"] == ["a"]
    assert (out["rto_p50_s"], out["rto_p95_s"], out["rto_max_s"]) == (0.0, 0.0, 0.0)
    # This run paused none of its jobs: no drill's verify, so no drill output at all.
    assert "drill_rto_p95_s" not in out


async def test_a_drills_verify_gives_no_drill_rto_when_nothing_it_paused_recovered() -> None:
    # A 0.0 here would let `assert drill_rto_p95_s <= budget` hold over a drill that never
    # recovered: no value, so the assert fails instead.
    api = FakeFleet(statuses={"a": "PAUSING"})
    ctx = make_ctx(api, FakeClock(), "verify", deadline=10.0)
    ctx.jobs.ensure("a").paused_at = 0.0  # paused by this run's drs.pause_jobs

    out = output_values(await verify_status.run(ctx, verify_status.VerifyStatusParams(jobs=("a",))))

    assert out["recovered"] == []
    assert "drill_rto_p95_s" not in out


@pytest.mark.parametrize(("paused", "expected"), [(20, 19.0), (10, None)])
async def test_a_paused_job_that_did_not_recover_counts_as_an_endless_outage(
    paused: int, expected: float | None
) -> None:
    # One paused job stays paused. Of 20, it is beyond the 95th percentile (rank 19: the
    # 19th recovery); of 10 it is the 95th percentile (rank 10), which then has no value
    # rather than the 9 survivors' figure.
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock, "verify", deadline=100.0)
    ids = [f"j{i}" for i in range(1, paused + 1)]
    running(ctx, api, *ids)
    for index, job_id in enumerate(ids, start=1):
        record = record_of(ctx, job_id)
        record.retry_acknowledged_at = 0.0
        record.paused_at = 0.0
        api.statuses[job_id] = "STARTJOBING"
        api.upcoming[job_id] = ["STARTJOBING"] * index + ["INCRE_TRANSFER_STARTED"]
    api.statuses[ids[-1]] = "PAUSING"
    api.upcoming[ids[-1]] = []

    out = output_values(
        await verify_status.run(
            ctx, verify_status.VerifyStatusParams(jobs=tuple(ids), poll_interval_s=1.0)
        )
    )

    assert out["recovered"] == ids[:-1]
    assert out.get("drill_rto_p95_s") == expected


def test_percentile_is_nearest_rank() -> None:
    assert verify_status.percentile([], 95) == 0.0
    assert verify_status.percentile([3.0], 50) == 3.0
    assert verify_status.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert verify_status.percentile([float(i) for i in range(1, 21)], 95) == 19.0


# ----------------------------------------------------------------------------- sleep, assert


async def test_sleep_waits_on_the_context_clock_and_reports_it() -> None:
    clock = FakeClock()
    ctx = make_ctx(FakeFleet(), clock, "outage")

    out = output_values(await run_sleep(ctx, SleepParams.from_with({"duration": "1.5m"})))

    assert out == {"slept_s": 90.0}
    assert clock.now == 90.0


@pytest.mark.parametrize("bad", ["two seconds", -1, True])
def test_sleep_duration_that_is_not_a_duration_fails_the_step(bad: object) -> None:
    with pytest.raises(StepFailedError, match="duration: expected"):
        SleepParams.from_with({"duration": bad})


async def test_assert_passes_on_true() -> None:
    ctx = make_ctx(FakeFleet(), FakeClock(), "check")
    passed = await run_assert(ctx, AssertParams.from_with({"that": True}))
    assert output_values(passed) == {"passed": True}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"that": False, "message": "fewer than 99% recovered"}, "^fewer than 99% recovered$"),
        ({"that": False}, "^assertion failed$"),
        ({"that": None}, r"^assertion failed \(got None, not a boolean\)$"),
        ({"that": 1}, r"^assertion failed \(got 1, not a boolean\)$"),
    ],
)
async def test_assert_fails_the_step_unless_exactly_true(
    raw: dict[str, object], message: str
) -> None:
    ctx = make_ctx(FakeFleet(), FakeClock(), "check")
    with pytest.raises(StepFailedError, match=message) as failed:
        await run_assert(ctx, AssertParams.from_with(raw))
    # It was evaluated and did not hold: the step's outputs say so (JUnit: a failure).
    assert failed.value.outputs == {"passed": False}


def test_assert_without_that_fails_with_no_outputs() -> None:
    with pytest.raises(StepFailedError, match=r"^that is required$") as failed:
        AssertParams.from_with({"message": "m"})
    assert failed.value.outputs is None


def test_drill_actions_are_registered_with_their_plan_behaviour() -> None:
    pause, sleep, check = REGISTRY["drs.pause_jobs"], REGISTRY["sleep"], REGISTRY["assert"]
    assert pause.mutating
    assert pause.preview is not None
    assert pause.after_failure is pause_jobs.reconcile_unanswered
    assert not sleep.mutating
    assert not sleep.runs_in_plan
    assert not check.mutating
    assert not check.runs_in_plan
    assert REGISTRY["drs.verify_status"].output_types()["drill_rto_p95_s"] == "number"


async def test_an_acknowledged_pause_is_confirmed_by_status_and_timed_from_it() -> None:
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock)
    running(ctx, api, "slow", "never")

    def acknowledged_only(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        fleet.upcoming["slow"] = ["INCRE_TRANSFER_STARTED"] * 3 + ["PAUSING"]
        return [BatchActionResult(id=j, status=BatchOutcome.SUCCESS) for j in ids]

    api.pause_answers = [acknowledged_only]
    params = pause_jobs.PauseJobsParams.from_with(
        {"jobs": ["slow", "never"], "pause_mode": "all", "confirm_within": "20s"}
    )
    out = output_values(await pause_jobs.run(ctx, params))

    assert out == {"paused": ["slow", "never"], "rejected": []}
    slow, never = record_of(ctx, "slow"), record_of(ctx, "never")
    assert slow.last_status == "PAUSING"
    assert slow.paused_at is not None
    assert slow.paused_at == 3.0  # the fourth poll (one a second), not the acknowledgement
    assert never.disposition is Disposition.PAUSED
    assert never.reason == (
        "pause acknowledged, but still INCRE_TRANSFER_STARTED after 20s; "
        "a resume may be refused until it takes effect"
    )
    assert clock.now >= 20.0
    assert ctx.notices == ["1 acknowledged pause(s) had not taken effect after 20s (never)"]


async def test_the_confirmation_wait_ends_by_the_steps_deadline_with_the_pauses_output() -> None:
    clock = FakeClock()
    api = FakeFleet()
    ctx = make_ctx(api, clock, deadline=5.0)
    running(ctx, api, "a")

    def acknowledged_only(fleet: FakeFleet, ids: list[str]) -> list[BatchActionResult]:
        return [BatchActionResult(id=j, status=BatchOutcome.SUCCESS) for j in ids]

    api.pause_answers = [acknowledged_only]
    params = pause_jobs.PauseJobsParams.from_with({"jobs": ["a"], "pause_mode": "all"})
    out = output_values(await pause_jobs.run(ctx, params))

    # Not 60 s: the step's deadline (5 s, less a reserve) ends the wait, and the pause is in
    # the output, so a later resume or rollback step still knows of it.
    assert out == {"paused": ["a"], "rejected": []}
    assert clock.now <= 4.0
    assert record_of(ctx, "a").disposition is Disposition.PAUSED
