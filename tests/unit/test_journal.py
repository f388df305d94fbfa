"""The run journal: what it writes, what it reads back, and what it refuses."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeClock, FakeFleet, ids_of

from engine.actions import batch_retry
from engine.actions.context import ActionContext
from engine.actions.spec import output_values
from engine.api.types import BatchActionResult, BatchOutcome, RetryItem, StatusResult
from engine.cli import cli
from engine.errors import StorageError, UsageError
from engine.ledger import Disposition, EventKind, JobBook, JobRecord
from engine.run.journal import (
    JOURNAL_NAME,
    REDACTED,
    RunHeader,
    RunJournal,
    read_journal,
    runbook_digest,
)
from engine.run.result import StepOutcome, StepStatus

SOURCE = b"version: 1\nname: t\n"


def _header(**changes: object) -> RunHeader:
    fields: dict[str, object] = {
        "run_id": "r1",
        "started_at": "2026-11-29T06:00:00+00:00",
        "started_epoch": 1_795_500_000.0,
        "runbook_path": "rb.yaml",
        "runbook_sha256": runbook_digest(SOURCE),
        "params": {"name": "orders-*", "limit": 3, "db_password": "hunter2"},
        "overrides": {"max_errors": 0},
        "endpoint": "http://127.0.0.1:9",
        "credentials_file": None,
        "emulator": False,
    }
    fields.update(changes)
    return RunHeader(**fields)  # type: ignore[arg-type]


def _book(journal: RunJournal, clock: list[float]) -> JobBook:
    return JobBook(lambda: clock[0], journal=journal.for_target(0))


def test_changes_round_trip_through_the_journal(tmp_path: Path) -> None:
    clock = [1.0]
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, clock)
    book.add(JobRecord(job_id="j1", name="orders", status_at_selection="INCRE_TRANSFER_FAILED"))
    book.record("j1", EventKind.SELECTED, step="select", status="INCRE_TRANSFER_FAILED")
    book.checkpoint()
    clock[0] = 2.5
    record = book.record("j1", EventKind.RETRY_ACKNOWLEDGED, step="retry")
    record.disposition = Disposition.RETRY_ACCEPTED
    record.retry_acknowledged_at = 2.5
    book.checkpoint()
    journal.step_finished(
        0,
        StepOutcome(
            step_id="retry", action="drs.batch_retry", status=StepStatus.SUCCEEDED,
            outputs={"accepted": ["j1"], "rejected": []},
        ),
        None,
    )  # fmt: skip
    journal.close()

    state = read_journal(tmp_path / JOURNAL_NAME)
    restored = state.targets[0].records["j1"]
    assert restored.name == "orders"
    assert restored.disposition is Disposition.RETRY_ACCEPTED
    assert restored.retry_acknowledged_at == 2.5
    assert [(e.t, e.kind) for e in restored.events] == [
        (1.0, EventKind.SELECTED),
        (2.5, EventKind.RETRY_ACKNOWLEDGED),
    ]
    assert state.targets[0].steps["retry"].outputs == {"accepted": ["j1"], "rejected": []}
    assert not state.finished


def test_every_field_of_a_record_survives_the_journal(tmp_path: Path) -> None:
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [3.25])
    original = book.add(
        JobRecord(
            job_id="child-1",
            name="orders-eu",
            status_at_selection="CHILD_TRANSFER_FAILED",
            engine_type="mysql",
            db_use_type="cloudDataGuard",
            parent_id="parent-1",
        )
    )
    book.record("child-1", EventKind.SELECTED, step="select", status="CHILD_TRANSFER_FAILED")
    book.checkpoint()
    book.record(
        "child-1", EventKind.FAILED_AGAIN, step="verify", status="CHILD_TRANSFER_FAILED",
        error_code="DRS.M00001", detail="failed again after the retry",
    )  # fmt: skip
    original.disposition = Disposition.FAILED_AGAIN
    original.reason = "failed again after the retry"
    original.error_code = "DRS.M00001"
    original.retry_acknowledged_at = 1.5
    original.paused_at = 0.75
    original.time_to_recover_s = 2.0
    book.checkpoint()
    journal.close()

    restored = read_journal(tmp_path / JOURNAL_NAME).targets[0].records["child-1"]
    assert restored == original


def test_only_records_changed_since_the_last_checkpoint_are_written(tmp_path: Path) -> None:
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [0.0])
    for job_id in ("a", "b"):
        book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
        book.record(job_id, EventKind.SELECTED, step="select")
    book.checkpoint()
    book.record("b", EventKind.RETRY_SENT, step="retry")
    book.checkpoint()
    book.checkpoint()  # nothing changed: nothing written
    journal.close()
    lines = [json.loads(x) for x in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
    jobs_lines = [line["jobs"] for line in lines if line["type"] == "jobs"]
    assert [[job["id"] for job in jobs] for jobs in jobs_lines] == [["a", "b"], ["b"]]
    # The second line carries only the new event, and no static fields again.
    assert [e["kind"] for e in jobs_lines[1][0]["events"]] == ["retry_sent"]
    assert "name" not in jobs_lines[1][0]


def test_a_torn_last_line_is_dropped_but_damage_inside_is_refused(tmp_path: Path) -> None:
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [0.0])
    book.add(JobRecord(job_id="a", name="a", status_at_selection="X"))
    book.checkpoint()
    journal.close()
    path = tmp_path / JOURNAL_NAME
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"type":"jobs","target":0,"jo')  # killed mid-write
    assert "a" in read_journal(path).targets[0].records
    lines = whole.splitlines(keepends=True)
    path.write_bytes(lines[0] + b"garbage\n" + lines[1])
    with pytest.raises(UsageError, match=r"journal.jsonl:2: the journal is damaged"):
        read_journal(path)


def test_a_journal_line_escaping_a_lone_surrogate_is_damage_not_a_crash(tmp_path: Path) -> None:
    """The journal's writer cannot write one (orjson refuses it); a line that escapes one was
    written by something else, and reading it back must not hand it to the reports."""
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [0.0])
    book.add(JobRecord(job_id="a", name="\ufffd", status_at_selection="X"))
    book.checkpoint()
    journal.close()
    path = tmp_path / JOURNAL_NAME
    header, jobs = path.read_bytes().splitlines(keepends=True)
    assert read_journal(path).targets[0].records["a"].name == "\ufffd"
    path.write_bytes(header + jobs.replace(b"\xef\xbf\xbd", b"\\ud800") + jobs)
    with pytest.raises(UsageError, match=r"journal.jsonl:2: the journal is damaged"):
        read_journal(path)


def test_secret_params_are_never_written(tmp_path: Path) -> None:
    RunJournal.start(tmp_path, _header(), SOURCE).close()
    text = (tmp_path / JOURNAL_NAME).read_text()
    assert "hunter2" not in text
    assert read_journal(tmp_path / JOURNAL_NAME).header.params["db_password"] == REDACTED


def test_a_run_directory_is_reused_only_once_its_run_finished(tmp_path: Path) -> None:
    RunJournal.start(tmp_path, _header(), SOURCE).close()
    with pytest.raises(UsageError, match="holds run r1, which did not finish; resume it"):
        RunJournal.start(tmp_path, _header(run_id="r2"), SOURCE)
    journal = RunJournal.take_over(tmp_path)[0]
    journal.finished(exit_code=0, interrupted=False, at="2026-11-29T06:01:00+00:00")
    journal.close()
    RunJournal.start(tmp_path, _header(run_id="r2"), SOURCE).close()
    assert read_journal(tmp_path / JOURNAL_NAME).header.run_id == "r2"


def test_take_over_refuses_a_finished_run_but_not_an_interrupted_one(tmp_path: Path) -> None:
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    journal.finished(exit_code=130, interrupted=True, at="2026-11-29T06:01:00+00:00")
    journal.close()
    journal, state = RunJournal.take_over(tmp_path)
    assert state.interrupted
    journal.resumed("2026-11-29T06:02:00+00:00")
    journal.finished(exit_code=0, interrupted=False, at="2026-11-29T06:03:00+00:00")
    journal.close()
    assert read_journal(tmp_path / JOURNAL_NAME).resumes == ["2026-11-29T06:02:00+00:00"]
    with pytest.raises(UsageError, match="already finished; there is nothing to resume"):
        RunJournal.take_over(tmp_path)


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("emu", "secret"):
        (tmp_path / name).mkdir()
    RunJournal.start(tmp_path / "emu", _header(emulator=True, params={}), SOURCE).close()
    result = runner.invoke(cli, ["resume", str(tmp_path / "emu")], standalone_mode=False)
    assert isinstance(result.exception, UsageError)
    assert "in-process emulator" in str(result.exception)

    RunJournal.start(tmp_path / "secret", _header(), SOURCE).close()
    result = runner.invoke(cli, ["resume", str(tmp_path / "secret")], standalone_mode=False)
    assert "secret param 'db_password'" in str(result.exception)

    result = runner.invoke(cli, ["resume", str(tmp_path / "nothing")], standalone_mode=False)
    assert "has no journal.jsonl" in str(result.exception)


def test_run_resume_keeps_the_params_it_started_with(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["run", "rb.yaml", "--resume", "r1", "--param", "name=x"],
        standalone_mode=False,
    )
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).startswith("--param cannot be combined with --resume")

    result = CliRunner().invoke(
        cli, ["run", "rb.yaml", "--resume", "r1", "--shard", "1/2"], standalone_mode=False
    )
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).startswith("--shard cannot be combined with --resume")


def test_a_resume_after_a_torn_last_line_appends_on_a_line_of_its_own(tmp_path: Path) -> None:
    RunJournal.start(tmp_path, _header(), SOURCE).close()
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(path.read_bytes() + b'{"type":"jobs","tar')  # killed mid-write
    journal, _ = RunJournal.take_over(tmp_path)
    journal.resumed("2026-11-29T06:02:00+00:00")
    journal.close()
    assert read_journal(path).resumes == ["2026-11-29T06:02:00+00:00"]


async def test_answers_are_durable_before_missing_results_are_reconciled(tmp_path: Path) -> None:
    """A batch answered for a and b but not c: a kill while c is reconciled must not make a
    resumed run send a and b again."""
    failed = "INCRE_TRANSFER_FAILED"

    class Api(FakeFleet):
        def __init__(self, answered: str) -> None:
            super().__init__()
            self.answered = answered
            self.sent: list[list[str]] = []

        async def batch_retry(self, items: Sequence[RetryItem]) -> list[BatchActionResult]:
            self.sent.append([i.job_id for i in items])
            return [
                BatchActionResult(id=i.job_id, status=BatchOutcome.SUCCESS)
                for i in items
                if i.job_id in self.answered
            ]

        async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]:
            return [StatusResult(id=j, status=failed) for j in job_ids]

    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [0.0])
    for job_id in "abc":
        book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection=failed))
    killed = asyncio.Event()

    async def killed_while_waiting(_: float) -> None:
        killed.set()
        await asyncio.Event().wait()

    ctx = ActionContext(
        api=Api("ab"), jobs=book, step_id="retry", project_id="p", sleep=killed_while_waiting
    )
    params = batch_retry.BatchRetryParams(jobs=("a", "b", "c"))
    async with asyncio.TaskGroup() as group:
        task = group.create_task(batch_retry.run(ctx, params))
        await killed.wait()
        task.cancel()  # SIGKILL: only what is in the journal survives
    journal.close()

    state = read_journal(tmp_path / JOURNAL_NAME)
    clock = FakeClock()
    resumed = JobBook(clock)
    resumed.restore(list(state.targets[0].records.values()))
    api = Api("abc")
    ctx = ActionContext(api=api, jobs=resumed, step_id="retry", project_id="p", sleep=clock.sleep)
    out = output_values(await batch_retry.run(ctx, params))
    assert api.sent == [["c"]]  # a and b were answered before the kill: never sent again
    assert sorted(ids_of(out["accepted"])) == ["a", "b", "c"]


async def test_books_committing_in_one_turn_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []  # the journal's size at each fsync
    path = tmp_path / JOURNAL_NAME
    monkeypatch.setattr(
        "engine.run.journal.os.fsync", lambda fd: synced.append(path.stat().st_size)
    )
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    synced.clear()  # the header's own fsync
    books = [JobBook(lambda: 0.0, journal=journal.for_target(i)) for i in range(3)]

    async def send(book: JobBook, job_id: str) -> int:
        book.add(JobRecord(job_id=job_id, name=job_id, status_at_selection="X"))
        book.record(job_id, EventKind.RETRY_SENT, step="retry")
        await book.commit()
        return len(synced)  # what the request would see: it leaves only after an fsync

    seen = await asyncio.gather(*(send(book, f"j{i}") for i, book in enumerate(books)))
    assert synced == [path.stat().st_size]  # one fsync, after all three lines were written
    assert seen == [1, 1, 1]

    await books[0].commit()  # nothing written since: no fsync
    assert len(synced) == 1
    books[1].record("j1", EventKind.RETRY_ACKNOWLEDGED, step="retry")
    await books[1].commit()
    assert synced[1:] == [path.stat().st_size]
    journal.close()


async def test_a_commit_cancelled_while_it_waits_still_syncs_for_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("engine.run.journal.os.fsync", synced.append)
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    synced.clear()
    first, second = (JobBook(lambda: 0.0, journal=journal.for_target(i)) for i in range(2))
    first.record("a", EventKind.RETRY_SENT, step="retry")
    second.record("b", EventKind.RETRY_SENT, step="retry")
    cancelled = asyncio.ensure_future(first.commit())
    kept = asyncio.ensure_future(second.commit())
    await asyncio.sleep(0)  # both wait for the fsync due at the next turn
    cancelled.cancel()
    await kept
    assert len(synced) == 1
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    journal.close()


def test_a_field_set_back_to_none_reads_back_as_none(tmp_path: Path) -> None:
    # Entries leave None fields out (a missing field reads as None), so a field cleared after
    # it was written must come back cleared, not with its earlier value.
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [1.0])
    record = book.add(JobRecord(job_id="j", name="j", status_at_selection="X"))
    record.error_code = "DRS.M00001"
    record.reason = "refused"
    book.record("j", EventKind.STATUS_OBSERVED, step="verify", status="INCRE_TRANSFER_FAILED")
    book.checkpoint()
    record.error_code = None
    record.reason = None
    book.record("j", EventKind.RECOVERED, step="verify", status="INCRE_TRANSFER_STARTED")
    book.checkpoint()
    journal.close()

    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert "null" not in lines[-1]
    restored = read_journal(tmp_path / JOURNAL_NAME).targets[0].records["j"]
    assert restored == record
    assert restored.error_code is None
    assert restored.reason is None


async def test_a_full_disk_stops_the_journal_at_its_last_whole_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC mid-line (issue 14, item 5): the torn line is cut off, nothing more is taken, and
    every later sync raises the one sentence, so no request leaves without its intent."""
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    book = _book(journal, [1.0])
    book.add(JobRecord(job_id="j1", name="j1", status_at_selection="INCRE_TRANSFER_FAILED"))
    await book.commit()
    whole = (tmp_path / JOURNAL_NAME).read_bytes()
    real_write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[:7])  # part of the line fits, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    book.record("j1", EventKind.RETRY_SENT, step="retry")
    with pytest.raises(StorageError) as caught:
        await book.commit()
    monkeypatch.setattr(os, "write", real_write)
    said = str(caught.value)
    assert said.startswith(f"cannot write the journal {tmp_path / JOURNAL_NAME}: No space left")
    assert f"runbook resume {tmp_path}" in said
    assert (tmp_path / JOURNAL_NAME).read_bytes() == whole  # cut back to whole lines
    journal.step_started(0, "retry", 2.0)  # taken no more, even with room again
    with pytest.raises(StorageError):
        await book.commit()
    journal.close()
    assert (tmp_path / JOURNAL_NAME).read_bytes() == whole
    state = read_journal(tmp_path / JOURNAL_NAME)
    assert [e.kind for e in state.targets[0].records["j1"].events] == []
    journal, _ = RunJournal.take_over(tmp_path)  # and it can be resumed
    journal.close()


async def test_a_failed_fsync_cuts_back_to_what_was_synced_for_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = RunJournal.start(tmp_path, _header(), SOURCE)
    books = [JobBook(lambda: 1.0, journal=journal.for_target(i)) for i in range(3)]
    for i, book in enumerate(books):
        book.add(JobRecord(job_id=f"j{i}", name="n", status_at_selection="INCRE_TRANSFER_FAILED"))
    await asyncio.gather(*(book.commit() for book in books))
    synced = (tmp_path / JOURNAL_NAME).read_bytes()

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", eio)
    for i, book in enumerate(books):
        book.record(f"j{i}", EventKind.RETRY_SENT, step="retry")
    results = await asyncio.gather(*(b.commit() for b in books), return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results), results  # none may send
    assert "Input/output error" in str(results[0])
    journal.close()
    assert (tmp_path / JOURNAL_NAME).read_bytes() == synced  # the unsynced lines are gone
