"""Plain progress lines for CI, pipes and logs, and what both progress displays count and time.

``ProgressLines`` is a ``RunObserver``: a timestamped line per step start and finish, and while a
step waits a "still waiting" line every ``HEARTBEAT_S`` (30 s), so a quiet wait does not read as
a hang. With ``quiet`` it prints only warnings. On a terminal the CLI draws a live table instead
(``engine.report.live``), from the same ``StepClocks`` and ``count``.

The command has each line logged (logger ``engine.progress``, ``engine.logs.say``) with what it
says as fields (``event``, ``step``, ``outcome``, ``elapsed_s``, ``deadline_s``, ``settled``,
``total`` ...): a text log writes the line as it reads here, a JSON log the record. A caller
that wants the lines as strings hands ``write`` instead.

Step words match the outcome: a step that ran but left jobs needing a human reads "done in 30s:
3 of 7 jobs need a human", never "succeeded"; in a plan (``plan=True``) a mutating step sent
nothing, so it reads "planned: would send 7 job(s), nothing sent", never "succeeded" or
"accepted".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.actions.registry import REGISTRY
from engine.ledger import WOULD_KINDS, Disposition, JobBook, Outcome
from engine.logs import say
from engine.report.terminal import approval_summary
from engine.run.approval import ApprovalRequest
from engine.run.result import StepOutcome, StepStatus
from engine.run.step import StepTiming
from engine.runbook import Step, Target
from engine.units import describe_span

# How often a plain-line run says what it is still waiting for; and for at most how many
# projects each time (the rest are counted in one line).
HEARTBEAT_S = 30.0
HEARTBEAT_PROJECTS = 10

logger = logging.getLogger("engine.progress")


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

    @property
    def left(self) -> int:
        """Selected jobs the run has no verdict on yet."""
        return self.selected - self.settled


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


def step_words(outcome: StepOutcome, counts: Counts) -> str:
    """How a step ended, in words that match its project's jobs: "succeeded in 0.1s" only when
    no job needs a human, else "done in 30s: 3 of 7 jobs need a human"; "failed in 2s" and
    "skipped" as they were."""
    took = describe_span(outcome.duration_s)
    if outcome.status is StepStatus.SKIPPED:
        return "skipped"
    if outcome.status is StepStatus.SUCCEEDED and counts.failed:
        return f"done in {took}: {counts.failed} of {counts.selected} jobs need a human"
    return f"{outcome.status.value} in {took}"


def would_send(outcome: StepOutcome, jobs: JobBook) -> int | None:
    """How many jobs a mutating step would have sent in a plan, where it ran only its preview
    (the jobs its preview recorded), or None for a step a plan really ran (selection) or did
    not run."""
    action = REGISTRY.get(outcome.action)
    if outcome.status is not StepStatus.SUCCEEDED or action is None or not action.mutating:
        return None
    return sum(
        1
        for record in jobs
        if any(e.kind in WOULD_KINDS and e.step == outcome.step_id for e in record.events)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningStep:
    """The step a target is in, since when (the display's monotonic clock), and its limit."""

    step: Step
    since: float
    timeout_s: float | None
    resumed: bool

    def elapsed_s(self, now: float) -> float:
        return max(0.0, now - self.since)

    def left_s(self, now: float) -> float | None:
        """What is left of the step's deadline (None: it has none)."""
        return None if self.timeout_s is None else max(0.0, self.timeout_s - self.elapsed_s(now))

    def until(self, wall: datetime) -> datetime | None:
        """When the step's time limit runs out, for a step started at ``wall`` (None: none)."""
        if self.timeout_s is None:
            return None
        return datetime.fromtimestamp(wall.timestamp() + self.timeout_s, UTC)


class StepClocks:
    """Which step each target is in and since when: what both displays time steps by."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._running: dict[Target, RunningStep] = {}

    def started(self, target: Target, step: Step, timing: StepTiming) -> RunningStep:
        running = RunningStep(
            step=step, since=self.now(), timeout_s=timing.timeout_s, resumed=timing.resumed
        )
        self._running[target] = running
        return running

    def finished(self, target: Target) -> RunningStep | None:
        return self._running.pop(target, None)

    def running(self, target: Target) -> RunningStep | None:
        return self._running.get(target)

    def all_running(self) -> list[tuple[Target, RunningStep]]:
        return list(self._running.items())


def deadline_words(running: RunningStep, *, wall: datetime) -> str:
    """A step's time limit as it starts: "timeout 30s, until 15:04:35Z" (or "no timeout"). A
    resumed run gives a step its full timeout again, from the resume (docs/execution.md), and
    says so."""
    until = running.until(wall)
    if running.timeout_s is None or until is None:
        return "no timeout"
    limit = f"{describe_span(running.timeout_s)}, until {until:%H:%M:%SZ}"
    if running.resumed:
        return f"resumed run: the full timeout from now, {limit}"
    return f"timeout {limit}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ProgressLines:
    """Progress lines, each stamped with the UTC time: logged to ``engine.progress`` as
    records with their fields, or handed to ``write`` as text. ``plan``: the lines of
    ``runbook plan``, whose mutating steps send nothing."""

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        quiet: bool,
        plan: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
        clocks: StepClocks | None = None,
        wall: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._write = write
        self._quiet = quiet
        self._plan = plan
        self._heartbeat_s = heartbeat_s
        self._clocks = clocks or StepClocks()
        self._wall = wall
        self._books: Mapping[Target, JobBook] = {}
        self._tick: asyncio.TimerHandle | None = None

    def _say(
        self,
        text: str,
        fields: Mapping[str, object],
        *,
        stamped: bool = True,
        level: int = logging.INFO,
    ) -> None:
        """One line: ``15:04:05Z <text>`` (``stamped``) or the text alone; ``fields`` are the
        record's."""
        line = f"{self._wall():%H:%M:%SZ} {text}" if stamped else text
        if self._write is not None:
            self._write(line)
        else:
            say(logger, level, text, text=line, **fields)

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        self._books = books
        if not self._quiet:
            self._schedule()

    def run_finished(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def note(self, text: str) -> None:
        # -q means quiet: only what warns the human is still said.
        warning = text.startswith("warning")
        if not self._quiet or warning:
            level = logging.WARNING if warning else logging.INFO
            self._say(text, {"event": "note"}, stamped=False, level=level)

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None:
        running = self._clocks.started(target, step, timing)
        if not self._quiet:
            wall = self._wall()
            limit = deadline_words(running, wall=wall)
            self._say(
                f"[{target.label}] {step.id} ({step.action}) started, {limit}",
                {
                    "event": "step_started",
                    "target": target.label,
                    "step": step.id,
                    "action": step.action,
                    "deadline_s": running.timeout_s,
                    "deadline": _until(running, wall),
                    "resumed": running.resumed or None,
                },
            )

    @property
    def shows_plan(self) -> bool:
        return not self._quiet

    def about_to_change(self, request: ApprovalRequest) -> None:
        if not self._quiet:
            self._say(
                approval_summary(request, heading="about to change"),
                {"event": "about_to_change", "step": request.step.id, "jobs": request.total},
                stamped=False,
            )

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        self._clocks.finished(target)
        if self._quiet:
            return
        would = would_send(outcome, jobs) if self._plan else None
        if would is not None:
            # Its outputs are what a run would get ("accepted: 7"): not said of a plan.
            self._say(
                f"[{target.label}] {outcome.step_id} planned: would send {would} job(s), "
                "nothing sent",
                {
                    "event": "step_planned",
                    "target": target.label,
                    "step": outcome.step_id,
                    "action": outcome.action,
                    "would_send": would,
                },
            )
            return
        detail = outcome.message or ", ".join(
            f"{k}: {len(v) if isinstance(v, list) else v}" for k, v in outcome.outputs.items()
        )
        counts = count(jobs)
        words = step_words(outcome, counts)
        self._say(
            f"[{target.label}] {outcome.step_id} {words}" + (f" ({detail})" if detail else ""),
            {
                "event": "step_finished",
                "target": target.label,
                "step": outcome.step_id,
                "action": outcome.action,
                "outcome": outcome.status.value,
                "elapsed_s": round(outcome.duration_s, 3),
                **_fields_of(counts),
            },
        )

    def run_stopped(self, why: str) -> None:
        """Nothing more to say: the executor logged the guard's warning on stderr."""

    def heartbeat(self) -> None:
        """A "still waiting" line for each target in a step that has run for a heartbeat."""
        now = self._clocks.now()
        waiting = [
            (target, running)
            for target, running in self._clocks.all_running()
            if running.elapsed_s(now) >= self._heartbeat_s
        ]
        for target, running in waiting[:HEARTBEAT_PROJECTS]:
            book = self._books.get(target)
            counts = count(book) if book is not None else Counts()
            left = running.left_s(now)
            self._say(
                f"[{target.label}] {running.step.id} {_still_waiting(running, counts.left, now)}",
                {
                    "event": "still_waiting",
                    "target": target.label,
                    "step": running.step.id,
                    "elapsed_s": round(running.elapsed_s(now), 3),
                    "deadline_s": running.timeout_s,
                    "left_s": None if left is None else round(left, 3),
                    **_fields_of(counts),
                },
            )
        if len(waiting) > HEARTBEAT_PROJECTS:
            more = len(waiting) - HEARTBEAT_PROJECTS
            self._say(
                f"... and {more} more project(s) waiting", {"event": "still_waiting", "more": more}
            )

    def _schedule(self) -> None:
        def tick() -> None:
            self.heartbeat()
            self._schedule()

        self._tick = asyncio.get_running_loop().call_later(self._heartbeat_s, tick)


def _fields_of(counts: Counts) -> dict[str, int]:
    """A project's counts as a progress record's fields: ``total`` selected, ``settled`` ..."""
    return {
        "total": counts.selected,
        "settled": counts.settled,
        "retried": counts.retried,
        "recovered": counts.recovered,
        "failed": counts.failed,
        "left": counts.left,
    }


def _until(running: RunningStep, wall: datetime) -> str | None:
    """When a step's time limit runs out, as an ISO 8601 UTC time (None: it has none)."""
    until = running.until(wall)
    return None if until is None else until.isoformat(timespec="seconds").replace("+00:00", "Z")


def _still_waiting(running: RunningStep, jobs_left: int, now: float) -> str:
    """``still waiting: 4 jobs, 12m30s left of the deadline (15m)``."""
    left = running.left_s(now)
    elapsed = describe_span(running.elapsed_s(now))
    if left is None or running.timeout_s is None:
        return f"still waiting: {jobs_left} jobs, {elapsed} so far (no timeout)"
    return (
        f"still waiting: {jobs_left} jobs, {describe_span(left)} left of the deadline "
        f"({describe_span(running.timeout_s)}, {elapsed} so far)"
    )
