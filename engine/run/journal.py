"""The run journal: an append-only JSON-lines file in the run directory, enough to resume.

Every line is one JSON object with a ``type``, written with a single ``write(2)`` so a process
killed at any moment leaves whole lines (at worst a torn last line, which the reader drops):

- ``run``: the header (run id, start time, the runbook's SHA-256, params, where the targets are);
- ``step_started`` / ``step``: a step began / finished in one target (its outcome and outputs);
- ``jobs``: the job records of one target that changed since the last such line, with their
  new events;
- ``resumed``: a later process took the run over;
- ``finished``: the run ended (``interrupted`` when it was stopped by a signal).

A line survives the death of the process as soon as it is written (it is in the kernel); lines
about mutations, the intent before a request is sent and the outcome after, are also fsynced
so they survive the machine. Targets that ask for that in the same turn of the event loop share
one fsync (a group commit, as databases do): each still waits for it before going on.

The journal holds no secrets: credentials are never in it, and params whose name says they are
secret are redacted (such a run cannot be resumed).

The journal is not a database: it is read back whole, once, by ``runbook resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.errors import StorageError, UsageError
from engine.ledger import Disposition, JobEvent, JobRecord
from engine.run.result import Planned, StepOutcome, StepStatus

logger = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"
RUNBOOK_COPY = "runbook.yaml"
JOURNAL_VERSION = 1
REDACTED = "<redacted>"

# Params with names like these are never written down (so such a run cannot be resumed).
_SECRET_NAME = re.compile(
    r"(passw(or)?d|pwd|passphrase|secret|token|credential|api_?key|access_?key|private_?key"
    r"|(^|_)(sk|ak)($|_))",
    re.I,
)

_MUTABLE = (
    "reason",
    "error_code",
    "last_status",
    "retry_acknowledged_at",
    "paused_at",
    "time_to_recover_s",
    "delay_s",
    "delay_max_s",
)


def is_secret_param(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def runbook_digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunHeader:
    """What a run was started with; a resume continues with exactly this."""

    run_id: str
    started_at: str  # ISO 8601, UTC
    started_epoch: float  # the same instant, for the resumed run's clock
    runbook_path: str
    runbook_sha256: str
    params: Mapping[str, Any]  # secret ones are REDACTED
    overrides: Mapping[str, int]  # guard rails set on the command line
    endpoint: str | None
    credentials_file: str | None
    emulator: bool
    shard: str | None = None  # --shard I/N: the run took only those targets
    # Applying a plan file: its hash and the jobs it lets each step send (a resume too).
    plan_hash: str | None = None
    planned: Planned | None = None
    # --target / --skip-target: {"only": [...], "skip": [...]}, empty lists for none.
    limit: Mapping[str, Sequence[str]] | None = None

    def as_line(self) -> dict[str, Any]:
        return {
            "type": "run",
            "journal_version": JOURNAL_VERSION,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "started_epoch": self.started_epoch,
            "runbook": {"path": self.runbook_path, "sha256": self.runbook_sha256},
            "params": {k: REDACTED if is_secret_param(k) else v for k, v in self.params.items()},
            "overrides": dict(self.overrides),
            "endpoint": self.endpoint,
            "credentials_file": self.credentials_file,
            "emulator": self.emulator,
            "shard": self.shard,
            **({"limit": dict(self.limit)} if self.limit else {}),
            **(
                {}
                if self.plan_hash is None
                else {"plan": {"hash": self.plan_hash, "planned": self.planned or {}}}
            ),
        }

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> RunHeader:
        return cls(
            run_id=line["run_id"],
            started_at=line["started_at"],
            started_epoch=float(line["started_epoch"]),
            runbook_path=line["runbook"]["path"],
            runbook_sha256=line["runbook"]["sha256"],
            params=dict(line["params"]),
            overrides=dict(line["overrides"]),
            endpoint=line["endpoint"],
            credentials_file=line["credentials_file"],
            emulator=bool(line["emulator"]),
            shard=line.get("shard"),
            plan_hash=(plan := line.get("plan") or {}).get("hash"),
            planned=plan.get("planned") if plan else None,
            limit=line.get("limit"),
        )


@dataclass(slots=True, kw_only=True)
class TargetState:
    """One target as the journal left it."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    steps: dict[str, StepOutcome] = field(default_factory=dict)  # finished, by step id
    failure: str | None = None


