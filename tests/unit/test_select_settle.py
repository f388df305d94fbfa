"""``drs.select_jobs``: the API's own filters, the disputed engine_type default, and ``settle``
(leaving the service's own retries alone), against ``FakeFleet`` on a ``FakeClock``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from fakes import FakeClock, FakeFleet, job

from engine.actions import batch_retry, select_jobs
from engine.actions.context import ActionContext, StepFailedError
from engine.actions.spec import output_values
from engine.api.client import JobDetail
from engine.api.types import JobActions, StatusResult
from engine.ledger import Disposition, EventKind, JobBook, JobRecord


def make_ctx(api: FakeFleet, clock: FakeClock, *, planning: bool = False) -> ActionContext:
    return ActionContext(
        api=api,
        jobs=JobBook(clock),
        step_id="select",
        project_id="p" * 32,
        deadline=clock.now + 600.0,
        sleep=clock.sleep,
        planning=planning,
    )


async def select(ctx: ActionContext, **given: Any) -> dict[str, Any]:
    params = select_jobs.SelectJobsParams.from_with({"db_use_type": ["migration"], **given})
    return dict(output_values(await select_jobs.run(ctx, params)))


async def test_the_apis_own_filters_are_sent_with_the_listing() -> None:
    clock, api = FakeClock(), FakeFleet().listing(job("a"))
    ctx = make_ctx(api, clock)

    await select(
        ctx,
        tags={"env": "prod", "team": "orders"},
        enterprise_project_id="0",
        instance_ids=["rds-1", "rds-2"],
        engine_type=["postgresql", "mysql"],
    )

    assert api.list_filters == [
        {
            "engine_type": engine,
            "tags": {"env": "prod", "team": "orders"},
            "enterprise_project_id": "0",
            "instance_ids": ["rds-1", "rds-2"],
        }
        for engine in ("mysql", "postgresql")  # one listing per engine named, in order
    ]


async def test_more_than_ten_instance_ids_fail_the_step_before_any_request() -> None:
    with pytest.raises(StepFailedError, match="instance_ids takes 1 to 10 ids, got 11"):
        select_jobs.SelectJobsParams.from_with({"instance_ids": [f"i{n}" for n in range(11)]})


async def test_tags_must_map_strings_to_strings() -> None:
    with pytest.raises(StepFailedError, match="tags must map strings to strings"):
        select_jobs.SelectJobsParams.from_with({"tags": {"env": 1}})


async def test_an_omitted_engine_type_that_lists_only_mysql_says_others_may_be_missing() -> None:
    clock, api = FakeClock(), FakeFleet().listing(job("a"), job("b"))
    ctx = make_ctx(api, clock)

    await select(ctx)

    assert len(ctx.notices) == 1
    assert (
        "engine_type was not given and no job listed is of an engine other than mysql"
        in (ctx.notices[0])
    )
    assert api.list_filters[0]["engine_type"] is None  # nothing guessed on the wire


async def test_no_engine_notice_when_the_listing_shows_other_engines_or_one_is_named() -> None:
    clock = FakeClock()
    mixed = FakeFleet().listing(job("a"), job("b", engine="postgresql"))
    ctx = make_ctx(mixed, clock)
    await select(ctx)
    assert ctx.notices == []
    named = make_ctx(FakeFleet().listing(job("a")), clock)
    await select(named, engine_type="mysql")
    assert named.notices == []


def failed_at(api: FakeFleet, job_id: str, seconds_ago: float) -> None:
    api.changed_at[job_id] = time.time() - seconds_ago


async def test_settle_leaves_young_failures_to_the_service_and_says_who_recovered_alone() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("old"), job("heals"), job("stays"), job("busy"))
    failed_at(api, "heals", 10)
    failed_at(api, "stays", 50)
    failed_at(api, "busy", 100)
    # Each poll of the wait (every 15 s) reads the next status.
    api.upcoming["heals"] = ["INCRE_TRANSFER_FAILED", "STARTJOBING", "INCRE_TRANSFER_STARTED"]
    api.upcoming["busy"] = ["STARTJOBING"]
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="2m")

    assert out["jobs"] == ["old", "stays"]
    heals = ctx.jobs.ensure("heals")
    assert heals.disposition is Disposition.RECOVERED_BY_SERVICE
    assert heals.reason == (
        "the service's own retry brought it back (INCRE_TRANSFER_STARTED) 30s into the settle "
        "wait, before the runbook sent anything"
    )
    busy = ctx.jobs.ensure("busy")
    assert busy.disposition is Disposition.SKIPPED
    assert busy.reason == (
        "still STARTJOBING after settling: the service is retrying it itself; left alone"
    )
    assert [e.kind for e in ctx.jobs.ensure("stays").events] == [
        EventKind.SELECTED,
        EventKind.SETTLING,
    ]
    assert ctx.jobs.ensure("old").events[-1].kind is EventKind.SELECTED  # an hour old: no wait
    # The wait lasted until the last job was settled: "stays", failed for 2 minutes at t=70,
    # seen at the next poll (every 15 s); not until the youngest's 2 minutes (t=110).
    assert clock.now == 75.0
    assert all("old" not in call for call in api.status_calls)


async def test_a_job_whose_failure_time_is_unknown_waits_the_whole_settle() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("a"))

    async def no_time(job_ids: Any) -> list[Any]:
        return []  # batch-detail knows nothing of it

    api.batch_detail = no_time  # type: ignore[method-assign]
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="30s")

    assert out["jobs"] == ["a"]
    assert clock.now >= 30.0
    assert any("no readable update_time" in n for n in ctx.notices)


async def test_a_job_with_an_action_under_way_is_left_to_it() -> None:
    clock = FakeClock()
    acting = JobActions(available_actions=("RETRY",), current_action="RETRY")
    api = FakeFleet().listing(job("a", actions=acting))
    api.upcoming["a"] = ["INCRE_TRANSFER_FAILED", "INCRE_TRANSFER_STARTED"]
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="1m")

    assert out["jobs"] == []
    assert ctx.jobs.ensure("a").disposition is Disposition.RECOVERED_BY_SERVICE


async def test_a_plan_does_not_wait_and_says_how_long_a_run_would() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("a"), job("b"))
    failed_at(api, "a", 30)
    ctx = make_ctx(api, clock, planning=True)

    out = await select(ctx, settle="2m")

    assert out["jobs"] == ["a", "b"]
    assert clock.now == 0.0
    assert api.status_calls == []
    assert any(
        n.startswith("1 selected job(s) failed less than settle 120s ago") and "up to 90s" in n
        for n in ctx.notices
    )


async def test_without_settle_nothing_waits_and_batch_detail_is_not_asked() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("a"))
    failed_at(api, "a", 1)
    ctx = make_ctx(api, clock)

    out = await select(ctx)

    assert out["jobs"] == ["a"]
    assert api.detail_calls == []
    assert clock.now == 0.0


async def test_a_resumed_selection_settles_again_only_a_job_it_left_that_failed_again() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("left"), job("other"))
    ctx = make_ctx(api, clock)
    for job_id, step in (("left", "select"), ("other", "earlier")):
        record = ctx.jobs.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
        ctx.jobs.record(job_id, EventKind.SETTLING, step=step, detail="failed 5s ago")
        record.disposition, record.reason = Disposition.SKIPPED, "still STARTJOBING ..."

    out = await select(ctx, settle="1m")

    left = ctx.jobs.ensure("left")
    assert out["jobs"] == ["left", "other"]
    assert left.disposition is Disposition.SELECTED
    assert left.events[-1].detail == "listed failed again after the service's own retry"
    assert ctx.jobs.ensure("other").disposition is Disposition.SKIPPED  # not this step's


async def test_a_plan_says_which_engine_filter_was_in_effect() -> None:
    clock = FakeClock()
    fleet = FakeFleet().listing(job("a"), job("b", engine="postgresql"))
    omitted = make_ctx(fleet, clock, planning=True)
    await select(omitted)
    assert omitted.notices == [
        "engine_type not sent: every engine the service lists (mysql, postgresql)",
        "funnel: 2 job(s) listed; 2 selected",
    ]
    named = make_ctx(fleet, clock, planning=True)
    await select(named, engine_type=["postgresql", "mysql"])
    assert named.notices[0] == (
        "engine_type sent: mysql, postgresql, one listing each (listed: mysql, postgresql)"
    )


async def test_a_job_that_fails_again_during_the_wait_settles_again() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("a"))
    failed_at(api, "a", 100)  # 20 s of its 2 minutes left
    api.upcoming["a"] = ["STARTJOBING", "INCRE_TRANSFER_FAILED"]  # the service's retry failed
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="2m")

    # Failed again at t=15: acted on once that failure is 2 minutes old (t=135, seen at 135).
    assert out["jobs"] == ["a"]
    assert clock.now == 135.0


class _RetriedBetweenPolls(FakeFleet):
    """The service's own retry of "a" starts and fails again between two polls: no poll sees
    it in progress, only batch-detail's update_time moves (at the ``at``-th status call)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
        if len(self.status_calls) + 1 == self.at:
            failed_at(self, "a", 5)
        return await super().batch_status(job_ids)


