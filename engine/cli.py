"""The ``runbook`` command: the only place where errors become text and exit codes."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from engine import __version__
from engine.api.envvars import (
    IAM_DOMAIN_ENV,
    IAM_PASSWORD_ENV,
    IAM_USER_ENV,
    SDK_AK_ENV,
    SDK_SK_ENV,
    TOKEN_ENV,
)
from engine.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EngineError, UsageError

if TYPE_CHECKING:
    import asyncio

    from engine.actions.context import JobBook
    from engine.api.credentials import CredentialSettings
    from engine.api.resilience import Resilience
    from engine.api.transport import Transport
    from engine.emulator import Emulator, EmulatorConfig
    from engine.report.progress import LiveProgress
    from engine.run.executor import ApprovalRequest, Approver, Connection, RunObserver
    from engine.run.journal import JournalState, RunJournal
    from engine.run.outcome import StepOutcome
    from engine.runbook import Runbook, Step, Target

logger = logging.getLogger("engine")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("engine")
    root.handlers[:] = [handler]
    root.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v info, -vv debug.")
@click.version_option(__version__, prog_name="runbook")
def cli(verbose: int) -> None:
    """Declarative runbooks for Huawei Cloud DRS fleets: select, batch-retry, verify, report."""
    _configure_logging(verbose)


# --------------------------------------------------------------------------- validate


def _load(path: Path) -> Runbook:
    from engine.actions.catalog import CATALOG
    from engine.runbook import load_runbook

    return load_runbook(path, CATALOG)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: FILE:LINE:COL: message with the source line; json: an array for tools.",
)
@click.option("--lint", "with_lint", is_flag=True, help="Also report lint warnings.")
def validate(files: Sequence[Path], output_format: str, with_lint: bool) -> None:
    """Check runbook FILES; print every problem as FILE:LINE:COL: message.

    Exit 0 when all are valid (warnings do not count), 2 when any is not.
    """
    _check_files(files, output_format, with_lint=with_lint)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings.")
def lint(files: Sequence[Path], output_format: str, strict: bool) -> None:
    """Validate FILES and warn about risky runbooks (mutations without verification, ...).

    Exit 2 when a file is invalid; with --strict, 1 when there are warnings; else 0.
    """
    warnings = _check_files(files, output_format, with_lint=True)
    if strict and warnings:
        raise SystemExit(1)


def _check_files(files: Sequence[Path], output_format: str, *, with_lint: bool) -> int:
    """Validate (and lint) every file; print all diagnostics; exit 2 on errors; count warnings."""
    from engine.actions.catalog import MUTATING
    from engine.errors import Diagnostic, RunbookInvalidError
    from engine.runbook import diagnostics_json, lint, render_diagnostics

    found: list[Diagnostic] = []
    invalid = False
    for path in files:
        try:
            runbook = _load(path)
        except RunbookInvalidError as exc:
            invalid = True
            found.extend(exc.diagnostics)
            continue
        if with_lint:
            found.extend(lint(runbook, MUTATING))
        if output_format == "text":
            click.echo(f"{path}: ok", err=True)
    if output_format == "json":
        click.echo(diagnostics_json(found))
    elif found:
        click.echo(render_diagnostics(found, color=_color(sys.stdout)))
    if invalid:
        raise SystemExit(EXIT_USAGE)
    return sum(1 for d in found if d.severity == "warning")


def _color(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


@cli.command()
def schema() -> None:
    """Print the runbook JSON Schema (for editors and other tools)."""
    from engine.runbook.schema import schema_text

    click.echo(schema_text(), nl=False)


_TARGET_OPTIONS = (
    click.argument("file", type=click.Path(path_type=Path)),
    click.option(
        "--emulator",
        "use_emulator",
        is_flag=True,
        help="Start the embedded DRS emulator on a free loopback port, seeded with the "
        "runbook's targets, and run against it.",
    ),
    click.option(
        "--endpoint",
        metavar="URL",
        help=f"Send every target's calls to this base URL; credentials from ${SDK_AK_ENV}/"
        f"${SDK_SK_ENV}, ${TOKEN_ENV} or ${IAM_USER_ENV}/${IAM_PASSWORD_ENV}/${IAM_DOMAIN_ENV}.",
    ),
    click.option("--emulator-seed", type=int, default=0, show_default=True),
    click.option("--emulator-jobs", type=click.IntRange(1, 10_000), default=20, show_default=True),
    click.option(
        "--emulator-time-scale",
        type=click.FloatRange(min=0.0, min_open=True),
        default=1.0,
        show_default=True,
        help="Multiply the emulator's state-transition delays.",
    ),
    click.option(
        "--param",
        "param_values",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a runbook param (repeatable); wins over --params-file.",
    ),
    click.option(
        "--params-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A YAML or JSON mapping of param values.",
    ),
    click.option(
        "--credentials-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="YAML/JSON with ak + sk (+ security_token) or token; wins over the environment. "
        "Keeps secrets off the command line.",
    ),
    click.option("--max-jobs", type=click.IntRange(min=1), help="Override the runbook's max_jobs."),
    click.option(
        "--max-jobs-total",
        type=click.IntRange(min=1),
        help="Override the runbook's max_jobs_total.",
    ),
    click.option(
        "--max-errors", type=click.IntRange(min=0), help="Override the runbook's max_errors."
    ),
    click.option(
        "--shard",
        metavar="I/N",
        help="Take only every N-th target, starting at the I-th (split a fleet across CI "
        "runners; merge their reports with `runbook merge`).",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the summary."),
)


def _target_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments and options run and plan share: the runbook and where its targets are."""
    for option in reversed(_TARGET_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True, kw_only=True)
