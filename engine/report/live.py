"""Live progress on a terminal: one row per project and an overall bar, redrawn in place.

Each row shows the project's step with a spinner while it runs, how long it has run, its
deadline and what is left of it, and the jobs left without a verdict, so a long quiet wait
does not look like a hang. While an approval is asked the table is drawn once more with
current numbers and left in the scrollback; the prompt and its answer stay below it, and a new
table is drawn under them (never over them).

A ``RunObserver`` for a terminal only: the CLI shows ``engine.report.progress.ProgressLines``
instead when stderr is not one or ``CI`` is set, and imports this module (and rich) only when
it draws. ``NO_COLOR`` is honoured by rich. The table is redrawn from the jobs' records by
callbacks on the run's own event loop (never from rich's refresh thread, which would read the
records while the run changes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from engine.ledger import JobBook
from engine.report.progress import Counts, StepClocks, count, deadline_words, step_words
from engine.report.terminal import approval_summary
from engine.run.approval import ApprovalRequest
from engine.run.result import StepOutcome, StepStatus
from engine.run.step import StepTiming
from engine.runbook import Step, Target
from engine.units import describe_span

# Redraw this often; a fleet this large is counted less often (each redraw reads every record).
REFRESH_S = 0.25
LARGE_FLEET = 10_000
LARGE_REFRESH_S = 1.0


# The overall bar's width, and what the counts beside it want of the line.
BAR = 40
MIN_BAR = 10
COUNTS_WIDTH = 50

# A spinner frame per redraw-ish interval: a row that moves is a run that is alive.
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ASCII_SPINNER = "|/-\\"
SPIN_PER_S = 4

__all__ = ["Counts", "LiveProgress", "count"]


class LiveProgress:
    """A run observer that keeps a table of every project on the terminal, in place."""

    def __init__(self, console: Console, *, clocks: StepClocks | None = None) -> None:
        self._console = console
        self._clocks = clocks or StepClocks()
        self._books: Mapping[Target, JobBook] = {}
        self._step: dict[Target, str] = {}
        self._live = self._new_live()
        self._tick: asyncio.TimerHandle | None = None
        self._said_resumed: set[str] = set()

    def _new_live(self) -> Live:
        return Live(console=self._console, auto_refresh=False, transient=False)

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

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None:
        running = self._clocks.started(target, step, timing)
        self._step[target] = step.id
        if timing.resumed and timing.timeout_s is not None and step.id not in self._said_resumed:
            self._said_resumed.add(step.id)  # once per step, not once per project
            self._live.console.print(
                f"{step.id}: {deadline_words(running, wall=_wall_now())}",
                markup=False,
                highlight=False,
            )

    @property
    def shows_plan(self) -> bool:
        return True

    def about_to_change(self, request: ApprovalRequest) -> None:
        self._live.console.print(approval_summary(request, heading="about to change"))

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        self._clocks.finished(target)
        words = step_words(outcome, count(jobs))
        self._step[target] = f"{outcome.step_id} {words}"
        if outcome.message and outcome.status is StepStatus.FAILED:
            self._live.console.print(
                f"[{target.label}] {outcome.step_id} failed: {outcome.message}",
                markup=False,
                highlight=False,
            )

    def run_stopped(self, why: str) -> None:
        """Nothing more to say: the executor logged the guard's warning on stderr."""

    # ---------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Draw the table once more with current numbers, then leave it in the scrollback and
        stop redrawing (while a question waits for an answer on the terminal)."""
        self.redraw()
        self._live.stop()

    def resume(self) -> None:
        """Draw a new table below the question and its answer. A fresh ``Live``: the stopped one
        remembers the height it drew and would move the cursor up over the prompt."""
        self._live = self._new_live()
        self._live.start()
        self.redraw()

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
        table.add_column("elapsed", justify="right")
        table.add_column("deadline")
        for name in ("left", "selected", "retried", "recovered", "failed"):
            table.add_column(name, justify="right")
        now = self._clocks.now()
        frames = SPINNER if self._console.encoding.lower().startswith("utf") else ASCII_SPINNER
        spinner = frames[int(now * SPIN_PER_S) % len(frames)]
        total = Counts()
        for target, book in self._books.items():
            counts = count(book)
            total.selected += counts.selected
            total.retried += counts.retried
            total.recovered += counts.recovered
            total.failed += counts.failed
            running = self._clocks.running(target)
            if running is None:
                step, elapsed, deadline = self._step.get(target, ""), "", ""
            else:
                step = f"{spinner} {running.step.id}"
                elapsed = describe_span(running.elapsed_s(now))
                left = running.left_s(now)
                deadline = (
                    ""
                    if left is None or running.timeout_s is None
                    else f"{describe_span(running.timeout_s)}, {describe_span(left)} left"
                )
            table.add_row(
                target.label,
                step,
                elapsed,
                deadline,
                str(counts.left),
                str(counts.selected),
                str(counts.retried),
                Text(str(counts.recovered), style="green" if counts.recovered else ""),
                Text(str(counts.failed), style="red" if counts.failed else ""),
            )
        # the bar gives way on a narrow terminal: the counts beside it must not wrap apart
        width = max(MIN_BAR, min(BAR, self._console.width - COUNTS_WIDTH))
        bar = ProgressBar(total=max(total.selected, 1), completed=total.settled, width=width)
        summary = Text(
            f" {total.settled}/{total.selected} settled · {total.recovered} recovered · "
            f"{total.failed} need a human"
        )
        overall = Table.grid(padding=(0, 1))
        overall.add_row(bar, summary)
        return Group(table, overall)


def _wall_now() -> datetime:
    return datetime.now(UTC)