async def test_a_job_whose_service_retry_fell_between_two_polls_settles_again() -> None:
    clock = FakeClock()
    api = _RetriedBetweenPolls(at=2).listing(job("a"))
    failed_at(api, "a", 100)  # 20 s of its 2 minutes left
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="2m")

    # Its status read failed at every poll (0, 15, 30 s); at 30 s, about to be acted on,
    # batch-detail said it failed again ~5 s ago: it waits that failure out too (from 30 s,
    # 115 s more: polls every 15 s to 150 s), and is acted on then.
    assert out["jobs"] == ["a"]
    assert clock.now == 150.0
    assert len(api.detail_calls) == 3  # the first read, the one that saw it, one more at 150 s
    settling = [e.detail for e in ctx.jobs.ensure("a").events if e.kind is EventKind.SETTLING]
    assert len(settling) == 2
    assert (settling[1] or "").startswith("failed again 5s ago, the service's own retry between")


class _AlwaysFailedAgain(FakeFleet):
    """A server whose batch-detail says, every time it is asked, that "a" failed again: each
    update_time 10 s after the one before (it failed 100 s ago at first)."""

    async def batch_detail(self, job_ids: Sequence[str]) -> list[JobDetail]:
        failed_at(self, "a", 100 - 10 * len(self.detail_calls))
        return await super().batch_detail(job_ids)