class _Where:
    """Where a run's targets are: the emulator (with its settings), one endpoint, or the cloud."""

    endpoint: str | None = None
    credentials: CredentialSettings | None = None
    emulator_seed: int | None = None
    emulator_jobs: int = 20
    emulator_time_scale: float = 1.0


def _prepare(options: Mapping[str, Any]) -> tuple[_Where, _Inputs]:
    """Where the targets are and the validated runbook with its params, from run/plan options."""
    if options["use_emulator"] and options["endpoint"]:
        raise UsageError("--emulator and --endpoint cannot be used together; pick one target")
    if options["use_emulator"]:
        where = _Where(
            emulator_seed=options["emulator_seed"],
            emulator_jobs=options["emulator_jobs"],
            emulator_time_scale=options["emulator_time_scale"],
        )
    else:
        endpoint = options["endpoint"]
        file = options["credentials_file"]
        where = _Where(
            endpoint=None if endpoint is None else _checked_endpoint(endpoint),
            credentials=None if file is None else _credentials_file(file),
        )
    inputs = _inputs(options["file"], options["param_values"], options["params_file"])
    overrides = {
        key: options[key]
        for key in ("max_jobs", "max_jobs_total", "max_errors")
        if options[key] is not None
    }
    if overrides:  # guard rails from the command line win over the runbook's
        inputs = dataclasses.replace(
            inputs, runbook=dataclasses.replace(inputs.runbook, **overrides)
        )
    if options["shard"] is not None:
        runbook = _sharded(inputs.runbook, options["shard"], options["file"])
        inputs = dataclasses.replace(inputs, runbook=runbook, shard=options["shard"].strip())
    return where, inputs


def _sharded(runbook: Runbook, text: str, file: Path) -> Runbook:
    """The runbook with only the targets of shard ``text`` (I/N)."""
    from engine.run.shard import Shard

    shard = Shard.parse(text)
    targets = shard.pick(runbook.targets)
    if not targets:
        raise UsageError(
            f"--shard {shard} takes no target: {file} has {len(runbook.targets)}, so N can be "
            f"at most {len(runbook.targets)}"
        )
    return dataclasses.replace(runbook, targets=targets)


_REPORT_DIR = click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The run directory: reports and journal (default ./runbook-reports/<run-id>/).",
)
# The report files a run can write; report.json is always written (the others render from it).
REPORT_FILES = {
    "json": "report.json",
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
}
_FORMATS = click.option(
    "--format",
    "formats",
    type=click.Choice(list(REPORT_FILES)),
    multiple=True,
    help="Report files to write (repeatable; default all four). report.json is always written; "
    "`runbook report` renders the others later.",
)
_YES = click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Approve every approve step without asking (for automation).",
)
# What a resumed run takes from its journal, never from the command line.
_FIXED_BY_RUN = (
    "use_emulator",
    "endpoint",
    "param_values",
    "params_file",
    "max_jobs",
    "max_jobs_total",
    "max_errors",
    "shard",
)