@dataclass(slots=True, kw_only=True)
class JournalState:
    """A journal read back: the header, each target's state, and how the run ended."""

    header: RunHeader
    targets: dict[int, TargetState]
    finished: bool = False
    interrupted: bool = False
    resumes: list[str] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    # The run's stop tripped (engine.run.stop.Tripped.to_json): a resume stays stopped.
    stopped: dict[str, Any] | None = None

    # The project ids discovery expanded into targets when the run started (None: it had none).
    discovered: list[str] | None = None
    lines: int = 0

    def target(self, index: int) -> TargetState:
        return self.targets.setdefault(index, TargetState())


class RunJournal:
    """The writer: one per run directory at a time (an exclusive lock says so)."""

    def __init__(self, directory: Path, *, fd: int) -> None:
        self.directory = directory
        self._fd = fd
        self._written: dict[int, dict[str, int]] = {}  # target -> job -> events written
        self._unsynced = False  # lines written since the last fsync
        self._syncing: asyncio.Future[None] | None = None  # the fsync due at the next turn
        # Bytes of whole lines on disk for certain (fsynced): where a failure cuts back to. An
        # unsynced line after it may be lost without harm: no request left before its intent
        # was synced, and an answer not on disk is reconciled on resume.
        self._synced = os.lseek(fd, 0, os.SEEK_END)
        self._size = self._synced  # bytes of whole lines written
        # Set by the first write or fsync that failed (a full disk): the journal then takes
        # no further line (it ends at its last whole one) and ``sync`` raises this for ever,
        # so nothing more is sent without its intent on disk.
        self.failure: StorageError | None = None

    @classmethod
    def start(cls, directory: Path, header: RunHeader, runbook_source: bytes) -> RunJournal:
        """A new journal (and a copy of the runbook) in a new run directory."""
        path = directory / JOURNAL_NAME
        if path.exists():
            _replace_finished(path)
        try:
            (directory / RUNBOOK_COPY).write_bytes(runbook_source)
        except OSError as exc:
            raise StorageError(
                f"cannot write {directory / RUNBOOK_COPY}: {exc.strerror or exc}; nothing "
                "was sent (free some space, or choose another --report-dir)"
            ) from None
        journal = cls(directory, fd=_open_locked(path, new=True))
        journal._append(header.as_line(), durable=True)
        if journal.failure is not None:
            journal.close()
            raise journal.failure
        return journal

    @classmethod
    def take_over(cls, directory: Path) -> tuple[RunJournal, JournalState]:
        """Lock an interrupted run's journal and read it back (``resumed`` then says so)."""
        path = directory / JOURNAL_NAME
        if not path.is_file():
            raise UsageError(
                f"{directory} has no {JOURNAL_NAME}; give the directory of a run (it holds "
                "report.json and the journal)"
            )
        fd = _open_locked(path, new=False)
        try:
            state = read_journal(path)
            _cut_torn_tail(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if state.finished and not state.interrupted:
            os.close(fd)
            raise UsageError(
                f"run {state.header.run_id} already finished; there is nothing to resume "
                "(start a new run to act again)"
            )
        journal = cls(directory, fd=fd)
        for index, target in state.targets.items():
            journal._written[index] = {j: len(r.events) for j, r in target.records.items()}
        return journal, state

    def resumed(self, at: str) -> None:
        self._append({"type": "resumed", "at": at, "pid": os.getpid()}, durable=True)
        if self.failure is not None:
            raise self.failure

    def for_target(self, index: int) -> TargetJournal:
        return TargetJournal(self, index)

    def step_started(self, index: int, step_id: str, t: float) -> None:
        self._append({"type": "step_started", "target": index, "step": step_id, "t": t})

    def step_finished(self, index: int, outcome: StepOutcome, failure: str | None) -> None:
        self._append(
            {
                "type": "step",
                "target": index,
                "outcome": {
                    "step_id": outcome.step_id,
                    "action": outcome.action,
                    "status": outcome.status.value,
                    "started_t": outcome.started_t,
                    "duration_s": outcome.duration_s,
                    "message": outcome.message,
                    "attempts": outcome.attempts,
                    "outputs": outcome.outputs,
                    "notices": outcome.notices,
                },
                "failure": failure,
            }
        )

    def discovered(self, project_ids: Sequence[str]) -> None:
        """The targets discovery found, in order: a resume must find the same."""
        self._append({"type": "discovered", "projects": list(project_ids)}, durable=True)

    def approval(self, entry: Mapping[str, Any]) -> None:
        """An approval or decline (``ApprovalRecord.to_json``): on disk before the run goes on."""
        self._append({"type": "approval", **entry}, durable=True)

    def stopped(self, tripped: Mapping[str, Any]) -> None:
        """The run's stop tripped (which condition, when): on disk before anything else."""
        self._append({"type": "stopped", **tripped}, durable=True)

    def finished(self, *, exit_code: int, interrupted: bool, at: str) -> None:
        self._append(
            {"type": "finished", "exit_code": exit_code, "interrupted": interrupted, "at": at},
            durable=True,
        )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock
            self._fd = -1

    def jobs_changed(self, index: int, records: Sequence[JobRecord]) -> None:
        written = self._written.setdefault(index, {})
        entries = []
        for record in records:
            before = written.get(record.job_id)
            entries.append(_job_entry(record, first=before is None, since=before or 0))
            written[record.job_id] = len(record.events)
        self._append({"type": "jobs", "target": index, "jobs": entries})

    async def sync(self) -> None:
        """Return once every line written so far is on disk.

        The fsync runs at the next turn of the event loop, for every caller that asked before
        it: a thousand targets sending their retries at about the same time share a few
        fsyncs instead of making one each. A caller cancelled while it waits does not cancel
        the fsync the others wait for.
        """
        if self.failure is not None:
            raise self.failure
        if not self._unsynced:
            return
        if self._syncing is None:
            loop = asyncio.get_running_loop()
            self._syncing = loop.create_future()
            loop.call_soon(self._sync_now)
        await asyncio.shield(self._syncing)
        if self.failure is not None:
            raise self.failure

    def _sync_now(self) -> None:
        syncing, self._syncing = self._syncing, None
        assert syncing is not None
        if self._unsynced and self._fd >= 0 and self.failure is None:
            self._fsync()
        syncing.set_result(None)  # the waiters read self.failure

    def _append(self, line: Mapping[str, Any], *, durable: bool = False) -> None:
        if self.failure is not None or self._fd < 0:
            return
        data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        view = memoryview(data)
        try:
            while view:  # one write(2) in practice; a short write is finished, not interleaved
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._fail(exc)
            return
        self._size += len(data)
        self._unsynced = True
        if durable:
            self._fsync()

    def _fsync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
            return
        self._unsynced = False
        self._synced = self._size

    def _fail(self, exc: OSError) -> None:
        """Cut the journal back to its last whole line and take nothing more."""
        path = self.directory / JOURNAL_NAME
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._synced)  # frees what the torn line took
        self.failure = StorageError(
            f"cannot write the journal {path}: {exc.strerror or exc}; no further change was "
            f"sent. Free some space, then `runbook resume {self.directory}` finishes the run "
            "without sending anything twice"
        )
        logger.error("%s", self.failure)


