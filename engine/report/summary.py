"""The summary every human-facing format opens with: the headline and the table of counts.

Terminal, Markdown and HTML show the same headline and the same columns (``ledger.Column``,
each counting the dispositions whose meaning names it), so a run reads the same in a ticket,
a browser and a terminal.
"""

from __future__ import annotations

from engine.ledger import Column
from engine.report.document import Report, Totals

# The table's columns, in order; a row is a project's (or the total's) counts in them.
COLUMNS: tuple[Column, ...] = tuple(Column)


def headline(report: Report) -> str:
    """One line saying how the run went, as its exit code decided."""
    totals = report.totals
    if report.interrupted:
        return f"interrupted; {totals.needs_attention} job(s) left for a human"
    if not report.mutating and report.exit_code == 0:
        return f"{totals.selected} job(s) selected; no step of this runbook acts on them"
    if report.exit_code == 0:
        return f"all {totals.selected} selected job(s) healthy"
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
