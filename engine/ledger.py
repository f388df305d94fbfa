"""The ledger of a run: what became of every job, and what each disposition means.

    Disposition     where a job ended; its meaning (outcome, summary column, verdict, urgency)
                    is data here, and every counter, renderer and exit code derives from it
    EventKind       one entry of a job's timeline; MutationEvents groups one mutation's kinds
    JobEvent        one timeline entry
    JobRecord       everything a run learned about one job
    JobBook         the jobs of one target, handing their changes to the journal

Nothing here talks to the API or knows the runbook: the actions write the ledger, the run keeps
it, the journal makes it durable and the report reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NotRequired, Protocol, TypedDict


class Outcome(StrEnum):
    """What a disposition says about the job, for the exit code and for a human.

    ``PENDING`` is intermediate: a job still holding it when the run ends was never finished
    (a read-only run's selected jobs are its success, see ``Disposition.is_good``).
    """

    OK = "ok"
    LEFT_ALONE = "left_alone"
    PENDING = "pending"
    NEEDS_A_HUMAN = "needs_a_human"


class Column(StrEnum):
    """The summary table's columns (terminal, Markdown, HTML), in their order; the values are
    the headings. ``SELECTED`` counts every job the run selected, whatever became of it.
    ``FLAPPING`` and ``LAGGING`` are shown only in a table of a run that has such a job
    (``SHOWN_WHEN_COUNTED``): only a verify step's ``max_delay`` / ``stable_for`` make them."""

    SELECTED = "selected"
    RECOVERED = "recovered"
    FAILED_AGAIN = "failed again"
    FLAPPING = "flapping"
    REJECTED = "rejected"
    TIMED_OUT = "timed out"
    LAGGING = "lagging"
    OTHER = "other"
    SKIPPED = "skipped"


# The columns a table leaves out when no job of the run is counted in them.
SHOWN_WHEN_COUNTED: frozenset[Column] = frozenset({Column.FLAPPING, Column.LAGGING})


class Disposition(StrEnum):
    """Where a job ended; values are the report strings; what each means is ``_MEANINGS``.

    ``SELECTED`` and ``RETRY_ACCEPTED`` are intermediate: a job still holding one of them when the
    run ends was never verified, and the run does not count it as healthy. ``PAUSED`` is where a
    drill leaves a job until a resume and a verify move it on: a run that ends with a job still
    paused by it is not healthy either.
    """

    SELECTED = "selected"
    SKIPPED = "skipped"
    RETRY_ACCEPTED = "retry_accepted"
    RETRY_REJECTED = "retry_rejected"
    RETRY_UNKNOWN = "retry_unknown"
    RECOVERED = "recovered"
    HEALTHY = "healthy"
    RECOVERED_BY_SERVICE = "recovered_by_service"
    FAILED_AGAIN = "failed_again"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LAGGING = "lagging"
    FLAPPING = "flapping"
    NOT_FOUND = "not_found"
    NOT_RETRIED = "not_retried"
    DRIFTED = "drifted"
    NOT_VERIFIED = "not_verified"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    PAUSE_REJECTED = "pause_rejected"
    PAUSE_UNKNOWN = "pause_unknown"

    # What each member means, set from ``_MEANINGS`` below once the members exist: plain
    # attributes, as they are read for every job of every report (a property per read costs
    # as much as the rest of counting).
    outcome: Outcome
    column: Column | None  # the summary column that counts it (besides "selected")
    verdict: bool  # the run reached a verdict on the job (not left undone or waiting)
    needs_a_human: bool

    def is_good(self, *, mutating: bool = True) -> bool:
        """Whether a job ending here lets the run exit 0. A read-only run (no mutating step)
        leaves its jobs selected, and that is its success."""
        if self.outcome is Outcome.PENDING:
            return not mutating and self is Disposition.SELECTED
        return not self.needs_a_human


@dataclass(frozen=True, slots=True, kw_only=True)
class Meaning:
    """What one disposition means; ``urgency`` orders the jobs that need a human (0 first)."""

    outcome: Outcome
    column: Column | None
    verdict: bool = False
    urgency: int | None = None


def _needs(column: Column, urgency: int, *, verdict: bool = True) -> Meaning:
    return Meaning(outcome=Outcome.NEEDS_A_HUMAN, column=column, verdict=verdict, urgency=urgency)


_D, _C = Disposition, Column
_MEANINGS: Mapping[Disposition, Meaning] = {
    _D.SELECTED: Meaning(outcome=Outcome.PENDING, column=None),
    _D.SKIPPED: Meaning(outcome=Outcome.LEFT_ALONE, column=_C.SKIPPED),
    _D.RETRY_ACCEPTED: Meaning(outcome=Outcome.PENDING, column=None),
    _D.RETRY_REJECTED: _needs(_C.REJECTED, 3),
    _D.RETRY_UNKNOWN: _needs(_C.OTHER, 4),
    _D.RECOVERED: Meaning(outcome=Outcome.OK, column=_C.RECOVERED, verdict=True),
    _D.HEALTHY: Meaning(outcome=Outcome.OK, column=_C.RECOVERED, verdict=True),
    # Selected failed, and brought back by the service's own retry while the selection let it
    # settle: nothing was sent for it.
    _D.RECOVERED_BY_SERVICE: Meaning(outcome=Outcome.OK, column=_C.RECOVERED, verdict=True),
    _D.FAILED_AGAIN: _needs(_C.FAILED_AGAIN, 0),
    _D.FAILED: _needs(_C.FAILED_AGAIN, 1),
    # Healthy, then not, and not stable again by the deadline: as bad as failing again.
    _D.FLAPPING: _needs(_C.FLAPPING, 2),
    # Running at the deadline, but further behind than max_delay: it did not converge in time.
    _D.LAGGING: _needs(_C.LAGGING, 5),
    _D.TIMED_OUT: _needs(_C.TIMED_OUT, 6),
    _D.NOT_FOUND: _needs(_C.OTHER, 7),
    # The run did not get to these (a failed step, the error budget, an interruption) or left
    # them waiting (a drill's pause): no verdict on the job itself.
    _D.NOT_RETRIED: _needs(_C.OTHER, 8, verdict=False),
    # Applying a plan file: the job changed since the plan (or is not in it), so it was not
    # sent; a human plans again.
    _D.DRIFTED: _needs(_C.OTHER, 8, verdict=False),
    _D.NOT_VERIFIED: _needs(_C.OTHER, 9, verdict=False),
    _D.CANCELLED: _needs(_C.OTHER, 10, verdict=False),
    _D.PAUSED: _needs(_C.OTHER, 11, verdict=False),
    _D.PAUSE_REJECTED: _needs(_C.OTHER, 12),
    _D.PAUSE_UNKNOWN: _needs(_C.OTHER, 13),
}

for _disposition, _meaning in _MEANINGS.items():
    _disposition.outcome = _meaning.outcome
    _disposition.column = _meaning.column
    _disposition.verdict = _meaning.verdict
    _disposition.needs_a_human = _meaning.outcome is Outcome.NEEDS_A_HUMAN
assert set(_MEANINGS) == set(Disposition), "every disposition has a meaning"

# A job that ends here came back to health after what this run did (a drill's recovered jobs).
RECOVERED: frozenset[Disposition] = frozenset({Disposition.RECOVERED, Disposition.HEALTHY})

# The dispositions that need a human, most urgent first (the order reports list them in).
NEEDS_A_HUMAN: tuple[Disposition, ...] = tuple(
    sorted((d for d in Disposition if d.needs_a_human), key=lambda d: _MEANINGS[d].urgency or 0)
)


class EventKind(StrEnum):
    SELECTED = "selected"
    SKIPPED = "skipped"
    # The selection left a failed job to the service's own retries for a while (settle).
    SETTLING = "settling"
    RECOVERED_BY_SERVICE = "recovered_by_service"
    WOULD_RETRY = "would_retry"
    RETRY_SENT = "retry_sent"
    WITHHELD = "withheld"
    DRIFTED = "drifted"
    RETRY_ACKNOWLEDGED = "retry_acknowledged"
    RETRY_REJECTED = "retry_rejected"
    RETRY_RECONCILED = "retry_reconciled"
    RETRY_UNKNOWN = "retry_unknown"
    WOULD_PAUSE = "would_pause"
    PAUSE_SENT = "pause_sent"
    PAUSE_ACKNOWLEDGED = "pause_acknowledged"
    PAUSE_REJECTED = "pause_rejected"
    PAUSE_RECONCILED = "pause_reconciled"
    PAUSE_UNKNOWN = "pause_unknown"
    STATUS_OBSERVED = "status_observed"
    RECOVERED = "recovered"
    FAILED_AGAIN = "failed_again"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    # Replication delay crossing a verify step's max_delay, either way (the delay in detail).
    FELL_BEHIND = "fell_behind"
    CAUGHT_UP = "caught_up"
    LAGGING = "lagging"
    FLAPPING = "flapping"
    NOT_FOUND = "not_found"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True, slots=True, kw_only=True)
