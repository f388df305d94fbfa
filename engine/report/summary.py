"""The summary every human-facing format opens with: the headline and the table of counts.

Terminal, Markdown and HTML show the same headline and the same columns (``ledger.Column``,
each counting the dispositions whose meaning names it), so a run reads the same in a ticket,
a browser and a terminal.
"""

from __future__ import annotations

from engine.ledger import Column, Disposition
from engine.percentiles import nearest_rank
from engine.report.document import JobReport, Report, Totals
from engine.units import describe_delay

# The table's columns, in order; a row is a project's (or the total's) counts in them.
COLUMNS: tuple[Column, ...] = tuple(Column)


def headline(report: Report) -> str:
    """One line saying how the run went, as its exit code decided; a drill's says its verdict
    (``engine.report.drill``)."""
    totals = report.totals
    if report.drill is not None:
        return f"drill {report.drill.verdict}: {report.drill.why}"
    if report.interrupted:
        return f"interrupted; {totals.needs_attention} job(s) left for a human"
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


def row(totals: Totals) -> list[int]:
    """The counts of one row of the table, column by column."""
    return [totals.in_column(column) for column in COLUMNS]


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