class TargetJournal:
    """One target's view of the journal: what its ``JobBook`` hands its changes to."""

    def __init__(self, journal: RunJournal, index: int) -> None:
        self._journal = journal
        self._index = index

    def jobs_changed(self, records: Sequence[JobRecord]) -> None:
        self._journal.jobs_changed(self._index, records)

    async def sync(self) -> None:
        await self._journal.sync()


def _cut_torn_tail(fd: int, path: Path) -> None:
    """Drop a last line torn by a crash, so what is appended next starts a line of its own."""
    data = path.read_bytes()
    whole = data.rfind(b"\n") + 1
    if whole < len(data):
        os.ftruncate(fd, whole)
        os.fsync(fd)


def _replace_finished(path: Path) -> None:
    """A run directory used again: fine once its run finished, never over one to resume."""
    if path.stat().st_size == 0:  # killed between creating the journal and its first line
        path.unlink()
        return
    fd = _open_locked(path, new=False)
    try:
        state = read_journal(path)
        if not state.finished or state.interrupted:
            raise UsageError(
                f"{path.parent} holds run {state.header.run_id}, which did not finish; resume "
                f"it with `runbook resume {path.parent}` or choose another --report-dir"
            )
        path.unlink()
    finally:
        os.close(fd)


def _open_locked(path: Path, *, new: bool) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_EXCL if new else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path.parent} was taken by another run just now; choose another --report-dir"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot open the journal {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(
            f"{path.parent} is in use by another runbook process; wait for it to finish "
            "(or stop it), or choose another --report-dir"
        ) from None
    return fd