class MutationEvents:
    """The event kinds (and the dispositions) of one mutation a run can make to a job.

    ``verb`` is how reports word it ("retry sent, no answer recorded"); a job whose last event is
    ``sent`` when the run ends was sent and never answered, so it ends ``unanswered``.
    """

    verb: str
    would: EventKind  # in a plan
    sent: EventKind
    acknowledged: EventKind
    rejected: EventKind
    reconciled: EventKind
    unknown: EventKind
    refused: Disposition  # the disposition of a job the service refused it for
    unanswered: Disposition

    def last(self, record: JobRecord) -> EventKind | None:
        """The job's last event of this mutation in this run: a job is never sent twice
        blindly."""
        kinds = {self.sent, self.acknowledged, self.rejected, self.reconciled, self.unknown}
        for event in reversed(record.events):
            if event.kind in kinds:
                return event.kind
        return None


RETRY_EVENTS = MutationEvents(
    verb="retry",
    would=EventKind.WOULD_RETRY,
    sent=EventKind.RETRY_SENT,
    acknowledged=EventKind.RETRY_ACKNOWLEDGED,
    rejected=EventKind.RETRY_REJECTED,
    reconciled=EventKind.RETRY_RECONCILED,
    unknown=EventKind.RETRY_UNKNOWN,
    refused=Disposition.RETRY_REJECTED,
    unanswered=Disposition.RETRY_UNKNOWN,
)
PAUSE_EVENTS = MutationEvents(
    verb="pause",
    would=EventKind.WOULD_PAUSE,
    sent=EventKind.PAUSE_SENT,
    acknowledged=EventKind.PAUSE_ACKNOWLEDGED,
    rejected=EventKind.PAUSE_REJECTED,
    reconciled=EventKind.PAUSE_RECONCILED,
    unknown=EventKind.PAUSE_UNKNOWN,
    refused=Disposition.PAUSE_REJECTED,
    unanswered=Disposition.PAUSE_UNKNOWN,
)
# Every mutation a run can make; what is said of "a mutation" is said of each of these.
MUTATIONS: tuple[MutationEvents, ...] = (RETRY_EVENTS, PAUSE_EVENTS)
# A mutating request left with the job in it / a plan says it would.
SENT_KINDS = frozenset(m.sent for m in MUTATIONS)
WOULD_KINDS = frozenset(m.would for m in MUTATIONS)
REJECTED_KINDS = frozenset(m.rejected for m in MUTATIONS)
# The service took the change (acknowledged, or status showed it), or may have (no answer).
CHANGED_KINDS = frozenset(k for m in MUTATIONS for k in (m.acknowledged, m.reconciled, m.unknown))