def _new_run_id() -> str:
    """When the run started (UTC) and a few random hex digits: sortable and unique enough."""
    import secrets

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@cli.command()
@_target_options
@_REPORT_DIR
@_FORMATS
@_YES
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help="Continue the interrupted run RUN_ID (in --report-dir, default ./runbook-reports/RUN_ID).",
)
def run(
    report_dir: Path | None,
    quiet: bool,
    yes: bool,
    resume_id: str | None,
    formats: tuple[str, ...],
    **options: Any,
) -> None:
    """Run the runbook FILE and write its reports and journal to its run directory.

    Exit 0 when every selected job ends healthy, 1 when some did not recover or a step failed,
    2 when the runbook or the command line is invalid, 130 when interrupted (resume it with
    --resume RUN_ID or `runbook resume RUN_DIR`).
    """
    if resume_id is not None:
        given = [name for name in _FIXED_BY_RUN if options[name] not in (None, False, ())]
        if given:
            flags = {"use_emulator": "--emulator", "param_values": "--param"}
            flag = flags.get(given[0], "--" + given[0].replace("_", "-"))
            raise UsageError(
                f"{flag} cannot be combined with --resume: a resumed run keeps the targets, "
                "params and limits it started with"
            )
        directory = report_dir or Path("runbook-reports") / resume_id
        _resume_run(
            directory,
            file=options["file"],
            quiet=quiet,
            yes=yes,
            credentials_file=options["credentials_file"],
            formats=formats,
        )
        return
    where, inputs = _prepare(options)
    _check_approvable(inputs.runbook, yes)
    run_id = _new_run_id()
    directory = _report_directory(report_dir or Path("runbook-reports") / run_id)
    journal = _start_journal(directory, run_id, inputs, where, options)
    _drop_stale_reports(directory)
    _run_and_report(
        inputs, where, directory, run_id, quiet=quiet, yes=yes, journal=journal, formats=formats
    )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@_FORMATS
@_YES
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Credentials for the resumed run (default: the file the run started with, if any, "
    "else the environment).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the summary.")
def resume(
    run_dir: Path,
    formats: tuple[str, ...],
    yes: bool,
    credentials_file: Path | None,
    quiet: bool,
) -> None:
    """Continue the interrupted run in RUN_DIR from its journal.

    Retries the journal shows acknowledged are not sent again; a retry whose answer was never
    recorded is reconciled by querying the job's status; finished steps are not run again and
    verification picks up the jobs it had not settled. Exit codes as for `runbook run`.
    """
    _resume_run(
        run_dir,
        file=None,
        quiet=quiet,
        yes=yes,
        credentials_file=credentials_file,
        formats=formats,
    )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(list(REPORT_FILES)),
    default="md",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of stdout.",
)
def report(run_dir: Path, output_format: str, output: Path | None) -> None:
    """Render the report of a past run in RUN_DIR, without touching the API.

    From its report.json; for a run killed before it wrote one, from its journal (jobs as far
    as the journal goes).
    """
    from engine.report.render import render

    document = _past_report(run_dir)
    text = render(document, output_format)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)


@cli.command()
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False)
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write the merged reports (default ./runbook-reports/merged-<first run id>/).",
)
@_FORMATS
def merge(run_dirs: Sequence[Path], report_dir: Path | None, formats: tuple[str, ...]) -> None:
    """Merge the reports of RUN_DIRS, the shards of one run (`run --shard I/N`), into one.

    Writes report.json and the other formats to --report-dir (default
    ./runbook-reports/merged-<first run id>/), prints the summary, and exits with the worst
    exit code of the shards, so a CI job after the shards can gate on the whole fleet.
    """
    from engine.report.merge import merge_reports
    from engine.report.render import terminal_summary

    merged = merge_reports([(str(d), _past_report(d)) for d in run_dirs])
    directory = report_dir or Path("runbook-reports") / f"merged-{merged['run_id']}"
    if any(directory.resolve() == d.resolve() for d in run_dirs):
        raise UsageError(f"--report-dir {directory} is one of the shards; choose another")
    written = _write_reports(
        _report_directory(directory), merged, None, formats or tuple(REPORT_FILES)
    )
    click.echo(terminal_summary(merged), nl=False)
    click.echo("reports: " + ", ".join(str(p) for p in written))
    raise SystemExit(int(merged["exit_code"]))


def _past_report(run_dir: Path) -> dict[str, Any]:
    """report.json of a run directory, or the report its journal gives."""
    from engine.report.build import build_report, result_from_journal
    from engine.run.journal import JOURNAL_NAME, RUNBOOK_COPY, read_journal

    path = run_dir / "report.json"
    if path.is_file():
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        return document
    if not (run_dir / JOURNAL_NAME).is_file():
        raise UsageError(f"{run_dir} has neither report.json nor a journal; give a run directory")
    state = read_journal(run_dir / JOURNAL_NAME)
    runbook = _load(run_dir / RUNBOOK_COPY)
    if state.header.shard is not None:  # the journal's target indices count the shard's targets
        runbook = _sharded(runbook, state.header.shard, run_dir / RUNBOOK_COPY)
    return build_report(result_from_journal(state, runbook))


