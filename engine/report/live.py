"""Live progress on a terminal: one row per project and an overall bar, redrawn in place.

A ``RunObserver`` for a terminal only: the CLI shows ``engine.report.progress.ProgressLines``
instead when stderr is not one or ``CI`` is set, and imports this module (and rich) only when
it draws. ``NO_COLOR`` is honoured by rich. The table is redrawn from the jobs' records by
callbacks on the run's own event loop (never from rich's refresh thread, which would read the
records while the run changes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from engine.ledger import Disposition, JobBook, Outcome
from engine.report.terminal import approval_summary
from engine.run.approval import ApprovalRequest
from engine.run.result import StepOutcome, StepStatus
from engine.runbook import Step, Target

# Redraw this often; a fleet this large is counted less often (each redraw reads every record).
REFRESH_S = 0.25
LARGE_FLEET = 10_000
LARGE_REFRESH_S = 1.0


@dataclass(slots=True, kw_only=True)
class Counts:
    """One project's jobs, by what the run has done with them so far."""

    selected: int = 0
    retried: int = 0
    recovered: int = 0
    failed: int = 0

    @property
    def settled(self) -> int:
        return self.recovered + self.failed


def count(jobs: JobBook) -> Counts:
    counts = Counts()
    for record in jobs:
        if record.disposition is Disposition.SKIPPED:
            continue
        counts.selected += 1
        if record.retry_acknowledged_at is not None:
            counts.retried += 1
        disposition = record.disposition
        if disposition.outcome is Outcome.OK:
            counts.recovered += 1
        elif disposition.verdict and disposition.needs_a_human:
            counts.failed += 1
    return counts


class LiveProgress:
    """A run observer that keeps a table of every project on the terminal, in place."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._books: Mapping[Target, JobBook] = {}
        self._step: dict[Target, str] = {}
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._tick: asyncio.TimerHandle | None = None

    # RunObserver ---------------------------------------------------------------------------

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        self._books = books
        self._step = dict.fromkeys(books, "starting")
        self._live.start()
        self.redraw()
        self._schedule()

    def run_finished(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self.stop()

    def note(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def step_started(self, target: Target, step: Step) -> None:
        self._step[target] = f"{step.id} …"

    @property
    def shows_plan(self) -> bool:
        return True

    def about_to_change(self, request: ApprovalRequest) -> None:
        self._live.console.print(approval_summary(request, heading="about to change"))

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        self._step[target] = f"{outcome.step_id} {outcome.status.value}"
        if outcome.message and outcome.status is StepStatus.FAILED:
            self._live.console.print(
                f"[{target.label}] {outcome.step_id} failed: {outcome.message}",
                markup=False,
                highlight=False,
            )

    # ---------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop redrawing (while a question waits for an answer on the terminal)."""
        self._live.stop()

    def resume(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self.redraw()
        self._live.stop()

    def redraw(self) -> None:
        if self._books:
            self._live.update(self.renderable(), refresh=True)

    def _schedule(self) -> None:
        """Redraw again after the interval, on the run's event loop, until the run finishes."""

        def tick() -> None:
            self.redraw()
            self._schedule()

        self._tick = asyncio.get_running_loop().call_later(self._interval(), tick)

    def _interval(self) -> float:
        jobs = sum(len(book) for book in self._books.values())
        return LARGE_REFRESH_S if jobs > LARGE_FLEET else REFRESH_S

    def renderable(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("project")
        table.add_column("step")
        for name in ("selected", "retried", "recovered", "failed"):
            table.add_column(name, justify="right")
        total = Counts()
        for target, book in self._books.items():
            counts = count(book)
            total.selected += counts.selected
            total.retried += counts.retried
            total.recovered += counts.recovered
            total.failed += counts.failed
            table.add_row(
                target.label,
                self._step.get(target, ""),
                str(counts.selected),
                str(counts.retried),
                Text(str(counts.recovered), style="green" if counts.recovered else ""),
                Text(str(counts.failed), style="red" if counts.failed else ""),
            )
        bar = ProgressBar(total=max(total.selected, 1), completed=total.settled, width=40)
        summary = Text(
            f" {total.settled}/{total.selected} settled · {total.recovered} recovered · "
            f"{total.failed} need a human"
        )
        overall = Table.grid(padding=(0, 1))
        overall.add_row(bar, summary)
        return Group(table, overall)