class EventJson(TypedDict):
    """A ``JobEvent`` as report.json and the journal spell it: unset fields are left out."""

    t: float
    kind: str
    step: str
    status: NotRequired[str]
    error_code: NotRequired[str]
    detail: NotRequired[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One entry of a job's timeline; ``t`` is seconds since the run started."""

    t: float
    kind: EventKind
    step: str
    status: str | None = None
    error_code: str | None = None
    detail: str | None = None

    def to_json(self) -> EventJson:
        """The event as report.json and the journal spell it, unset fields left out.

        ``_value_`` (the enum's documented attribute) rather than ``.value``, a property that
        costs 10x as much in Python 3.11; this runs for every event of every report."""
        out: EventJson = {"t": self.t, "kind": self.kind._value_, "step": self.step}
        if self.status is not None:
            out["status"] = self.status
        if self.error_code is not None:
            out["error_code"] = self.error_code
        if self.detail is not None:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobEvent:
        """An event as ``to_json`` wrote it (the journal reads its events back with this)."""
        return cls(
            t=raw["t"],
            kind=EventKind(raw["kind"]),
            step=raw["step"],
            status=raw.get("status"),
            error_code=raw.get("error_code"),
            detail=raw.get("detail"),
        )


# JobEvent's slots, set through their descriptors by ``_new_event``.
_EVENT_SLOTS = ("t", "kind", "step", "status", "error_code", "detail")
_SET_T, _SET_KIND, _SET_STEP, _SET_STATUS, _SET_ERROR_CODE, _SET_DETAIL = (
    JobEvent.__dict__[name].__set__ for name in _EVENT_SLOTS
)


def _new_event(
    t: float,
    kind: EventKind,
    step: str,
    status: str | None,
    error_code: str | None,
    detail: str | None,
) -> JobEvent:
    """``JobEvent(t=t, kind=kind, ...)`` for ``JobBook.record``, which makes one per change of
    every job (200,000 in a 100,000-job run). The dataclass's ``__init__`` gets round
    ``frozen=True`` with an ``object.__setattr__`` call per field; setting each slot through its
    descriptor does the same 3.5x faster (0.65 vs 2.4 us). The event is the same frozen object:
    assigning to it later still raises. A test holds this to the constructor."""
    event = object.__new__(JobEvent)
    _SET_T(event, t)
    _SET_KIND(event, kind)
    _SET_STEP(event, step)
    _SET_STATUS(event, status)
    _SET_ERROR_CODE(event, error_code)
    _SET_DETAIL(event, detail)
    return event


@dataclass(slots=True, kw_only=True)
class JobRecord:
    """Everything the run learned about one job; mutable while the run goes on."""

    job_id: str
    name: str
    status_at_selection: str
    engine_type: str | None = None
    db_use_type: str | None = None
    parent_id: str | None = None
    disposition: Disposition = Disposition.SELECTED
    reason: str | None = None
    error_code: str | None = None
    last_status: str | None = None
    retry_acknowledged_at: float | None = None
    # When a pause of this run took effect (a drill's fault injection); the drill's recovery
    # time runs from here, the retry's from retry_acknowledged_at.
    paused_at: float | None = None
    time_to_recover_s: float | None = None
    # Replication delay (batch-progress), seconds: the last one a verify step read, and the
    # largest; None until one was read (only a verify step with max_delay reads them).
    delay_s: float | None = None
    delay_max_s: float | None = None
    # job_action.available_actions when the selection saw it (in memory only: a plan file
    # records it for the review).
    offered: tuple[str, ...] = ()
    events: list[JobEvent] = field(default_factory=list)

    @property
    def pause_to_recovery_s(self) -> float | None:
        """Seconds from a pause of this run to the recovery after its resume (a drill's outage
        end to end), or None: not paused, not resumed, or not recovered since."""
        paused_at, resumed_at = self.paused_at, self.retry_acknowledged_at
        if paused_at is None or resumed_at is None or self.time_to_recover_s is None:
            return None
        if paused_at > resumed_at:
            return None  # paused after the retry this recovery follows: not the drill's outage
        return round(resumed_at + self.time_to_recover_s - paused_at, 3)

    def fork(self) -> JobRecord:
        """A copy to change without touching this record (a plan's scratch book); spelt out,
        as it is 2x cheaper than ``dataclasses.replace`` and runs for every selected job."""
        return JobRecord(
            job_id=self.job_id,
            name=self.name,
            status_at_selection=self.status_at_selection,
            engine_type=self.engine_type,
            db_use_type=self.db_use_type,
            parent_id=self.parent_id,
            disposition=self.disposition,
            reason=self.reason,
            error_code=self.error_code,
            last_status=self.last_status,
            retry_acknowledged_at=self.retry_acknowledged_at,
            paused_at=self.paused_at,
            time_to_recover_s=self.time_to_recover_s,
            delay_s=self.delay_s,
            delay_max_s=self.delay_max_s,
            offered=self.offered,
            events=list(self.events),
        )


class JobJournal(Protocol):
    """Where a book's changes go to survive the process (``engine.run.journal``)."""

    def jobs_changed(self, records: Sequence[JobRecord]) -> None: ...

    async def sync(self) -> None:
        """Return once everything handed over so far survives the machine (fsync)."""


class JobBook:
    """The jobs of one target, in the order they were first seen.

    Every change to a record goes with an event (or is its first sight), so the book knows
    which records changed since its last ``checkpoint`` and hands only those to its journal.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        journal: JobJournal | None = None,
        watch: Callable[[JobRecord], None] | None = None,
    ) -> None:
        """``watch`` is told of each record given a disposition (``conclude``) or a delay
        (``read_delay``), and of each restored one: the run's stop conditions count them."""
        self._clock = clock
        self._records: dict[str, JobRecord] = {}
        self._changed: dict[str, JobRecord] = {}
        self._journal = journal
        self._watch = watch

    def now(self) -> float:
        return self._clock()

    def add(self, record: JobRecord) -> JobRecord:
        kept = self._records.setdefault(record.job_id, record)
        if kept is record:
            self._changed[record.job_id] = record
        return kept

    def restore(self, records: Sequence[JobRecord]) -> None:
        """Records read back from a journal: known, and not changed since."""
        for record in records:
            self._records[record.job_id] = record
            if self._watch is not None:
                self._watch(record)

    def checkpoint(self) -> None:
        """Hand the records changed since the last checkpoint to the journal (written at once,
        so they survive the process; see ``commit`` for the machine)."""
        if self._journal is None or not self._changed:
            self._changed.clear()
            return
        changed = list(self._changed.values())
        self._changed.clear()
        self._journal.jobs_changed(changed)

    async def commit(self) -> None:
        """``checkpoint``, then wait until the journal has it on disk: what changed must survive
        a crash before the run goes on (before a mutating request is sent, and once its outcome
        is recorded)."""
        self.checkpoint()
        if self._journal is not None:
            await self._journal.sync()

    def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def ensure(self, job_id: str) -> JobRecord:
        """The record of a job named directly by a runbook, created if selection never saw it."""
        record = self._records.get(job_id)
        if record is None:
            record = self.add(JobRecord(job_id=job_id, name="", status_at_selection=""))
        return record

    def record(
        self,
        job_id: str,
        kind: EventKind,
        *,
        step: str,
        status: str | None = None,
        error_code: str | None = None,
        detail: str | None = None,
    ) -> JobRecord:
        record = self._records.get(job_id) or self.ensure(job_id)
        record.events.append(
            _new_event(round(self._clock(), 3), kind, step, status, error_code, detail)
        )
        if status:
            record.last_status = status
        self._changed[job_id] = record
        return record

    def observe(self, job_id: str, status: str, *, step: str) -> JobRecord:
        """A status seen by a poll: on the timeline when it differs from the last one seen."""
        record = self._records.get(job_id) or self.ensure(job_id)
        if status != record.last_status:
            record = self.record(job_id, EventKind.STATUS_OBSERVED, step=step, status=status)
        return record

    def conclude(
        self,
        job_id: str,
        disposition: Disposition,
        kind: EventKind,
        *,
        step: str,
        reason: str | None = None,
        status: str | None = None,
    ) -> JobRecord:
        """Give a job its disposition and reason, with the event that says so (the reason is
        its detail)."""
        record = self.record(job_id, kind, step=step, status=status, detail=reason)
        record.disposition, record.reason = disposition, reason
        if self._watch is not None:
            self._watch(record)
        return record

    def read_delay(self, record: JobRecord, delay_s: float) -> None:
        """A replication delay read for the job (batch-progress): its last and its largest."""
        record.delay_s = delay_s
        if record.delay_max_s is None or delay_s > record.delay_max_s:
            record.delay_max_s = delay_s
        if self._watch is not None:
            self._watch(record)

    def selected(self) -> list[JobRecord]:
        """The jobs selected and not yet acted on (or finished with)."""
        return [job for job in self._records.values() if job.disposition is Disposition.SELECTED]

    def left_alone(self) -> list[JobRecord]:
        return [job for job in self._records.values() if job.disposition is Disposition.SKIPPED]

    def __iter__(self) -> Iterator[JobRecord]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)