async def test_a_server_that_always_says_failed_again_holds_a_job_back_only_three_times() -> None:
    clock = FakeClock()
    api = _AlwaysFailedAgain().listing(job("a"))
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="2m")

    # The first read, then one per service try (3), each waiting a new settle: bounded by the
    # service's own tries, not by what the server says.
    assert out["jobs"] == ["a"]
    assert len(api.detail_calls) == 1 + 3
    settling = [e for e in ctx.jobs.ensure("a").events if e.kind is EventKind.SETTLING]
    assert len(settling) == 1 + 3
    assert clock.now < 30 + 3 * 125


async def test_a_timeout_shorter_than_settle_leaves_young_jobs_alone_and_says_so() -> None:
    clock = FakeClock()
    api = FakeFleet().listing(job("young"), job("old"))
    failed_at(api, "young", 10)
    ctx = make_ctx(api, clock)
    ctx.deadline = 60.0

    out = await select(ctx, settle="5m")

    young = ctx.jobs.ensure("young")
    assert out["jobs"] == ["old"]
    assert young.disposition is Disposition.SKIPPED
    assert young.reason is not None
    assert young.reason.startswith("failed only ")
    assert "when the select step's timeout ended the settle wait; left alone" in young.reason
    assert clock.now <= 60.0
    assert any("timeout ended the settle wait with 1 job(s)" in n for n in ctx.notices)
    settling = next(e for e in young.events if e.kind is EventKind.SETTLING)
    assert settling.detail is not None
    assert "left alone up to 55s" in settling.detail  # the true bound, not the 290 s it wanted


async def test_only_failed_jobs_settle_and_a_job_gone_meanwhile_says_so() -> None:
    clock = FakeClock()
    acting = JobActions(available_actions=("RETRY",), current_action="PAUSE")
    api = FakeFleet().listing(job("paused", "PAUSING", actions=acting), job("gone"))
    failed_at(api, "gone", 5)
    api.upcoming["gone"] = ["INCRE_TRANSFER_FAILED", "DELETED"]
    ctx = make_ctx(api, clock)

    out = await select(ctx, settle="1m")

    assert out["jobs"] == ["paused"]  # a paused job is no retry of the service's: no wait
    gone = ctx.jobs.ensure("gone")
    assert gone.disposition is Disposition.SKIPPED
    assert gone.reason == "DELETED during the settle wait: left alone"
    assert all("paused" not in call for call in api.status_calls)


