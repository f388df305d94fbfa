"""A drill's verdict (engine.report.drill): the rule, its one-sentence why, and the document."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest
from reports import make_report

from engine.ledger import Disposition
from engine.report.document import DrillBudget, DrillCheck, DrillReport, PausedJob
from engine.report.drill import judge, merge_drills
from engine.report.html_page import to_html
from engine.report.markdown import to_markdown
from engine.run.result import StepStatus


def paused(job_id: str, outage: float | None, disposition: str = "recovered") -> PausedJob:
    recovered = None if outage is None else 1.0 + outage
    return PausedJob(
        project="orders",
        id=job_id,
        name=f"job-{job_id}",
        disposition=Disposition(disposition),
        paused_t=1.0,
        resumed_t=3.0,
        recovered_t=recovered,
        time_to_recover_s=None if outage is None else outage - 2.0,
        pause_to_recovery_s=outage,
    )


BUDGET = DrillBudget(
    step="within_rto",
    that="${{ steps.v.drill_rto_p95_s <= params.rto_budget }}",
    measured="steps.v.drill_rto_p95_s",
    budget_s=5.0,
    held=True,
)
HELD = [DrillCheck(project="orders", step="within_rto", status=StepStatus.SUCCEEDED, message=None)]


def verdict(**changes: object) -> DrillReport:
    given: dict[str, object] = {
        "paused": [paused("a", 4.0), paused("b", 3.0), paused("c", 2.5)],
        "checks": HELD,
        "failures": [],
        "budget": BUDGET,
        "interrupted": False,
        "pauses": True,
    }
    given.update(changes)
    return judge(**given)  # type: ignore[arg-type]


def test_every_paused_job_recovered_and_every_check_held_passes_with_nearest_rank_figures() -> None:
    drill = verdict()

    assert drill.passed
    assert (drill.rto_p50_s, drill.rto_p95_s, drill.rto_max_s) == (3.0, 4.0, 4.0)
    assert drill.why == (
        "all 3 paused job(s) recovered, pause-to-recovery p95 4 s within the budget 5 s; "
        "every check held"
    )


def test_the_first_reason_to_fail_is_the_why() -> None:
    interrupted = verdict(interrupted=True, failures=[("orders", "x", "boom")])
    assert not interrupted.passed
    assert interrupted.why == "the run was interrupted before the drill finished"

    failed_step = verdict(failures=[("orders", "steady_after", "the steady state broke")])
    assert failed_step.why == "step 'steady_after' failed in orders: the steady state broke"

    stuck = verdict(paused=[paused("a", 4.0), paused("b", None, "timed_out")])
    assert stuck.why == "1 of 2 paused job(s) did not recover (orders: job-b timed_out)"
    # b's outage has no end: the median is a's, p95 and max fall on b (no value, not 4.0).
    assert (stuck.rto_p50_s, stuck.rto_p95_s, stuck.rto_max_s) == (4.0, None, None)

    nothing = verdict(paused=[])
    assert nothing.why == "no job was paused: the drill injected no fault"
    assert (nothing.rto_p50_s, nothing.rto_p95_s, nothing.rto_max_s) == (None, None, None)
    # A declared drill without a pause step passes on its checks alone.
    assert verdict(paused=[], pauses=False).why == "every check held"


def test_a_budget_over_jobs_that_did_not_recover_is_not_said_as_the_survivors_p95() -> None:
    # 9 of 10 paused jobs recovered in 1-9 s, one timed out: the p95 falls on it (rank 10).
    drill = verdict(
        paused=[paused(f"j{i}", float(i)) for i in range(1, 10)] + [paused("z", None, "timed_out")],
        failures=[("orders", "within_rto", "steps.v.drill_rto_p95_s has no value")],
        budget=DrillBudget(step="within_rto", that="t", measured="m", budget_s=300.0, held=False),
    )
    assert drill.why == (
        "pause-to-recovery p95 not reached: 1 of 10 paused job(s) did not recover, budget "
        "300 s (step 'within_rto' failed in orders)"
    )
    assert (drill.rto_p50_s, drill.rto_p95_s, drill.rto_max_s) == (5.0, None, None)


def test_a_broken_budget_is_said_as_measured_against_budget() -> None:
    drill = verdict(
        paused=[paused("a", 6.04)],
        failures=[("orders", "within_rto", "over: x = 6.04 > y = 1")],
        budget=DrillBudget(step="within_rto", that="t", measured="m", budget_s=1.0, held=False),
    )
    assert (
        drill.why
        == "pause-to-recovery p95 6.04 s > budget 1 s (step 'within_rto' failed in orders)"
    )


def test_the_drill_reads_back_from_json_and_a_merge_fails_if_any_shard_failed() -> None:
    passed = verdict()
    failed = verdict(failures=[("payments", "within_rto", "over")], paused=[paused("d", 9.0)])
    assert DrillReport.from_json(orjson.loads(orjson.dumps(failed))) == failed

    merged = merge_drills([passed, None, failed])

    assert merged is not None
    assert (merged.verdict, merged.why) == (failed.verdict, failed.why)
    assert [j.id for j in merged.paused] == ["a", "b", "c", "d"]
    assert merged.rto_max_s == 9.0
    assert merge_drills([None, None]) is None
    both = merge_drills([passed, passed])
    assert both is not None
    assert both.passed


def test_a_runbook_is_a_drill_when_it_pauses_jobs_or_says_so(tmp_path: Path) -> None:
    from engine.actions.catalog import CATALOG
    from engine.runbook import load_runbook

    head = (
        "version: 1\nname: d\n{drill}"
        "targets: [{{project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10, region: cn-north-4}}]\n"
        "steps:\n  - id: select\n    action: drs.select_jobs\n"
    )
    pause = (
        "  - id: pause\n    action: drs.pause_jobs\n    with:\n"
        "      jobs: ${{ steps.select.jobs }}\n      pause_mode: target\n"
    )

    def drill(text: str) -> bool:
        path = tmp_path / "rb.yaml"
        path.write_text(text)
        return load_runbook(path, CATALOG).drill

    assert drill(head.format(drill="") + pause) is True  # pauses jobs: a drill
    assert drill(head.format(drill="")) is False
    assert drill(head.format(drill="drill: true\n")) is True  # says so
    assert drill(head.format(drill="drill: false\n") + pause) is False  # opts out


STEADY = """\
version: 1
name: d
steady_state:
  jobs: ${{ steps.select.jobs }}
  max_delay: 1m
  timeout: 20s
