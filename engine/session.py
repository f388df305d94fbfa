"""The application: prepare a run, carry it out, resume it, and write its reports.

This is what the ``runbook`` command calls, and what Python callers (a ChatOps bot, a workflow
engine's activity) use without click::

    from engine.session import run_runbook, resume_run

    outcome = run_runbook("runbooks/retry-failed-jobs.yaml", emulator=True, yes=True)
    outcome.exit_code, outcome.run_dir, outcome.report.totals.needs_attention

``run_runbook`` / ``resume_run`` own an event loop (``asyncio.run``); ``run_runbook_async`` /
``resume_run_async`` are their twins for callers that already run one. The lower level
(``prepare``, ``run``, ``resume``, ``plan``) takes the pieces the command line gives.

Nothing here prints: what a human should see while it runs goes to the ``RunObserver`` (its
``note`` for messages), what it produced is in the returned outcome. Errors are
``engine.errors.EngineError``s (a ``UsageError`` for a wrong input, before anything is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.api.bounds import DEFAULT_REQUEST_TIMEOUT_S
from engine.api.credentials import CredentialSettings
from engine.api.resilience import Resilience
from engine.api.transport import AiohttpTransport, Transport
from engine.errors import EngineError, StorageError, UsageError
from engine.logs import run_context
from engine.report.build import build_report
from engine.report.document import Report
from engine.report.files import (
    drop_stale_reports,
    usable_directory,
    write_reports,
    write_reports_or_say,
)
from engine.report.merge import merge_reports
from engine.report.render import REPORT_FILES
from engine.run.accounts import account_settings
from engine.run.approval import HOW_PLAN, HOW_TERMINAL, Approver, approval, approve_all
from engine.run.executor import Executor, RunObserver
from engine.run.inputs import (
    EmulatorSettings,
    Inputs,
    Where,
    endpoint_where,
    prepare,
    refuse_clear_text,
)
from engine.run.journal import (
    JournalState,
    RunHeader,
    RunJournal,
    is_secret_param,
    runbook_digest,
)
from engine.run.notify import Notifier, RunRef, Webhook, webhooks
from engine.run.past import past_report
from engine.run.planfile import (
    DEFAULT_MAX_AGE_S,
    SavedPlan,
    plan_document,
    planned_inputs,
    read_plan,
    write_plan,
)
from engine.run.result import Planned, RunResult
from engine.run.resumption import approved_gates, check_resumable, resumed_inputs
from engine.run.segments import is_gate
from engine.run.stop import StopSignal
from engine.run.wiring import EmulatorLogin, cloud_connections, emulator_connections, wire
from engine.runbook import Runbook, StopCondition
from engine.telemetry import Telemetry, from_env

logger = logging.getLogger(__name__)

DEFAULT_REPORTS = Path("runbook-reports")


# ----------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """What a run (or a resume, or a merge) produced: its exit code, where its files are, the
    report they hold, and with an in-process emulator, the emulator's own count."""

    exit_code: int
    run_dir: Path
    report: Report
    written: tuple[Path, ...]
    emulator_stats: Mapping[str, Any] | None = None

    @property
    def interrupted(self) -> bool:
        return self.report.interrupted


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOutcome:
    """What a plan found: exit code 0 when it was made, 1 when a step failed."""

    exit_code: int
    report: Report
    inputs: Inputs
    where: Where
    # Each job's job_action.available_actions as the selection saw it (for the plan file).
    offered: Mapping[str, tuple[str, ...]]

    def write(self, path: Path) -> str:
        """Write the plan file for ``runbook apply``; returns its plan hash."""
        where = _where_of(self.where)
        document = plan_document(self.report, self.inputs, where, self.offered)
        write_plan(path, document)
        return str(document["plan_hash"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """How a run's approvals are given, and the plan file it is bound to (if any)."""

    how: str = HOW_TERMINAL
    plan_hash: str | None = None
    planned: Planned | None = None

    @classmethod
    def of(cls, saved: SavedPlan | None, how: str) -> Binding:
        if saved is None:
            return cls(how=how)
        return cls(how=HOW_PLAN, plan_hash=saved.plan_hash, planned=saved.planned)


# ----------------------------------------------------------------------------- run, plan


def new_run_id() -> str:
    """When the run started (UTC) and a few random hex digits: sortable and unique enough."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


async def run(
    inputs: Inputs,
    where: Where,
    *,
    report_dir: Path | None = None,
    approver: Approver | None = None,
    observer: RunObserver | None = None,
    formats: Iterable[str] = (),
    handle_signals: bool = False,
    approval_how: str = HOW_TERMINAL,
    saved_plan: SavedPlan | None = None,
    notify: Sequence[str] = (),
    telemetry: Telemetry | None = None,
    stop_files: Sequence[Path] = (),
) -> RunOutcome:
    """Run ``inputs`` against ``where``; write the journal, then the reports, to the run
    directory (default ``runbook-reports/<run id>``, checked before anything is sent).

    ``approval_how`` says how ``approver`` answers (terminal or ``--yes``), for the record;
    ``saved_plan`` binds the run to a plan file (``apply``); ``notify``: webhook URLs told
    about the run besides the runbook's ``notify:`` (``engine.run.notify``); ``telemetry``
    traces the run (default: as the ``OTEL_*`` environment says, ``engine.telemetry.from_env``);
    ``stop_files`` stop the run when one appears, as the runbook's ``stop_when: [{file: ...}]``
    do."""
    _need_approver(inputs.runbook, approver)
    refuse_clear_text(inputs.runbook, where)
    return await _start(
        inputs,
        where,
        report_dir=report_dir,
        approver=approver,
        observer=observer,
        formats=formats,
        handle_signals=handle_signals,
        approval_how=approval_how,
        saved_plan=saved_plan,
        hooks=_webhooks(inputs.runbook, notify, where, observer),
        telemetry=telemetry,
        stop_files=stop_files,
    )


async def _start(
    inputs: Inputs,
    where: Where,
    *,
    report_dir: Path | None,
    approver: Approver | None,
    observer: RunObserver | None,
    formats: Iterable[str],
    handle_signals: bool,
    approval_how: str,
    saved_plan: SavedPlan | None,
    hooks: Sequence[Webhook],
    telemetry: Telemetry | None = None,
    stop_files: Sequence[Path] = (),
) -> RunOutcome:
    """A new run of checked inputs: its id, directory and journal, then carry it out."""
    run_id = new_run_id()
    with _as_run(run_id):
        directory = usable_directory(report_dir or DEFAULT_REPORTS / run_id)
        journal = _start_journal(directory, run_id, inputs, where, observer, saved_plan)
        drop_stale_reports(directory)
        return await _carry_out(
            inputs,
            where,
            directory,
            run_id,
            journal=journal,
            approver=approver,
            observer=observer,
            formats=formats,
            handle_signals=handle_signals,
            binding=Binding.of(saved_plan, approval_how),
            hooks=hooks,
            telemetry=telemetry,
            stop_files=stop_files,
        )


@contextlib.contextmanager
def _as_run(run_id: str) -> Iterator[None]:
    """Within the block, every log record (of every task started in it) names the run, and
    an engine error leaving it carries the run id to the command's error line."""
    with run_context(run_id=run_id):
        try:
            yield
        except EngineError as exc:
            exc.run_id = exc.run_id or run_id
            raise


async def apply(
    path: Path,
    where: Where,
    *,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    report_dir: Path | None = None,
    observer: RunObserver | None = None,
    formats: Iterable[str] = (),
    handle_signals: bool = False,
    notify: Sequence[str] = (),
    stop_files: Sequence[Path] = (),
) -> RunOutcome:
    """Run the plan file at ``path`` as it was reviewed: its runbook (unchanged), params and
    targets, sending only the jobs it lists, each only while its status is the one it was
    planned on (the others end ``drifted``, but for one the settle wait saw the service bring
    back: ``recovered_by_service``). The plan file is the approval: every approve step
    is answered by it, and the report records its hash."""
    saved = read_plan(path, max_age_s=max_age_s)
    if saved.where != _where_of(where):
        made = "the emulator" if saved.where.get("emulator") else saved.where.get("endpoint")
        raise UsageError(
            f"{path} was planned against {made or 'the cloud'}; apply it there, not to "
            f"{'the emulator' if where.emulator else where.endpoint or 'the cloud'}"
        )
    marker = path.with_name(path.name + ".applied")
    if marker.exists():
        raise UsageError(
            f"{path} was applied already ({marker.read_text(errors='replace').strip()[:80]}); "
            "a plan is applied once: make a new one"
        )
    inputs = planned_inputs(saved)
    refuse_clear_text(inputs.runbook, where)  # before the plan is marked applied
    hooks = _webhooks(inputs.runbook, notify, where, observer)
    _note(
        observer,
        f"applying plan {saved.plan_hash[:12]} of {saved.created_at.isoformat()}: "
        f"{saved.jobs} planned job(s)",
    )
    try:  # before anything is sent: a plan is applied once
        marker.write_text(f"applied {datetime.now(UTC).isoformat(timespec='seconds')}\n")
    except OSError as exc:
        raise UsageError(
            f"cannot mark {path} as applied ({marker}): {exc.strerror or exc}"
        ) from None
    return await _start(
        inputs,
        where,
        report_dir=report_dir,
        approver=approve_all,
        observer=observer,
        formats=formats,
        handle_signals=handle_signals,
        approval_how=HOW_PLAN,
        saved_plan=saved,
        hooks=hooks,
        stop_files=stop_files,
    )


async def plan(
    inputs: Inputs,
    where: Where,
    *,
    observer: RunObserver | None = None,
    handle_signals: bool = False,
) -> PlanOutcome:
    """Work out what running ``inputs`` would do, making only read-only API calls."""
    refuse_clear_text(inputs.runbook, where)
    run_id = "plan-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with _as_run(run_id):
        async with _signals_cancel_the_run(handle_signals):
            report, _, _, result = await _execute(
                inputs, where, run_id, observer=observer, plan=True
            )
    offered = {r.job_id: r.offered for t in result.targets for r in t.jobs}
    return PlanOutcome(
        exit_code=report.exit_code, report=report, inputs=inputs, where=where, offered=offered
    )


def _where_of(where: Where) -> dict[str, Any]:
    """What a plan was made against, as its file records it (apply must go to the same)."""
    return {"emulator": where.emulator is not None, "endpoint": where.endpoint}


async def _carry_out(
    inputs: Inputs,
    where: Where,
    directory: Path,
    run_id: str,
    *,
    journal: RunJournal,
    approver: Approver | None,
    observer: RunObserver | None,
    formats: Iterable[str],
    handle_signals: bool,
    resume: JournalState | None = None,
    binding: Binding = Binding(),
    hooks: Sequence[Webhook] = (),
    telemetry: Telemetry | None = None,
    stop_files: Sequence[Path] = (),
) -> RunOutcome:
    stop = _stop_signal(inputs.runbook, stop_files, resume)
    about = RunRef(
        run_id=run_id,
        runbook_name=inputs.runbook.name,
        runbook_path=str(inputs.path),
        run_dir=directory,
    )
    # Notifications go out in the background; leaving this scope waits for them, bounded.
    async with Notifier(hooks, run=about, warn=lambda text: _note(observer, text)) as notifier:
        try:
            async with _signals_cancel_the_run(handle_signals):
                report, stats, storage_failure, _ = await _execute(
                    inputs,
                    where,
                    run_id,
                    observer=notifier.observing(observer),
                    approver=notifier.asking(approver, binding.how, plan_hash=binding.plan_hash),
                    journal=journal,
                    resume=resume,
                    binding=binding,
                    telemetry=telemetry,
                    stop=stop,
                )
        finally:
            journal.close()
        if storage_failure is not None:
            # The journal stopped at its last whole line; reports may fit where it did not.
            with contextlib.suppress(OSError):
                write_reports(directory, report, formats or tuple(REPORT_FILES))
            notifier.finished(report, reports=())  # its exit code is the storage failure's
            raise storage_failure
        written = write_reports_or_say(directory, report, formats or tuple(REPORT_FILES))
        if stats is not None:
            from engine.run.emulated import write_stats  # loaded already: the run used it

            with contextlib.suppress(OSError):  # the emulator's own count: not worth a failure
                path, said = write_stats(directory, stats)
                written.append(path)
                _note(observer, said)
        notifier.finished(report, reports=written)
    return RunOutcome(
        exit_code=report.exit_code,
        run_dir=directory,
        report=report,
        written=tuple(written),
        emulator_stats=stats,
    )


async def _execute(
    inputs: Inputs,
    where: Where,
    run_id: str,
    *,
    observer: RunObserver | None,
    plan: bool = False,
    approver: Approver | None = None,
    journal: RunJournal | None = None,
    resume: JournalState | None = None,
    binding: Binding = Binding(),
    telemetry: Telemetry | None = None,
    stop: StopSignal | None = None,
) -> tuple[Report, dict[str, Any] | None, StorageError | None, RunResult]:
    """Wire the targets, execute, and build the report; with an emulator, also its stats.
    ``telemetry`` (else the environment's, if it asks for any) traces all of it."""
    telemetry = telemetry if telemetry is not None else from_env(os.environ)
    if telemetry is None:
        return await _wire_and_execute(
            inputs, where, run_id, observer, plan, approver, journal, resume, binding, None, stop
        )
    try:
        with telemetry.run_span(runbook=inputs.runbook.name, run_id=run_id, plan=plan) as span:
            executed = await _wire_and_execute(
                inputs,
                where,
                run_id,
                observer,
                plan,
                approver,
                journal,
                resume,
                binding,
                telemetry,
                stop,
            )
            telemetry.run_finished(span, executed[0])
    finally:
        await telemetry.close()
    return executed


async def _wire_and_execute(
    inputs: Inputs,
    where: Where,
    run_id: str,
    observer: RunObserver | None,
    plan: bool,
    approver: Approver | None,
    journal: RunJournal | None,
    resume: JournalState | None,
    binding: Binding,
    telemetry: Telemetry | None,
    stop: StopSignal | None,
) -> tuple[Report, dict[str, Any] | None, StorageError | None, RunResult]:
    runbook = inputs.runbook
    resilience = Resilience(telemetry=telemetry)
    stats: dict[str, Any] | None = None
    async with AsyncExitStack() as stack:
        transport = await stack.enter_async_context(
            AiohttpTransport(request_timeout_s=where.request_timeout_s)
        )
        if where.emulator is not None:
            # The emulator is loaded only for a run against it (25 ms of every other run).
            from engine.run.emulated import emulator_for, emulator_stats, logins_of

            emu = await stack.enter_async_context(emulator_for(runbook, where.emulator))
            _note(observer, f"emulator listening on {emu.url} (in-process, loopback only)")
            runbook = await _discovered(
                runbook,
                where,
                transport,
                resilience,
                observer,
                journal,
                resume,
                emulator=logins_of(emu, runbook),
            )
            connections = emulator_connections(runbook, logins_of(emu, runbook), transport)
        else:
            accounts = account_settings(runbook, os.environ)  # read once: files, variables
            runbook = await _discovered(
                runbook, where, transport, resilience, observer, journal, resume, accounts=accounts
            )
            connections = cloud_connections(
                runbook,
                endpoint=where.endpoint,
                credentials=where.credentials,
                accounts=accounts,
                transport=transport,
                resilience=resilience,
            )
        wired = wire(runbook, connections, transport, resilience, telemetry, stop)
        executor = Executor(
            runbook,
            wired.clients,
            run_id=run_id,
            endpoints=wired.endpoints,
            observer=observer,
            plan=plan,
            params=inputs.params,
            env=inputs.env,
            approver=approver,
            journal=journal,
            resume=resume,
            planned=binding.planned,
            approval_how=binding.how,
            plan_hash=binding.plan_hash,
            telemetry=telemetry,
            stop=stop,
        )
        if binding.plan_hash is not None and resume is None:
            executor.record_approval(approval(HOW_PLAN, True, HOW_PLAN, binding.plan_hash))
        result = await executor.run()
        if where.emulator is not None:
            stats = await emulator_stats(emu.url)
    result = dataclasses.replace(
        result,
        shard=inputs.shard,
        api_calls=wired.api_calls,
        api_resilience=resilience.stats.as_dict(),
    )
    return build_report(result), stats, result.storage_failure, result


def _stop_signal(
    runbook: Runbook, stop_files: Sequence[Path], resume: JournalState | None
) -> StopSignal | None:
    """The run's stop: the runbook's ``stop_when`` and the ``--stop-file``s; None without any
    (and no stop in the journal of the run resumed): no gate, nothing watched."""
    conditions = (*runbook.stop_when, *(StopCondition.stop_file(p) for p in stop_files))
    if not conditions and (resume is None or resume.stopped is None):
        return None
    return StopSignal(conditions)


async def _discovered(
    runbook: Runbook,
    where: Where,
    transport: Transport,
    resilience: Resilience,
    observer: RunObserver | None,
    journal: RunJournal | None,
    resume: JournalState | None,
    emulator: Mapping[str | None, EmulatorLogin] | None = None,
    accounts: Mapping[str, CredentialSettings] | None = None,
) -> Runbook:
    """The runbook with its discovery targets expanded (``engine.run.discovery``); a resumed
    run must find the projects it started with, in the same order, or it is refused."""
    if not runbook.discoveries:
        return runbook
    from engine.run.discovery import discover, discovery_auth, discovery_iam

    expanded, notes = await discover(
        runbook,
        transport=transport,
        iam_endpoint=discovery_iam(runbook, where.endpoint, emulator),
        auth_for=discovery_auth(runbook, transport, resilience, emulator, accounts or {}),
    )
    for note in notes:
        _note(observer, note)
    found = [t.project_id for t in expanded.targets[len(runbook.targets) :]]
    if resume is not None and resume.discovered is not None and resume.discovered != found:
        raise UsageError(
            "the accounts' projects changed since this run started (discovery found "
            f"{len(found)} project(s), the run started with {len(resume.discovered)}); a resume "
            "must act on the same targets: start a new run"
        )
    if journal is not None and resume is None:
        journal.discovered(found)
    return expanded


@asynccontextmanager
async def _signals_cancel_the_run(enabled: bool) -> AsyncIterator[None]:
    """SIGTERM handled like Ctrl-C: the first cancels the run, whose jobs are still reported;
    a second exits at once (the journal is whole at every line, so the run can be resumed)."""
    task = asyncio.current_task()
    if not enabled or task is None:
        yield
        return
    received = 0

    def handle() -> None:
        nonlocal received
        received += 1
        if received == 1:
            task.cancel()
            return
        raise KeyboardInterrupt  # asyncio lets it out of the loop: the caller exits 130

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, handle)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _webhooks(
    runbook: Runbook, urls: Sequence[str], where: Where, observer: RunObserver | None
) -> tuple[Webhook, ...]:
    """The run's webhooks (the runbook's ``notify:`` and ``urls``), checked before anything
    is sent; the environment is read now, as for the credentials."""
    return webhooks(
        runbook.notify,
        urls,
        allow_insecure_http=where.allow_insecure_http,
        environ=os.environ,
        warn=lambda text: _note(observer, text),
    )


def _need_approver(
    runbook: Runbook, approver: Approver | None, done: frozenset[str] = frozenset()
) -> None:
    """Refuse up front a run that would reach a gate nobody can answer."""
    gates = [s.id for s in runbook.steps if is_gate(s) and s.id not in done]
    if gates and approver is None:
        raise UsageError(
            f"step '{gates[0]}' asks for approval, but there is no terminal to ask on; "
            "run it on a terminal or pass --yes"
        )


# ----------------------------------------------------------------------------- resume


async def resume(
    directory: Path,
    *,
    file: Path | None = None,
    approver: Approver | None = None,
    observer: RunObserver | None = None,
    credentials_file: Path | None = None,
    allow_insecure_http: bool = False,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    formats: Iterable[str] = (),
    handle_signals: bool = False,
    approval_how: str = HOW_TERMINAL,
    notify: Sequence[str] = (),
    stop_files: Sequence[Path] = (),
) -> RunOutcome:
    """Take over the interrupted run in ``directory`` and carry it to the end.

    Retries the journal shows answered are not sent again; a retry whose answer was never
    recorded is reconciled by status; finished steps are not run again and verification picks
    up the jobs it had not settled. ``file`` must be the runbook the run started with.

    A run that had stopped (its journal says which condition tripped) stays stopped: nothing
    more is sent but its rollback and reconciliation; a stop file still there trips at once.
    """
    journal, state = RunJournal.take_over(directory)
    with _as_run(state.header.run_id):
        try:
            header = state.header
            check_resumable(header, directory, file)
            inputs = resumed_inputs(header, directory, file)
            _need_approver(inputs.runbook, approver, approved_gates(state, inputs.runbook))
            chosen = credentials_file or (
                None if header.credentials_file is None else Path(header.credentials_file)
            )
            where = endpoint_where(
                header.endpoint,
                credentials_file=chosen,
                allow_insecure_http=allow_insecure_http,
                request_timeout_s=request_timeout_s,
            )
            refuse_clear_text(inputs.runbook, where)
            hooks = _webhooks(inputs.runbook, notify, where, observer)
            at = datetime.now(UTC).isoformat(timespec="seconds")
            journal.resumed(at)
            state.resumes.append(at)
            # The interrupted run's reports stay (a link in a ticket must not die) until this
            # run's replace them, each whole (engine.report.files); `runbook report` reads the
            # journal meanwhile, as it is newer.
            done = sum(len(t.steps) for t in state.targets.values())
            _note(
                observer,
                f"resuming run {header.run_id} (started {header.started_at}): "
                f"{done} step(s) already finished across {len(inputs.runbook.targets)} target(s)",
            )
        except BaseException:
            journal.close()
            raise
        return await _carry_out(
            inputs,
            where,
            directory,
            header.run_id,
            journal=journal,
            approver=approver,
            observer=observer,
            formats=formats,
            handle_signals=handle_signals,
            resume=state,
            binding=Binding(
                how=HOW_PLAN if header.plan_hash else approval_how,
                plan_hash=header.plan_hash,
                planned=header.planned,
            ),
            hooks=hooks,
            stop_files=stop_files,
        )


# ----------------------------------------------------------------------------- past runs


def merge_runs(
    run_dirs: Sequence[Path], *, report_dir: Path | None = None, formats: Iterable[str] = ()
) -> RunOutcome:
    """Merge the reports of the shards of one run into one, written to ``report_dir`` (default
    ``runbook-reports/merged-<first run id>``); its exit code is the worst shard's."""
    merged = merge_reports([(str(d), past_report(d)) for d in run_dirs])
    directory = report_dir or DEFAULT_REPORTS / f"merged-{merged.run_id}"
    if any(directory.resolve() == d.resolve() for d in run_dirs):
        raise UsageError(f"--report-dir {directory} is one of the shards; choose another")
    written = write_reports(usable_directory(directory), merged, formats or tuple(REPORT_FILES))
    return RunOutcome(
        exit_code=merged.exit_code, run_dir=directory, report=merged, written=tuple(written)
    )


def _start_journal(
    directory: Path,
    run_id: str,
    inputs: Inputs,
    where: Where,
    observer: RunObserver | None,
    saved_plan: SavedPlan | None = None,
) -> RunJournal:
    started = time.time()
    header = RunHeader(
        run_id=run_id,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        started_epoch=started,
        runbook_path=str(inputs.path),
        runbook_sha256=runbook_digest(inputs.source),
        params=inputs.params,
        overrides=inputs.overrides,
        endpoint=where.endpoint,
        credentials_file=None if where.credentials_file is None else str(where.credentials_file),
        emulator=where.emulator is not None,
        shard=inputs.shard,
        limit=inputs.limit.as_json() if inputs.limit else None,
        plan_hash=None if saved_plan is None else saved_plan.plan_hash,
        planned=None if saved_plan is None else saved_plan.planned,
    )
    for name in inputs.params:
        if is_secret_param(name):
            _note(
                observer,
                f"warning: param '{name}' looks secret: it is kept out of the journal and the "
                "reports, so this run cannot be resumed if it is interrupted",
            )
    return RunJournal.start(directory, header, inputs.source)


# ----------------------------------------------------------------------------- the Python API


def run_runbook(
    runbook: str | Path,
    *,
    endpoint: str | None = None,
    emulator: bool | EmulatorSettings = False,
    report_dir: str | Path | None = None,
    params: Mapping[str, object] | None = None,
    yes: bool = False,
    formats: Iterable[str] | None = None,
    approver: Approver | None = None,
    observer: RunObserver | None = None,
    notify: Sequence[str] = (),
    telemetry: Telemetry | None = None,
) -> RunOutcome:
    """Run a runbook file and write its reports, as ``runbook run`` does; see
    ``run_runbook_async``. Owns an event loop: call it where none is running."""
    return asyncio.run(
        run_runbook_async(
            runbook,
            endpoint=endpoint,
            emulator=emulator,
            report_dir=report_dir,
            params=params,
            yes=yes,
            formats=formats,
            approver=approver,
            observer=observer,
            notify=notify,
            telemetry=telemetry,
        )
    )


async def run_runbook_async(
    runbook: str | Path,
    *,
    endpoint: str | None = None,
    emulator: bool | EmulatorSettings = False,
    report_dir: str | Path | None = None,
    params: Mapping[str, object] | None = None,
    yes: bool = False,
    formats: Iterable[str] | None = None,
    approver: Approver | None = None,
    observer: RunObserver | None = None,
    notify: Sequence[str] = (),
    telemetry: Telemetry | None = None,
) -> RunOutcome:
    """Run the runbook at ``runbook`` and write its reports and journal.

    Targets: ``emulator=True`` (or ``EmulatorSettings``) starts the embedded emulator; else
    ``endpoint`` for all targets, else the cloud; credentials from the environment, as the
    command line reads them. ``params`` are values as ``--param`` takes them (text, or a number
    or flag, written out as text and parsed per the param's type). An ``approve`` step needs
    ``yes=True`` or an ``approver``. ``formats``: report files besides report.json (default
    all). ``notify``: webhook URLs told when it waits for approval, is stopped by a guard rail
    and ends, besides the runbook's ``notify:``. Raises ``engine.errors.EngineError`` for
    invalid input; a run that went wrong is an outcome with exit code 1 (130 when
    cancelled), not an exception. ``telemetry``: spans and metrics to your own OpenTelemetry
    providers (``engine.telemetry.Telemetry``); by default the ``OTEL_*`` environment decides.
    """
    if emulator and endpoint is not None:
        raise UsageError("emulator and endpoint cannot be used together; pick one target")
    settings = emulator if isinstance(emulator, EmulatorSettings) else EmulatorSettings()
    where = Where(emulator=settings) if emulator else endpoint_where(endpoint)
    inputs = prepare(Path(runbook), params={k: _as_text(v) for k, v in (params or {}).items()})
    return await run(
        inputs,
        where,
        report_dir=None if report_dir is None else Path(report_dir),
        approver=approve_all if yes else approver,
        observer=observer,
        formats=tuple(REPORT_FILES) if formats is None else tuple(formats),
        notify=notify,
        telemetry=telemetry,
    )


def resume_run(
    run_dir: str | Path, *, yes: bool = False, approver: Approver | None = None
) -> RunOutcome:
    """Continue an interrupted run from its journal, as ``runbook resume`` does."""
    return asyncio.run(resume_run_async(run_dir, yes=yes, approver=approver))


async def resume_run_async(
    run_dir: str | Path, *, yes: bool = False, approver: Approver | None = None
) -> RunOutcome:
    return await resume(Path(run_dir), approver=approve_all if yes else approver)


def _note(observer: RunObserver | None, text: str) -> None:
    if observer is not None:
        observer.note(text)
    else:
        logger.info("%s", text)


def _as_text(value: object) -> str:
    """A param value as ``--param`` would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


__all__ = [
    "EmulatorSettings",
    "Inputs",
    "PlanOutcome",
    "RunOutcome",
    "Where",
    "merge_runs",
    "past_report",
    "plan",
    "prepare",
    "resume",
    "resume_run",
    "resume_run_async",
    "run",
    "run_runbook",
    "run_runbook_async",
]