def _check_approvable(runbook: Runbook, yes: bool, approved: frozenset[str] = frozenset()) -> None:
    """Refuse up front a run that would have to ask on a terminal it does not have."""
    from engine.run.executor import APPROVE

    gates = [s.id for s in runbook.steps if s.action == APPROVE and s.id not in approved]
    if gates and not yes and not sys.stdin.isatty():
        raise UsageError(
            f"step '{gates[0]}' asks for approval, but there is no terminal to ask on; "
            "run it on a terminal or pass --yes"
        )


def _start_journal(
    directory: Path, run_id: str, inputs: _Inputs, where: _Where, options: Mapping[str, Any]
) -> RunJournal:
    import time

    from engine.run.journal import RunHeader, RunJournal, runbook_digest

    file: Path = options["file"]
    source = _read_bytes(file)
    guards = ("max_jobs", "max_jobs_total", "max_errors")
    credentials: Path | None = options["credentials_file"]
    started = time.time()
    header = RunHeader(
        run_id=run_id,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        started_epoch=started,
        runbook_path=str(file),
        runbook_sha256=runbook_digest(source),
        params=inputs.params,
        overrides={k: options[k] for k in guards if options[k] is not None},
        endpoint=where.endpoint,
        credentials_file=None if credentials is None else str(credentials),
        emulator=where.emulator_seed is not None,
        shard=inputs.shard,
    )
    from engine.run.journal import is_secret_param

    for name in inputs.params:
        if is_secret_param(name):
            click.echo(
                f"warning: param '{name}' looks secret: it is kept out of the journal and the "
                "reports, so this run cannot be resumed if it is interrupted",
                err=True,
            )
    return RunJournal.start(directory, header, source)


def _resume_run(
    directory: Path,
    *,
    file: Path | None,
    quiet: bool,
    yes: bool,
    credentials_file: Path | None,
    formats: tuple[str, ...] = (),
) -> None:
    """Take over the interrupted run in ``directory`` and carry it to the end."""
    from engine.run.journal import RUNBOOK_COPY, RunJournal, is_secret_param, runbook_digest

    journal, state = RunJournal.take_over(directory)
    try:
        header = state.header
        if header.emulator:
            raise UsageError(
                f"run {header.run_id} ran against the in-process emulator, which ended with it; "
                "there is nothing to resume (start a new run)"
            )
        secret = [name for name in header.params if is_secret_param(name)]
        if secret:
            raise UsageError(
                f"run {header.run_id} had the secret param '{secret[0]}', which the journal does "
                "not keep; it cannot be resumed, start a new run"
            )
        copy = directory / RUNBOOK_COPY
        if file is not None and runbook_digest(_read_bytes(file)) != header.runbook_sha256:
            raise UsageError(
                f"{file} changed since run {header.run_id} started; resume with the file it "
                f"started with, or run `runbook resume {directory}` (it uses the copy in {copy})"
            )
        source = Path(header.runbook_path)
        if file is None and not (
            source.is_file() and runbook_digest(_read_bytes(source)) == header.runbook_sha256
        ):
            source = copy  # the original moved or changed: the run goes on with its own copy
        runbook = _load(file or source)
        if header.overrides:
            overrides: dict[str, Any] = dict(header.overrides)
            runbook = dataclasses.replace(runbook, **overrides)
        if header.shard is not None:  # the journal's target indices count the shard's targets
            runbook = _sharded(runbook, header.shard, file or source)
        # A gate approved before the interruption is not asked again, so it needs no terminal.
        approved = frozenset.intersection(
            *(
                frozenset(
                    k for k, v in state.target(i).steps.items() if v.status.value == "succeeded"
                )
                for i in range(len(runbook.targets))
            )
        )
        _check_approvable(runbook, yes, approved)
        inputs = _Inputs(
            runbook=runbook,
            params=header.params,
            shard=header.shard,
            env={name: os.environ[name] for name in runbook.env if name in os.environ},
        )
        chosen = credentials_file or (
            None if header.credentials_file is None else Path(header.credentials_file)
        )
        where = _Where(
            endpoint=header.endpoint,
            credentials=None if chosen is None else _credentials_file(chosen),
        )
        at = datetime.now(UTC).isoformat(timespec="seconds")
        journal.resumed(at)
        state.resumes.append(at)
        _drop_stale_reports(directory)
        done = sum(len(t.steps) for t in state.targets.values())
        click.echo(
            f"resuming run {header.run_id} (started {header.started_at}): "
            f"{done} step(s) already finished across {len(runbook.targets)} target(s)",
            err=True,
        )
        _run_and_report(
            inputs,
            where,
            directory,
            header.run_id,
            quiet=quiet,
            yes=yes,
            journal=journal,
            resume=state,
            formats=formats,
        )
    finally:
        journal.close()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _run_and_report(
    inputs: _Inputs,
    where: _Where,
    directory: Path,
    run_id: str,
    *,
    quiet: bool,
    yes: bool,
    journal: RunJournal,
    resume: JournalState | None = None,
    formats: tuple[str, ...] = (),
) -> None:
    import asyncio

    from engine.report.render import terminal_summary

    try:
        report, stats = asyncio.run(
            _execute(
                inputs,
                run_id=run_id,
                where=where,
                quiet=quiet,
                approver=_approver(yes),
                journal=journal,
                resume=resume,
            )
        )
    finally:
        journal.close()
    written = _write_reports(directory, report, stats, formats or tuple(REPORT_FILES))
    click.echo(terminal_summary(report), nl=False)
    click.echo("reports: " + ", ".join(str(p) for p in written))
    if report["interrupted"]:
        click.echo(f"resume with: runbook resume {directory}", err=True)
    raise SystemExit(int(report["exit_code"]))


