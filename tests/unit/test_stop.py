"""The run's stop signal: each condition, the gate at the wire, and the scopes a trip cuts short."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from engine.api.transport import HttpRequest, HttpResponse
from engine.errors import Location, RunStoppedError
from engine.ledger import Disposition, JobRecord
from engine.run.stop import StopGate, StopSignal, Tripped
from engine.runbook import StopCondition, StopKind

HERE = Location(path="rb.yaml", line=4, col=5)
RETRY_URL = "http://127.0.0.1:1/v3/p/jobs/batch-retry-task"
PAUSE_URL = "http://127.0.0.1:1/v3/p/jobs/batch-pause-task"
STATUS_URL = "http://127.0.0.1:1/v3/p/jobs/batch-status"


def _code(code: str, count: int) -> StopCondition:
    return StopCondition(
        kind=StopKind.ERROR_CODE,
        written=f"error_code: {code}, count: {count}",
        location=HERE,
        error_code=code,
        threshold=count,
    )


def _jobs(kind: StopKind, more_than: int, above_s: float | None = None) -> StopCondition:
    return StopCondition(
        kind=kind,
        written=f"{kind}: {more_than}",
        location=HERE,
        threshold=more_than,
        above_s=above_s,
    )


def untripped(signal: StopSignal) -> bool:
    """Whether the signal has not tripped (a call: mypy would keep the attribute narrowed)."""
    return signal.tripped is None


def _record(job_id: str, disposition: Disposition, delay_s: float | None = None) -> JobRecord:
    return JobRecord(
        job_id=job_id, name="", status_at_selection="", disposition=disposition, delay_s=delay_s
    )


def test_a_stop_file_trips_once_it_exists_and_the_signal_stays_tripped(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    signal = StopSignal([StopCondition.stop_file(stop)])
    assert signal.check() is None
    assert signal.may_send()
    stop.touch()
    tripped = signal.check()
    assert tripped is not None
    assert tripped.condition == f"file: {stop}"
    assert tripped.location == "--stop-file"
    assert tripped.detail == f"{stop} exists"
    stop.unlink()
    assert signal.check() is tripped  # a stop is not undone by removing the file
    assert not signal.may_send()


def test_a_stop_file_is_relative_to_the_working_directory_and_expands_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert StopCondition.stop_file("STOP").path == str(tmp_path / "STOP")
    assert StopCondition.stop_file("~/STOP").path == str(tmp_path / "home" / "STOP")


def test_an_error_code_trips_at_its_count_and_other_codes_do_not_count() -> None:
    signal = StopSignal([_code("DRS.M01504", 3)])
    for code in ("DRS.M01504", "DRS.M01503", None, "DRS.M01504", "APIGW.0308"):
        signal.answered(code)
    assert untripped(signal)
    signal.answered("DRS.M01504")
    assert signal.tripped is not None
    assert signal.tripped.detail == "DRS.M01504 answered 3 time(s)"
    assert signal.tripped.location == "stop_when at rb.yaml:4:5"


def test_failed_again_counts_distinct_jobs_across_targets_flapping_too_and_trips_above_n() -> None:
    signal = StopSignal([_jobs(StopKind.FAILED_AGAIN, 2)])
    first, second = signal.watcher(0), signal.watcher(1)
    assert first is not None
    assert second is not None
    first(_record("a", Disposition.FAILED_AGAIN))
    first(_record("a", Disposition.FAILED_AGAIN))  # the same job again: still one
    first(_record("b", Disposition.FAILED))  # never retried by this run: not counted
    second(_record("a", Disposition.FLAPPING))  # another target's job "a"
    assert untripped(signal)
    first(_record("b", Disposition.RECOVERED))
    second(_record("c", Disposition.FAILED_AGAIN))
    assert signal.tripped is not None
    assert signal.tripped.detail == "3 job(s) failed again, more than 2"


def test_a_job_that_recovers_later_no_longer_counts_as_failed_again() -> None:
    signal = StopSignal([_jobs(StopKind.FAILED_AGAIN, 1)])
    watch = signal.watcher(0)
    assert watch is not None
    watch(_record("a", Disposition.FAILED_AGAIN))
    watch(_record("a", Disposition.RECOVERED))
    watch(_record("b", Disposition.FAILED_AGAIN))
    assert untripped(signal)


def test_lagging_counts_the_jobs_whose_last_delay_is_above_the_limit() -> None:
    signal = StopSignal([_jobs(StopKind.LAGGING, 1, above_s=60.0)])
    watch = signal.watcher(0)
    assert watch is not None
    watch(_record("a", Disposition.SELECTED, delay_s=61.0))
    watch(_record("b", Disposition.SELECTED, delay_s=60.0))  # not above
    watch(_record("a", Disposition.SELECTED, delay_s=5.0))  # caught up: no longer counted
    watch(_record("c", Disposition.SELECTED, delay_s=300.0))
    assert untripped(signal)
    watch(_record("a", Disposition.SELECTED, delay_s=90.0))
    assert signal.tripped is not None
    assert signal.tripped.detail == "2 job(s) more than 60s behind, more than 1"


def test_a_book_tells_the_signal_of_restored_and_concluded_jobs_and_delays_read() -> None:
    from engine.ledger import EventKind, JobBook

    signal = StopSignal([_jobs(StopKind.FAILED_AGAIN, 1), _jobs(StopKind.LAGGING, 0, 10.0)])
    book = JobBook(lambda: 0.0, watch=signal.watcher(0))
    book.restore([_record("a", Disposition.FAILED_AGAIN)])
    book.conclude("b", Disposition.FAILED_AGAIN, EventKind.FAILED_AGAIN, step="verify")
    assert signal.tripped is not None
    assert "failed again" in signal.tripped.detail
    lagging = StopSignal([_jobs(StopKind.LAGGING, 0, 10.0)])
    book = JobBook(lambda: 0.0, watch=lagging.watcher(0))
    record = book.ensure("c")
    book.read_delay(record, 11.0)
    assert (record.delay_s, record.delay_max_s) == (11.0, 11.0)
    assert lagging.tripped is not None


def test_listeners_hear_of_the_trip_once_and_a_late_one_at_once() -> None:
    signal = StopSignal([_code("X.1", 1)])
    heard: list[Tripped] = []
    signal.on_trip(heard.append)
    signal.answered("X.1")
    signal.answered("X.1")
    assert len(heard) == 1
    signal.on_trip(heard.append)
    assert heard == [heard[0], heard[0]]


def test_a_restored_trip_stops_at_once_without_telling_anyone_again() -> None:
    signal = StopSignal([])
    heard: list[Tripped] = []
    signal.on_trip(heard.append)
    before = Tripped(condition="file: STOP", location="--stop-file", tripped_at="t", detail="d")
    signal.restore(before)
    assert Tripped.from_json(before.to_json()) == before
    assert not signal.may_send()
    assert signal.tripped is before
    assert heard == []


class _Wire:
    """A transport that answers every request with ``answer`` and remembers the URLs."""

    def __init__(self, answer: HttpResponse) -> None:
        self.answer = answer
        self.sent: list[str] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request.url)
        return self.answer


def _request(url: str) -> HttpRequest:
    return HttpRequest(method="POST", url=url, headers={}, body=b"{}")


async def test_the_gate_holds_back_mutating_requests_after_the_trip_and_lets_reads_through() -> (
    None
):
    signal = StopSignal([_code("DRS.M01504", 1)])
    busy = orjson.dumps({"error_code": "DRS.M01504", "error_msg": "another operation"})
    wire = _Wire(HttpResponse(status=202, body=busy))
    gate = StopGate(wire, signal)
    await gate.send(_request(RETRY_URL))  # the busy answer trips the stop
    assert signal.tripped is not None
    with pytest.raises(RunStoppedError, match=r"not sent: stopped by error_code: DRS\.M01504"):
        await gate.send(_request(PAUSE_URL))
    with pytest.raises(RunStoppedError):
        await gate.send(_request(RETRY_URL))
    await gate.send(_request(STATUS_URL))  # reads go on: they reconcile
    with StopSignal.undoing():
        await gate.send(_request(RETRY_URL))  # a rollback undoes: it may send
    assert wire.sent == [RETRY_URL, STATUS_URL, RETRY_URL]
    assert signal.in_flight == 0


async def test_the_trip_records_the_mutating_requests_then_in_flight(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    signal = StopSignal([StopCondition.stop_file(stop)])
    release = asyncio.Event()

    class Slow:
        async def send(self, request: HttpRequest) -> HttpResponse:
            await release.wait()
            return HttpResponse(status=200, body=b'{"results": []}')

    gate = StopGate(Slow(), signal)
    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        first = group.create_task(gate.send(_request(RETRY_URL)))
        second = group.create_task(gate.send(_request(PAUSE_URL)))
        await asyncio.sleep(0)
        assert signal.in_flight == 2
        stop.touch()
        tripped = signal.check()
        release.set()
    assert tripped is not None
    assert tripped.in_flight == 2
    assert first.result().status == second.result().status == 200  # awaited, not dropped


async def test_the_file_is_polled_while_the_run_watches(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    signal = StopSignal([StopCondition.stop_file(stop)], poll_s=0.01)
    heard = asyncio.Event()
    signal.on_trip(lambda _: heard.set())
    with signal.watching():
        await asyncio.sleep(0.05)
        assert untripped(signal)
        stop.touch()  # nothing else looks at the file here: only the poll can see it
        async with asyncio.timeout(5):
            await heard.wait()
    assert signal.tripped is not None
    assert signal.tripped.detail == f"{stop} exists"


async def test_a_trip_cuts_a_waiting_scope_short_and_nothing_else() -> None:
    signal = StopSignal([_code("X.1", 1)])
    reached_after = False

    async def waits() -> bool:
        nonlocal reached_after
        async with signal.cut_short() as scope:
            await asyncio.sleep(30)
            reached_after = True
        return scope.was_cut

    async with asyncio.timeout(5):
        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0)
        signal.answered("X.1")
        assert await task is True
    assert not reached_after


async def test_a_scope_left_before_the_cut_lands_is_not_cancelled_later() -> None:
    signal = StopSignal([_code("X.1", 1)])
    async with signal.cut_short() as scope:
        signal.answered("X.1")  # trips while this task runs inside the scope, then it leaves
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the scheduled cut found the scope gone: no stray cancellation
    assert not scope.was_cut


async def test_a_cancellation_from_elsewhere_passes_through_the_scope() -> None:
    signal = StopSignal([_code("X.1", 1)])

    async def waits() -> None:
        async with signal.cut_short():
            await asyncio.sleep(30)

    async with asyncio.timeout(5):
        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