targets: [{project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10, region: cn-north-4}]
steps:
  - id: select
    action: drs.select_jobs
"""
FAULT = """\
  - id: pause
    action: drs.pause_jobs
    with: {jobs: "${{ steps.select.jobs }}", pause_mode: target}
  - id: resume
    action: drs.batch_retry
    with: {jobs: "${{ steps.pause.paused }}"}
  - id: verify_recovery
    action: drs.verify_status
    with: {jobs: "${{ steps.resume.accepted }}"}
  - id: within_rto
    action: assert
    with: {that: "${{ steps.verify_recovery.drill_rto_p95_s <= 60 }}"}
"""


def test_the_steady_state_block_is_checked_before_the_fault_and_after_recovery(
    tmp_path: Path,
) -> None:
    from engine.actions.catalog import CATALOG
    from engine.runbook import load_runbook

    path = tmp_path / "rb.yaml"
    path.write_text(STEADY + FAULT)
    runbook = load_runbook(path, CATALOG)
    assert [s.id for s in runbook.steps] == [
        "select",
        "steady_state_before",
        "steady_state_before_holds",
        "pause",
        "resume",
        "verify_recovery",
        "steady_state_after",
        "steady_state_after_holds",
        "within_rto",
    ]
    before = runbook.steps[1]
    assert before.action == "drs.verify_status"
    assert before.timeout_s == 20.0
    assert set(before.with_) == {"jobs", "max_delay"}
    holds = runbook.steps[2]
    assert holds.on_failure == "abort"  # no fault unless the hypothesis holds
    assert runbook.steps[7].on_failure == "continue"  # the RTO asserts still judge


def test_a_steady_state_block_needs_a_fault_its_ids_and_sound_references(
    tmp_path: Path,
) -> None:
    from engine.actions.catalog import CATALOG
    from engine.errors import RunbookInvalidError
    from engine.runbook import load_runbook

    def problems(text: str) -> str:
        path = tmp_path / "rb.yaml"
        path.write_text(text)
        try:
            load_runbook(path, CATALOG)
        except RunbookInvalidError as exc:
            return exc.format_message()
        raise AssertionError("valid")

    assert "no drs.pause_jobs step injects one" in problems(STEADY)
    taken = (
        STEADY + FAULT + "  - id: steady_state_after\n    action: sleep\n    with: {duration: 1s}\n"
    )
    assert "step id 'steady_state_after' is the steady_state block's own" in problems(taken)
    # The block runs before the first pause: it cannot refer to the steps after it.
    late = (STEADY + FAULT).replace(
        "${{ steps.select.jobs }}\n  max", "${{ steps.pause.paused }}\n  max"
    )
    assert "steady_state.jobs: step 'pause'" in problems(late)


def test_a_pause_only_in_rollback_is_no_fault_for_the_steady_state(tmp_path: Path) -> None:
    from engine.actions.catalog import CATALOG
    from engine.errors import RunbookInvalidError
    from engine.runbook import load_runbook

    path = tmp_path / "rb.yaml"
    path.write_text(
        STEADY
        + "rollback:\n  - id: undo\n    action: drs.pause_jobs\n"
        + '    with: {jobs: "${{ steps.select.jobs }}", pause_mode: target}\n'
    )
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(path, CATALOG)
    assert "no drs.pause_jobs step injects one" in caught.value.format_message()


def test_a_drill_whose_p95_fell_on_an_unrecovered_job_renders_it_as_not_recovered() -> None:
    # 19 of 20 recovered: median and p95 are the survivors', the max has no end. Both renderers
    # say so instead of a number (the Markdown line formatted None with :.1f before).
    jobs = [paused(f"j{i}", float(i)) for i in range(1, 20)] + [paused("z", None, "timed_out")]
    drill = verdict(paused=jobs)
    assert (drill.rto_p50_s, drill.rto_p95_s, drill.rto_max_s) == (10.0, 19.0, None)
    report = dataclasses.replace(make_report(), drill=drill)

    markdown = to_markdown(report)
    html = to_html(report)

    assert "- Pause to recovery: median 10.0s, p95 19.0s, max not recovered (20 paused job(s))" in (
        markdown
    )
    assert "max not recovered" in html
    stuck = dataclasses.replace(report, drill=verdict(paused=jobs[-1:]))
    assert "median not recovered, p95 not recovered, max not recovered" in to_markdown(stuck)
