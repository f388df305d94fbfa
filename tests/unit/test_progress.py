"""What the live progress table counts and shows."""

from __future__ import annotations

from rich.console import Console

from engine.errors import Location
from engine.ledger import Disposition, EventKind, JobBook, JobRecord
from engine.report.live import LiveProgress, count
from engine.runbook.model import Target


def _book() -> JobBook:
    book = JobBook(lambda: 1.0)
    for job_id, disposition, acknowledged in (
        ("a", Disposition.RECOVERED, 1.0),
        ("b", Disposition.FAILED_AGAIN, 1.0),
        ("c", Disposition.RETRY_ACCEPTED, 1.0),
        ("d", Disposition.SELECTED, None),
        ("e", Disposition.SKIPPED, None),
    ):
        record = book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
        book.record(job_id, EventKind.SELECTED, step="select")
        record.disposition = disposition
        record.retry_acknowledged_at = acknowledged
    return book


def test_counts_leave_skipped_jobs_out() -> None:
    counts = count(_book())
    assert (counts.selected, counts.retried, counts.recovered, counts.failed) == (4, 3, 1, 1)
    assert counts.settled == 2


def test_the_table_has_a_row_per_project_and_an_overall_line() -> None:
    console = Console(record=True, width=100, color_system=None)
    target = Target(
        project_id="p" * 32, region="cn-north-4", endpoint=None, name="orders-prod",
        location=Location(path="x", line=1, col=1),
    )  # fmt: skip
    progress = LiveProgress(console)
    progress._books = {target: _book()}  # what run_started sets, without starting the display
    console.print(progress.renderable())
    text = console.export_text()
    assert "orders-prod" in text
    assert "2/4 settled · 1 recovered · 1 need a human" in text