@cli.command()
@_target_options
def plan(quiet: bool, **options: Any) -> None:
    """Show what running FILE would do, per project, making only read-only API calls.

    Selection runs for real; mutating steps list the jobs they would send; verification does
    not run. Exit 0 when the plan was made, 1 when a step failed, 2 on invalid input.
    """
    import asyncio

    from engine.report.render import plan_summary

    where, inputs = _prepare(options)
    run_id = "plan-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report, _ = asyncio.run(_execute(inputs, run_id=run_id, where=where, quiet=quiet, plan=True))
    click.echo(plan_summary(report), nl=False)
    raise SystemExit(int(report["exit_code"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Inputs:
    """A validated runbook with its bound params and the environment it may read."""

    runbook: Runbook
    params: Mapping[str, Any]
    env: Mapping[str, str]
    shard: str | None = None  # --shard I/N: the runbook holds only that shard's targets


def _inputs(file: Path, param_values: Sequence[str], params_file: Path | None) -> _Inputs:
    from engine.runbook import bind_params

    given: dict[str, str] = {}
    for item in param_values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param expects NAME=VALUE, got '{item}'")
        given[name.strip()] = value
    runbook = _load(file)
    params = bind_params(runbook, given, params_file)
    env = {name: os.environ[name] for name in runbook.env if name in os.environ}
    return _Inputs(runbook=runbook, params=params, env=env)


def _credentials_file(path: Path) -> CredentialSettings:
    """Explicit credentials from a file: ak + sk (+ security_token), or token."""
    import yaml

    from engine.api.credentials import CredentialSettings

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read credentials file {path}: {type(exc).__name__}") from None
    allowed = {"ak", "sk", "security_token", "token"}
    if not isinstance(data, dict) or not data or not set(data) <= allowed:
        raise UsageError(
            f"credentials file {path} must be a mapping of {', '.join(sorted(allowed))}"
        )
    if not all(isinstance(v, str) and v for v in data.values()):
        raise UsageError(f"credentials file {path}: every value must be a non-empty string")
    return CredentialSettings(
        ak=data.get("ak"),
        sk=data.get("sk"),
        security_token=data.get("security_token"),
        token=data.get("token"),
        origin=f"credentials file {path}",
    )


def _checked_endpoint(url: str) -> str:
    """An --endpoint must be an http(s) base URL with a host and no credentials in it."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(
            f"--endpoint must be an http(s) URL such as https://drs.example:8443, got '{url}'"
        )
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"--endpoint must not carry credentials; set {TOKEN_ENV} or the {IAM_USER_ENV} "
            "variables instead"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"--endpoint must be a base URL without query or fragment, got '{url}'")
    return url.rstrip("/")


def _report_directory(directory: Path) -> Path:
    """Create the report directory up front: a run must not end with nowhere to write."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write reports to {directory}: {exc.strerror or exc}; choose --report-dir"
        ) from exc
    return directory


class _ProgressLines:
    """Plain progress lines on stderr, one per step start and finish."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        pass

    def step_started(self, target: Target, step: Step) -> None:
        if not self._quiet:
            click.echo(f"[{target.label}] {step.id} ({step.action}) ...", err=True)

    @property
    def shows_plan(self) -> bool:
        return not self._quiet

    def about_to_change(self, request: ApprovalRequest) -> None:
        from engine.report.render import approval_summary

        if not self._quiet:
            click.echo(approval_summary(request, heading="about to change"), err=True)

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        if self._quiet:
            return
        detail = outcome.message or ", ".join(
            f"{k}: {len(v) if isinstance(v, list) else v}" for k, v in outcome.outputs.items()
        )
        click.echo(
            f"[{target.label}] {outcome.step_id} {outcome.status.value} in "
            f"{outcome.duration_s:.1f}s: {detail}",
            err=True,
        )


def _drop_stale_reports(directory: Path) -> None:
    """Reports of an earlier run (or of this one before it was interrupted) would outlive it:
    until this run writes its own, `runbook report` must read its journal, not them."""
    for name in (*REPORT_FILES.values(), "emulator-stats.json"):
        (directory / name).unlink(missing_ok=True)


async def _ask_yes_no(question: str) -> bool:
    """y/N on the terminal without blocking the event loop, so Ctrl-C or SIGTERM still stop
    the run while it waits (and its report is written)."""
    import asyncio

    try:
        fd = sys.stdin.fileno()
        interactive = os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        interactive = False
    if not interactive:  # e.g. a test harness: click's own prompt
        return click.confirm(question, default=False, err=True)
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[str] = loop.create_future()

    def readable() -> None:
        if not answered.done():
            answered.set_result(sys.stdin.readline())

    click.echo(f"{question} [y/N]: ", err=True, nl=False)
    loop.add_reader(fd, readable)
    try:
        answer = await answered
    finally:
        loop.remove_reader(fd)
    return answer.strip().lower() in {"y", "yes"}


def _approver(yes: bool) -> Approver:
    """Show what is about to be changed; --yes approves, otherwise ask y/N on the terminal."""
    from engine.report.render import approval_summary

    async def approve(request: ApprovalRequest) -> bool:
        click.echo(approval_summary(request), err=True)
        if yes:
            click.echo("approved (--yes)", err=True)
            return True
        return await _ask_yes_no("go ahead?")

    return approve


def _collect_garbage_less_often() -> None:
    """A run keeps every job's record and timeline until its report is written; with Python's
    default thresholds (700, 10, 10) the collector rescans them over and over, 2 s of a 14 s
    run at 100,000 jobs (bench/). Objects alive from startup are frozen out of the scans, and
    the young generation is collected after 1,000,000 allocations instead of 700: by then most
    of what a run allocates has been freed by reference counting and is never scanned (GC time
    at 100,000 jobs: 0.27 s with 100,000, 0.04 s with 1,000,000, same peak RSS)."""
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 100)


async def _execute(
    inputs: _Inputs,
    *,
    run_id: str,
    where: _Where,
    quiet: bool,
    plan: bool = False,
    approver: Approver | None = None,
    journal: RunJournal | None = None,
    resume: JournalState | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Execute; returns the report document and, with --emulator, the emulator's stats.

    SIGTERM is handled like Ctrl-C: the first stops the run, whose jobs are still reported;
    a second exits at once (the journal is whole at every line, so the run can be resumed).
    """
    import asyncio

    from engine.api.resilience import Resilience
    from engine.api.transport import AiohttpTransport
    from engine.report.build import build_report
    from engine.run.executor import Executor

    _collect_garbage_less_often()  # after the imports, so that they are frozen too
    runbook = inputs.runbook
    live = _live_progress(quiet, plan)
    observer: RunObserver = _ProgressLines(quiet) if live is None else live
    if live is not None and approver is not None:
        approver = _asking_on_a_clear_screen(approver, live)
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _on_sigterm(task))
    stats: dict[str, Any] | None = None
    resilience = Resilience()
    async with AsyncExitStack() as stack:
        transport = await stack.enter_async_context(AiohttpTransport())
        if where.emulator_seed is not None:
            emu = await stack.enter_async_context(_start_emulator(runbook, where))
            click.echo(f"emulator listening on {emu.url} (in-process, loopback only)", err=True)
            connections = _emulator_connections(runbook, emu, transport)
        else:
            connections = _connections(runbook, where, transport, resilience)
        executor = Executor(
            runbook,
            run_id=run_id,
            transport=transport,
            connections=connections,
            observer=observer,
            plan=plan,
            params=inputs.params,
            env=inputs.env,
            resilience=resilience,
            approver=approver,
            journal=journal,
            resume=resume,
        )
        if live is None:
            result = await executor.run()
        else:
            async with asyncio.TaskGroup() as group:
                redraw = group.create_task(live.keep_redrawing())
                try:
                    result = await executor.run()
                finally:
                    redraw.cancel()
                    live.stop()
        if where.emulator_seed is not None:
            stats = await _emulator_stats(emu.url)
    result.shard = inputs.shard
    return build_report(result), stats


def _live_progress(quiet: bool, plan: bool) -> LiveProgress | None:
    """A table redrawn in place, on a terminal only: plain lines in CI, in pipes and logs."""
    if quiet or plan or not sys.stderr.isatty() or os.environ.get("CI"):
        return None
    from rich.console import Console

    from engine.report.progress import LiveProgress

    return LiveProgress(Console(stderr=True))


def _asking_on_a_clear_screen(approver: Approver, live: LiveProgress) -> Approver:
    async def approve(request: ApprovalRequest) -> bool:
        live.pause()
        try:
            return await approver(request)
        finally:
            live.resume()

    return approve


def _on_sigterm(task: asyncio.Task[Any]) -> Callable[[], None]:
    """Like asyncio's own Ctrl-C handling: cancel the run first, then stop at once."""
    received = 0

    def handle() -> None:
        nonlocal received
        received += 1
        if received == 1:
            task.cancel()
            return
        raise KeyboardInterrupt  # asyncio lets it out of the loop: main() exits 130

    return handle


def _write_reports(
    directory: Path,
    report: dict[str, Any],
    stats: dict[str, Any] | None,
    formats: Sequence[str],
) -> list[Path]:
    from engine.report.render import json_bytes, render_lines

    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / REPORT_FILES["json"]]
    written[0].write_bytes(json_bytes(report))
    for name in (f for f in REPORT_FILES if f in formats and f != "json"):
        path = directory / REPORT_FILES[name]
        _write_lines(path, render_lines(report, name))
        written.append(path)
    if stats is not None:
        written.append(directory / "emulator-stats.json")
        written[-1].write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        per_job = stats.get("retry_requests_per_job", {})
        paused = stats.get("pause_requests_per_job", {})
        click.echo(
            f"emulator saw {stats.get('mutating_requests', 0)} mutating request(s); retries named "
            f"{len(per_job)} job(s), at most {max(per_job.values(), default=0)} time(s) each"
            + (
                f"; pauses named {len(paused)} job(s), at most {max(paused.values())} time(s) each"
                if paused
                else ""
            ),
            err=True,
        )
    return written