async def test_a_selection_says_which_filter_dropped_what_in_a_plan_and_when_it_is_empty() -> None:
    clock = FakeClock()
    parent = job(
        "p",
        "INCRE_TRANSFER_FAILED",
        name="orders-dr",
        children=(job("c1", name="orders-dr-child-1"), job("c2", "INCRE_TRANSFER_STARTED")),
    )
    fleet = FakeFleet().listing(
        job("a", name="orders-1"),
        job("b", name="payments-1"),
        job("c", name="orders-2", engine="postgresql"),
        job("d", name="orders-3", actions=JobActions(available_actions=("DELETE",))),
        parent,
    )
    planned = make_ctx(fleet, clock, planning=True)
    out = await select(planned, name="orders-*", engine_type="mysql")
    assert out["jobs"] == ["a", "c1"]
    # The postgresql job is not listed at all (engine_type is the API's filter); the name
    # drops payments-1 and the child named job-c2.
    assert planned.notices[-1] == (
        "funnel: 4 job(s) listed (and 2 subtask(s)); dropped 2 by name; "
        "left alone 1 without RETRY, 1 dual-active parent; 2 selected"
    )
    by_status = make_ctx(fleet, clock, planning=True)
    await select(by_status, statuses=["PAUSING"])
    assert "dropped 7 by status" in by_status.notices[-1]
    empty = make_ctx(fleet, clock)  # a run says it only when nothing was selected
    assert (await select(empty, name="ordres-*"))["jobs"] == []
    assert empty.notices[-1].startswith("funnel: 5 job(s) listed (and 2 subtask(s)); dropped ")
    assert empty.notices[-1].endswith("; 0 selected")


async def test_applying_a_plan_keeps_a_job_the_service_recovered_while_settling() -> None:
    """Applying a plan: a planned job the settle wait saw the service bring back is
    ``recovered_by_service`` (not sent, good), not ``drifted``; one now paused, one found
    healthy without the wait seeing who did it, and one the plan does not list stay drifted."""
    clock = FakeClock()
    api = FakeFleet().listing(job("old"), job("heals"), job("pauses"), job("new"))
    api.statuses["elsewhere"] = "INCRE_TRANSFER_STARTED"  # planned failed; retried by someone
    failed_at(api, "heals", 10)
    failed_at(api, "pauses", 10)
    api.upcoming["heals"] = ["STARTJOBING", "INCRE_TRANSFER_STARTED"]
    api.upcoming["pauses"] = ["PAUSING"]
    ctx = make_ctx(api, clock)
    out = await select(ctx, settle="30s")
    assert out["jobs"] == ["old", "pauses", "new"]

    planned = dict.fromkeys(("old", "heals", "pauses", "elsewhere"), "INCRE_TRANSFER_FAILED")
    retry_ctx = ActionContext(
        api=api, jobs=ctx.jobs, step_id="retry", project_id=ctx.project_id,
        sleep=clock.sleep, planned=planned,
    )  # fmt: skip
    params = batch_retry.BatchRetryParams.from_with({"jobs": out["jobs"]})
    sent = await batch_retry.run(retry_ctx, params)

    assert api.retry_calls == [["old"]]
    assert sent.accepted == ("old",)
    book = ctx.jobs
    heals = book.ensure("heals")
    assert heals.disposition is Disposition.RECOVERED_BY_SERVICE
    assert heals.disposition.is_good()
    assert [e.kind for e in heals.events if e.step == "retry"] == []
    assert (book.ensure("pauses").disposition, book.ensure("pauses").reason) == (
        Disposition.DRIFTED,
        "planned on INCRE_TRANSFER_FAILED, now PAUSING",
    )
    assert (book.ensure("elsewhere").disposition, book.ensure("elsewhere").reason) == (
        Disposition.DRIFTED,
        "planned on INCRE_TRANSFER_FAILED, now INCRE_TRANSFER_STARTED: no longer selected",
    )
    assert book.ensure("new").disposition is Disposition.DRIFTED
    assert book.ensure("new").reason == "not in the plan: selected now, but nobody approved it"