def _job_entry(record: JobRecord, *, first: bool, since: int) -> dict[str, Any]:
    """A changed record as a journal line holds it: its disposition, the fields that change
    (``_MUTABLE``) and the events since the last entry every time, the fields set at selection
    only the first time. A field that is None is left out (the reader takes a missing field as
    None): most are, and the journal of a 100,000-job run is 30 % smaller for it.

    Spelt out rather than looped over: it runs for every change of every job (165,000 times in
    the 100,000-job bench)."""
    entry: dict[str, Any] = {
        "id": record.job_id,
        "disposition": record.disposition._value_,  # not .value: see JobEvent.to_json
        "events": [event.to_json() for event in record.events[since:]],
    }
    if record.reason is not None:
        entry["reason"] = record.reason
    if record.error_code is not None:
        entry["error_code"] = record.error_code
    if record.last_status is not None:
        entry["last_status"] = record.last_status
    if record.retry_acknowledged_at is not None:
        entry["retry_acknowledged_at"] = record.retry_acknowledged_at
    if record.paused_at is not None:
        entry["paused_at"] = record.paused_at
    if record.time_to_recover_s is not None:
        entry["time_to_recover_s"] = record.time_to_recover_s
    if record.delay_s is not None:
        entry["delay_s"] = record.delay_s
    if record.delay_max_s is not None:
        entry["delay_max_s"] = record.delay_max_s
    if first:
        entry["name"] = record.name
        entry["status_at_selection"] = record.status_at_selection
        if record.engine_type is not None:
            entry["engine_type"] = record.engine_type
        if record.db_use_type is not None:
            entry["db_use_type"] = record.db_use_type
        if record.parent_id is not None:
            entry["parent_id"] = record.parent_id
    return entry


def read_journal(path: Path) -> JournalState:
    """Read a journal back. A torn last line (the process died mid-write) is dropped; damage
    anywhere else is an error, since what follows it could not be trusted."""
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise UsageError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines: list[dict[str, Any]] = []
    for number, raw in enumerate(raw_lines, start=1):
        line = _entry(raw)
        if line is None:
            if number == len(raw_lines):
                break  # torn by a crash while it was written: it never happened
            raise UsageError(
                f"{path}:{number}: the journal is damaged (not a JSON entry); it cannot be "
                "resumed safely, start a new run"
            ) from None
        lines.append(line)
    if not lines:
        raise UsageError(
            f"{path} is empty: the run was killed before it started, so there is nothing to "
            "resume; start a new run (the directory can be reused)"
        )
    if lines[0]["type"] != "run":
        raise UsageError(f"{path}:1: not a runbook journal (no run header)")
    if lines[0].get("journal_version") != JOURNAL_VERSION:
        raise UsageError(
            f"{path}:1: journal version {lines[0].get('journal_version')} is not "
            f"{JOURNAL_VERSION}; resume it with the runbook version that wrote it"
        )
    state = JournalState(header=RunHeader.from_line(lines[0]), targets={}, lines=len(lines))
    for line in lines[1:]:
        _apply(state, line)
    return state


def _entry(raw: bytes) -> dict[str, Any] | None:
    try:
        line = orjson.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) and "type" in line else None


def _apply(state: JournalState, line: Mapping[str, Any]) -> None:
    kind = line["type"]
    if kind == "jobs":
        records = state.target(int(line["target"])).records
        for entry in line["jobs"]:
            _apply_job(records, entry)
    elif kind == "step":
        target = state.target(int(line["target"]))
        outcome = line["outcome"]
        target.steps[outcome["step_id"]] = StepOutcome(
            step_id=outcome["step_id"],
            action=outcome["action"],
            status=StepStatus(outcome["status"]),
            started_t=outcome["started_t"],
            duration_s=outcome["duration_s"],
            message=outcome["message"],
            attempts=outcome["attempts"],
            outputs=dict(outcome["outputs"]),
            notices=list(outcome.get("notices", ())),
        )
        target.failure = line["failure"]
    elif kind == "resumed":
        state.resumes.append(line["at"])
        state.finished = state.interrupted = False
    elif kind == "approval":
        state.approvals.append({k: v for k, v in line.items() if k != "type"})
    elif kind == "stopped":
        state.stopped = {k: v for k, v in line.items() if k != "type"}

    elif kind == "discovered":
        projects = line.get("projects")
        if isinstance(projects, list) and all(isinstance(p, str) for p in projects):
            state.discovered = list(projects)
    elif kind == "finished":
        state.finished, state.interrupted = True, bool(line["interrupted"])


def _apply_job(records: dict[str, JobRecord], entry: Mapping[str, Any]) -> None:
    record = records.get(entry["id"])
    if record is None:
        record = records[entry["id"]] = JobRecord(
            job_id=entry["id"],
            name=entry.get("name") or "",
            status_at_selection=entry.get("status_at_selection") or "",
            engine_type=entry.get("engine_type"),
            db_use_type=entry.get("db_use_type"),
            parent_id=entry.get("parent_id"),
        )
    record.disposition = Disposition(entry["disposition"])
    for name in _MUTABLE:
        setattr(record, name, entry.get(name))
    record.events.extend(JobEvent.from_json(e) for e in entry["events"])