def _write_lines(path: Path, lines: Sequence[str], *, chunk: int = 1000) -> None:
    """``lines`` to ``path``, each ended by a newline, joined a thousand at a time: as cheap as
    one join, without holding the whole text (and its UTF-8) in memory at once."""
    with path.open("w", encoding="utf-8") as file:
        for start in range(0, len(lines), chunk):
            file.write("\n".join(lines[start : start + chunk]))
            file.write("\n")


def _start_emulator(runbook: Runbook, where: _Where) -> Emulator:
    from engine.emulator import Emulator, EmulatorConfig, ProjectSpec

    seen: dict[str, ProjectSpec] = {}
    for target in runbook.targets:
        seen.setdefault(
            target.project_id,
            ProjectSpec(project_id=target.project_id, region=target.region or "cn-north-4"),
        )
    config = EmulatorConfig(
        projects=tuple(seen.values()),
        jobs_per_project=where.emulator_jobs,
        seed=where.emulator_seed or 0,
        time_scale=where.emulator_time_scale,
    )
    return Emulator(config)


def _emulator_connections(
    runbook: Runbook, emu: Emulator, transport: Transport
) -> dict[Target, Connection]:
    from engine.api.auth import IamPasswordAuth
    from engine.run.executor import Connection

    config = emu.config
    return {
        target: Connection(
            endpoint=emu.url,
            auth=IamPasswordAuth(
                transport=transport,
                iam_endpoint=emu.url,
                user=config.user,
                password=config.password,
                domain=config.domain,
                project_id=target.project_id,
            ),
        )
        for target in runbook.targets
    }


