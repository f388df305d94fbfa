"""The run's stop: its conditions watched as the run goes, and the gate mutating requests pass.

    StopSignal   one per run: the conditions (``stop_when:`` and ``--stop-file``), what tripped
                 (``Tripped``), who is told, and the steps it cuts short
    StopGate     the transport layer next to the wire: a mutating request leaves only while the
                 signal has not tripped (or for a rollback, ``undoing``); it also counts the
                 error codes of every answer, retried ones included

A file condition is polled every ``FILE_POLL_S`` and checked again right before each mutating
request; the counters are evaluated as their events happen (an answer, a job concluded, a delay
read). The gate sits below the rate limiter and the concurrency caps, so a request that waited
for its turn while the stop tripped is never sent; one already on the wire is awaited and
booked (reconciled if its answer is lost) as always.

A stop is not the error budget (``engine.actions.budget`` counts the run's own failed changes)
and not an interruption (Ctrl-C cancels at once; a stop lets what is in flight finish, skips
what is left, and rolls back where a change was accepted). A tripped signal stays tripped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from engine.api.client import is_mutating
from engine.api.transport import HttpRequest, HttpResponse, Transport, error_fields
from engine.errors import RunStoppedError
from engine.ledger import Disposition, JobRecord
from engine.runbook.model import StopCondition, StopKind

logger = logging.getLogger(__name__)

FILE_POLL_S = 0.5
# The dispositions a ``failed_again`` condition counts: the retry did not hold (failed again,
# or came up and broke again: flapping). Not ``failed``: a job this run never retried.
FAILED_AGAIN = frozenset({Disposition.FAILED_AGAIN, Disposition.FLAPPING})

# Set while a rollback runs: its mutating requests (resuming what the run paused) undo the
# run's changes, and pass the gate after a trip.
_UNDOING: contextvars.ContextVar[bool] = contextvars.ContextVar("undoing", default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tripped:
    """Which condition stopped the run, when, and what it saw (``stopped_by`` in the report).

    ``t`` is the event loop's clock at the trip (not in the report): what a test compares the
    emulator's arrival times with. ``in_flight`` counts the mutating requests on the wire then:
    the only ones that may still arrive after it.
    """

    condition: str
    location: str
    tripped_at: str  # ISO 8601, UTC
    detail: str
    in_flight: int = 0
    t: float = 0.0

    @property
    def reason(self) -> str:
        """How a job or step the stop held back says why."""
        return f"stopped by {self.condition} ({self.location}): {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "location": self.location,
            "tripped_at": self.tripped_at,
            "detail": self.detail,
            "in_flight": self.in_flight,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Tripped:
        return cls(
            condition=str(raw["condition"]),
            location=str(raw["location"]),
            tripped_at=str(raw["tripped_at"]),
            detail=str(raw["detail"]),
            in_flight=int(raw.get("in_flight", 0)),
        )


class StopSignal:
    """The stop conditions of one run, and whether (and by what) it has tripped."""

    def __init__(self, conditions: Iterable[StopCondition], *, poll_s: float = FILE_POLL_S) -> None:
        self.conditions = tuple(conditions)
        self.tripped: Tripped | None = None
        self.in_flight = 0  # mutating requests on the wire now (StopGate counts them)
        self._poll_s = poll_s
        self._files = [c for c in self.conditions if c.kind is StopKind.FILE]
        self._codes: dict[str, list[StopCondition]] = {}
        for condition in self.conditions:
            if condition.kind is StopKind.ERROR_CODE and condition.error_code:
                self._codes.setdefault(condition.error_code, []).append(condition)
        self._jobs = [
            c for c in self.conditions if c.kind in {StopKind.FAILED_AGAIN, StopKind.LAGGING}
        ]
        self._answers: Counter[str] = Counter()
        # condition -> the jobs (target index, job id) it counts now
        self._counted: dict[StopCondition, set[tuple[int, str]]] = {c: set() for c in self._jobs}
        self._listeners: list[Callable[[Tripped], None]] = []
        self._scopes: set[CutShort] = set()

    @property
    def counts_codes(self) -> bool:
        return bool(self._codes)

    # ------------------------------------------------------------------ what is watched

    def check(self) -> Tripped | None:
        """Look for the stop files now; what tripped, or None."""
        if self.tripped is None:
            for condition in self._files:
                if condition.path is not None and os.path.lexists(condition.path):
                    self._trip(condition, f"{condition.path} exists")
                    break
        return self.tripped

    def answered(self, error_code: str | None) -> None:
        """The API answered with ``error_code`` (every answer the client sees counts)."""
        if not error_code or error_code not in self._codes:
            return
        self._answers[error_code] += 1
        seen = self._answers[error_code]
        for condition in self._codes[error_code]:
            if self.tripped is None and seen >= condition.threshold:
                self._trip(condition, f"{error_code} answered {seen} time(s)")

    def watcher(self, index: int) -> Callable[[JobRecord], None] | None:
        """What target ``index``'s JobBook tells of each job concluded or delay read."""
        if not self._jobs:
            return None

        def watch(record: JobRecord) -> None:
            key = (index, record.job_id)
            for condition in self._jobs:
                counted = self._counted[condition]
                if _counts(condition, record):
                    counted.add(key)
                else:
                    counted.discard(key)
                if self.tripped is None and len(counted) > condition.threshold:
                    self._trip(condition, _job_detail(condition, len(counted)))

        return watch

    # ------------------------------------------------------------------ tripping

    def restore(self, tripped: Tripped) -> None:
        """A resumed run whose journal says it had stopped: it is stopped still."""
        if self.tripped is None:
            self.tripped = tripped

    def on_trip(self, listener: Callable[[Tripped], None]) -> None:
        """Call ``listener`` once, when the signal trips (at once if it has)."""
        if self.tripped is not None:
            listener(self.tripped)
        else:
            self._listeners.append(listener)

    def _trip(self, condition: StopCondition, detail: str) -> None:
        loop_time = _loop_time()
        self.tripped = Tripped(
            condition=condition.written,
            location=condition.where,
            tripped_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            detail=detail,
            in_flight=self.in_flight,
            t=loop_time,
        )
        logger.warning("%s", self.tripped.reason)
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener(self.tripped)
        for scope in list(self._scopes):
            scope.cut()

    # ------------------------------------------------------------------ the gate

    def may_send(self) -> bool:
        """Whether a mutating request may leave now: not stopped, or undoing (a rollback)."""
        return self.check() is None or _UNDOING.get()

    @staticmethod
    @contextlib.contextmanager
    def undoing() -> Iterator[None]:
        """A rollback's scope: its mutating requests pass the gate after a trip."""
        token = _UNDOING.set(True)
        try:
            yield
        finally:
            _UNDOING.reset(token)

    def cut_short(self) -> CutShort:
        """A scope the trip cancels (a verify polling, an approval waiting); ``was_cut`` says so."""
        return CutShort(self)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Poll the stop files while the run goes on (the loop's timer, not a task)."""
        if not self._files:
            yield
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def poll() -> None:
            nonlocal handle
            if self.check() is None:
                handle = loop.call_later(self._poll_s, poll)

        poll()
        try:
            yield
        finally:
            if handle is not None:
                handle.cancel()


class CutShort:
    """Cancels the task inside it when the signal trips; the cancellation ends at its edge.

    The cancel is scheduled (``call_soon``), so it lands while the task waits inside the
    scope, never after the task has left it. A cancellation from elsewhere (Ctrl-C) passes.
    """

    def __init__(self, signal: StopSignal) -> None:
        self._signal = signal
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = False
        self.was_cut = False

    async def __aenter__(self) -> CutShort:
        self._task = asyncio.current_task()
        self._signal._scopes.add(self)
        return self

    def cut(self) -> None:
        asyncio.get_running_loop().call_soon(self._cancel)

    def _cancel(self) -> None:
        if self in self._signal._scopes and self._task is not None and not self._cancelling:
            self._cancelling = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._signal._scopes.discard(self)
        ours = self._cancelling and exc_type is asyncio.CancelledError and self._task is not None
        # A cancellation from elsewhere as well (Ctrl-C) is left to go on.
        if ours and self._task is not None and self._task.uncancel() == 0:
            self.was_cut = True
            return True
        return False


class StopGate:
    """Lets a mutating request onto the wire only while the run may send one (``may_send``);
    counts every answer's error code for the signal. Sits just above the wire."""

    def __init__(self, inner: Transport, signal: StopSignal) -> None:
        self._inner = inner
        self._signal = signal

    async def send(self, request: HttpRequest) -> HttpResponse:
        signal = self._signal
        if is_mutating(request.url):
            if not signal.may_send():
                assert signal.tripped is not None
                raise RunStoppedError(f"not sent: {signal.tripped.reason}")
            signal.in_flight += 1
            try:
                response = await self._inner.send(request)
            finally:
                signal.in_flight -= 1
        else:
            response = await self._inner.send(request)
        # DRS.M01504 comes as a 202 with an error body; a plain 2xx carries no error code.
        if signal.counts_codes and (not response.ok or response.status == 202):
            signal.answered(error_fields(response)[0])
        return response


def _counts(condition: StopCondition, record: JobRecord) -> bool:
    if condition.kind is StopKind.FAILED_AGAIN:
        return record.disposition in FAILED_AGAIN
    above = condition.above_s or 0.0
    return record.delay_s is not None and record.delay_s > above


def _job_detail(condition: StopCondition, jobs: int) -> str:
    if condition.kind is StopKind.FAILED_AGAIN:
        return f"{jobs} job(s) failed again, more than {condition.threshold}"
    return f"{jobs} job(s) more than {condition.above_s:g}s behind, more than {condition.threshold}"


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # tripped outside a loop (a unit test's direct call)
        return 0.0
