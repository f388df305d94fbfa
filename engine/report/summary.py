"""The summary every human-facing format opens with: the headline and the table of counts.

Terminal, Markdown and HTML show the same headline and the same columns (``ledger.Column``,
each counting the dispositions whose meaning names it), so a run reads the same in a ticket,
a browser and a terminal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from engine.ledger import SHOWN_WHEN_COUNTED, Column, Disposition
from engine.percentiles import nearest_rank
from engine.report.document import JobReport, Report, StepReport, TargetReport, Totals
from engine.units import describe_delay

# Every column of the table, in order; a row is a project's (or the total's) counts in them.
COLUMNS: tuple[Column, ...] = tuple(Column)


def headline(report: Report) -> str:
    """One line saying how the run went, as its exit code decided; a drill's says its verdict
    (``engine.report.drill``)."""
    totals = report.totals
    if report.interrupted:
        return f"interrupted; {totals.needs_attention} job(s) left for a human"
    if report.stopped_by is not None:  # the news, a drill's verdict included
        return f"{report.stopped_by.describe()}; {totals.needs_attention} job(s) need a human"
    if report.drill is not None:
        return f"drill {report.drill.verdict}: {report.drill.why}"
    if not report.mutating and report.exit_code == 0:
        return f"{totals.selected} job(s) selected; no step of this runbook acts on them"
    if report.exit_code == 0:
        return f"all {totals.selected} selected job(s) healthy"
    declined = next((a for a in report.approvals if not a.get("approved")), None)
    if declined is not None:
        return (
            f"declined by {declined.get('approved_by')} at step '{declined.get('step')}': "
            f"{totals.selected} selected job(s) left as they were"
        )
    failed_targets = [t for t in report.targets if t.status == "failed"]
    parts = []
    if totals.needs_attention:
        parts.append(f"{totals.needs_attention} of {totals.selected} job(s) need a human")
    if failed_targets:
        parts.append(f"a step failed in {len(failed_targets)} project(s)")
    return "; ".join(parts) or "run did not complete"


def columns(report: Report) -> tuple[Column, ...]:
    """The columns of the report's table: every one, but flapping and lagging only when some
    job of the run is in them (``ledger.SHOWN_WHEN_COUNTED``)."""
    return tuple(
        column
        for column in COLUMNS
        if column not in SHOWN_WHEN_COUNTED or report.totals.in_column(column)
    )


def row(totals: Totals, shown: tuple[Column, ...] = COLUMNS) -> list[int]:
    """The counts of one row of the table, column by column (of ``shown``)."""
    return [totals.in_column(column) for column in shown]


def has_delays(report: Report) -> bool:
    """Whether a verify step read any job's replication delay (then the job tables show it)."""
    return any(job.delay_s is not None for target in report.targets for job in target.jobs)


def delay_text(job: JobReport) -> str:
    """A job's replication delay for a table cell: ``240s / 400s`` (last / largest), or empty."""
    if job.delay_s is None:
        return ""
    largest = job.delay_max_s if job.delay_max_s is not None else job.delay_s
    return f"{describe_delay(job.delay_s)} / {describe_delay(largest)}"


def last_delays(report: Report) -> list[float]:
    """Every job's last replication delay a verify step read, smallest first."""
    return sorted(
        job.delay_s for target in report.targets for job in target.jobs if job.delay_s is not None
    )


def delay_summary(report: Report) -> str | None:
    """The replication delays of the run in one phrase, or None when none was read."""
    last = last_delays(report)
    if not last:
        return None
    lagging = report.totals.get(Disposition.LAGGING._value_, 0)
    behind = f"; {lagging} job(s) lagging" if lagging else ""
    return (
        f"median {describe_delay(nearest_rank(last, 50))}, max {describe_delay(last[-1])} "
        "behind at the last poll "
        f"({len(last)} jobs){behind}"
    )


# ----------------------------------------------------------------------------- status words
# A status in words that match the jobs: "3 of 7 jobs need a human", never "ok" or "succeeded"
# over jobs that failed. Every renderer says a step's and a project's status through these.


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTally:
    """One step in one project: the jobs it worked on, and those it left needing a human."""

    jobs: int = 0
    need_a_human: int = 0


def step_tallies(target: TargetReport) -> dict[str, StepTally]:
    """Per step: the jobs with an event of that step, and those whose final disposition (needing
    a human) that step gave them — its last event of that kind is the step's. One pass."""
    touched: Counter[str] = Counter()
    needs: Counter[str] = Counter()
    for job in target.jobs:
        steps = {event["step"] for event in job.events}
        touched.update(steps)
        if job.disposition.needs_a_human:
            settled_by = next(
                (e["step"] for e in reversed(job.events) if e["kind"] == job.disposition),
                None,
            )
            if settled_by is not None:
                needs[settled_by] += 1
    return {
        step: StepTally(jobs=touched[step], need_a_human=needs[step])
        for step in touched.keys() | needs.keys()
    }


def step_status(step: StepReport, tally: StepTally | None) -> str:
    """A step's status: "failed", "skipped", "succeeded" only when it left no job needing a
    human, else "done: 3 of 7 jobs need a human"."""
    if step.status == "succeeded" and tally is not None and tally.need_a_human:
        return f"done: {tally.need_a_human} of {tally.jobs} jobs need a human"
    return step.status


def steps_ended(report: Report) -> dict[str, str]:
    """Each step over every project: "succeeded in 2 project(s)", "done in 2 project(s): 7 of
    13 jobs need a human", "failed in 1 project(s)" (the parts joined by "; ")."""
    ended: dict[str, Counter[str]] = {}
    tallies: dict[str, list[StepTally]] = {}
    for target in report.targets:
        tally = step_tallies(target)
        for step in target.steps:
            counted = tally.get(step.id)
            done = step.status == "succeeded" and counted is not None and counted.need_a_human
            ended.setdefault(step.id, Counter())["done" if done else step.status] += 1
            if done and counted is not None:
                tallies.setdefault(step.id, []).append(counted)
    out = {}
    for step_id, statuses in ended.items():
        parts = []
        for status, projects in statuses.items():
            part = f"{status} in {projects} project(s)"
            if status == "done":
                need = sum(t.need_a_human for t in tallies[step_id])
                jobs = sum(t.jobs for t in tallies[step_id])
                part += f": {need} of {jobs} jobs need a human"
            parts.append(part)
        out[step_id] = "; ".join(parts)
    return out


def target_status(target: TargetReport, *, mutating: bool) -> tuple[str, bool]:
    """A project's status in words, and whether it is good: "all 7 jobs healthy", "3 of 7 jobs
    need a human", "step 'select' failed; ..."."""
    totals = target.totals
    failed = [step.id for step in target.steps if step.status == "failed"]
    parts = [f"step '{failed[0]}' failed"] if failed else []
    if totals.needs_attention:
        parts.append(f"{totals.needs_attention} of {totals.selected} jobs need a human")
    if parts:
        return "; ".join(parts), False
    if totals.selected == 0:
        return "no job selected", True
    if not mutating:
        return f"{totals.selected} jobs selected", True
    if totals.ok < totals.selected:  # some never got a verdict (no verify step)
        return f"{totals.ok} of {totals.selected} jobs healthy", False
    return f"all {totals.selected} jobs healthy", True