def _connections(
    runbook: Runbook, where: _Where, transport: Transport, resilience: Resilience
) -> dict[Target, Connection]:
    """Real endpoints (or one --endpoint for all), with credentials resolved per target."""
    from engine.api.credentials import describe_source, resolve_credentials
    from engine.api.endpoints import drs_endpoint
    from engine.run.executor import Connection

    endpoint = where.endpoint
    connections: dict[Target, Connection] = {}
    for target in runbook.targets:
        base = endpoint or target.endpoint or drs_endpoint(target.region or "")
        try:
            auth = resolve_credentials(
                explicit=where.credentials,
                env=os.environ,
                project_id=target.project_id,
                region=target.region,
                iam_endpoint=endpoint or (None if target.region else base),
                transport=transport,
                resilience=resilience,
            )
        except UsageError as exc:
            raise UsageError(
                f"{exc} (or use --emulator to run against the embedded emulator)"
            ) from exc
        connections[target] = Connection(endpoint=base.rstrip("/"), auth=auth)
    logger.info("credentials: %s", describe_source(explicit=where.credentials, env=os.environ))
    return connections


async def _emulator_stats(url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


# --------------------------------------------------------------------------- emulator


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--allow-non-loopback",
    is_flag=True,
    help="Allow --host to be an address other than loopback (the emulator has demo credentials).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to bind; 0 picks a free one.",
)
@click.option("--projects", type=click.IntRange(1, 10_000), default=3, show_default=True)
@click.option(
    "--jobs",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Top-level jobs per project.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every state-transition delay.",
)
@click.option(
    "--parent-refusal",
    type=click.Choice(["per_job", "request"]),
    default="per_job",
    show_default=True,
    help="How a dual-active parent in batch-retry-task is refused: a per-job failure "
    "in a 200, or a 400 for the whole request.",
)
@click.option(
    "--faults",
    default="",
    metavar="LIST",
    help="Injected faults, e.g. latency=50ms,error_rate=0.05,reset_rate=0.02,answer_delay=2s,"
    "lost_response_rate=0.02,slow_rate=0.01,slow=3s (deterministic under --seed).",
)
@click.option(
    "--rate-limit", metavar="RATE", help="Throttle each API per user, e.g. 20/s (429 APIGW.0308)."
)
@click.option(
    "--token-ttl",
    metavar="DURATION",
    help="Lifetime of IAM tokens, e.g. 5s (then 401 APIGW.0307); default 24h.",
)
@click.option(
    "--expire-static-token",
    is_flag=True,
    help="Let the pre-issued token expire after --token-ttl too.",
)
def emulator(
    host: str,
    allow_non_loopback: bool,
    port: int,
    projects: int,
    jobs: int,
    seed: int,
    time_scale: float,
    parent_refusal: str,
    faults: str,
    rate_limit: str | None,
    token_ttl: str | None,
    expire_static_token: bool,
) -> None:
    """Serve the DRS emulator until interrupted.

    The first line on stdout is one JSON object: url, projects, token, user, password, domain,
    ak, sk. It binds 127.0.0.1 unless told otherwise.
    """
    import asyncio

    from engine.emulator import EmulatorConfig, FaultConfig, parse_duration, parse_rate

    if host not in LOOPBACK_HOSTS and not allow_non_loopback:
        raise UsageError(
            f"--host {host} is not a loopback address; the emulator serves demo credentials, "
            "add --allow-non-loopback if you really mean it"
        )
    try:
        config = EmulatorConfig(
            projects=EmulatorConfig.generate_projects(projects, seed),
            jobs_per_project=jobs,
            seed=seed,
            time_scale=time_scale,
            parent_refusal="request" if parent_refusal == "request" else "per_job",
            faults=FaultConfig.parse(faults),
            rate_limit_per_s=None if rate_limit is None else parse_rate(rate_limit),
            token_ttl_s=86400.0 if token_ttl is None else parse_duration(token_ttl),
            expire_static_token=expire_static_token,
        )
    except ValueError as exc:
        raise UsageError(f"emulator settings: {exc}") from exc
    asyncio.run(_serve_emulator(config, host, port))


async def _serve_emulator(config: EmulatorConfig, host: str, port: int) -> None:
    import asyncio

    from engine.emulator import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(config, host=host, port=port) as emu:
        click.echo(json.dumps(emu.describe()))
        click.echo(f"DRS emulator listening on {emu.url} (IAM at {emu.url}/v3/auth/tokens)")
        click.echo(f"stats: GET {emu.url}/_emulator/stats; stop with Ctrl-C")
        sys.stdout.flush()
        await stop.wait()


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command, turn engine errors into one message and an exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except EngineError as exc:
        click.echo(_error_text(exc), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("runbook: aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("runbook: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK)


def _error_text(exc: EngineError) -> str:
    """Diagnostics with their source lines; any other engine error as one sentence."""
    from engine.errors import RunbookInvalidError
    from engine.runbook import render_diagnostics

    if isinstance(exc, RunbookInvalidError):
        return render_diagnostics(exc.diagnostics, color=_color(sys.stderr))
    return f"runbook: {exc.format_message()}"
