"""``runbook run``, ``resume`` and ``plan``: options in, ``engine.session`` called, outcome out.

What is shown while a run goes on is chosen here (a live table on a terminal, plain lines in CI,
pipes and with ``--log-format json``, nothing with ``-q``), and so is how approvals are asked
(``--yes``, or y/N on the terminal); everything else is the session's. Every line is logged
(``engine.cli.say``, ``ProgressLines``) but the y/N prompt, which a human at the terminal reads.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from engine import session
from engine.api.bounds import DEFAULT_REQUEST_TIMEOUT_S, MAX_REQUEST_TIMEOUT_S
from engine.api.envvars import (
    IAM_DOMAIN_ENV,
    IAM_PASSWORD_ENV,
    IAM_USER_ENV,
    SDK_AK_ENV,
    SDK_SK_ENV,
    TOKEN_ENV,
)
from engine.cli import FORMATS, chosen_log_format, say
from engine.errors import UsageError
from engine.logs import TEXT, run_context
from engine.report.progress import ProgressLines
from engine.report.terminal import approval_summary, plan_summary, terminal_summary
from engine.run.approval import HOW_TERMINAL, HOW_YES, ApprovalRequest, Approver
from engine.run.executor import RunObserver
from engine.run.inputs import (
    GUARD_RAILS,
    EmulatorSettings,
    Inputs,
    TargetLimit,
    Where,
    endpoint_where,
)
from engine.run.planfile import DEFAULT_MAX_AGE_S
from engine.runbook.params import MAX_GUARD_RAIL
from engine.units import parse_duration

if TYPE_CHECKING:
    from engine.report.live import LiveProgress

T = TypeVar("T")

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
    click.option(
        "--max-jobs",
        type=click.IntRange(min=1, max=MAX_GUARD_RAIL),
        help="Override the runbook's max_jobs.",
    ),
    click.option(
        "--max-jobs-total",
        type=click.IntRange(min=1, max=MAX_GUARD_RAIL),
        help="Override the runbook's max_jobs_total.",
    ),
    click.option(
        "--max-errors",
        type=click.IntRange(min=0, max=MAX_GUARD_RAIL),
        help="Override the runbook's max_errors.",
    ),
    click.option(
        "--target",
        "only_targets",
        multiple=True,
        metavar="NAME",
        help="Run only this target (its name or project id; shell globs such as 'orders-*'; "
        "repeatable).",
    ),
    click.option(
        "--skip-target",
        "skip_targets",
        multiple=True,
        metavar="NAME",
        help="Leave this target out (name, project id or glob; repeatable).",
    ),
    click.option(
        "--shard",
        metavar="I/N",
        help="Take only every N-th target, starting at the I-th (split a fleet across CI "
        "runners; merge their reports with `runbook merge`).",
    ),
    click.option(
        "--shard-by",
        type=click.Choice(["target", "account", "region"]),
        help="What --shard splits: targets (default), or whole accounts or regions, so shards "
        "never share an account's rate budget.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the summary."),
)


def _request_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    if value is None:
        return DEFAULT_REQUEST_TIMEOUT_S
    try:
        seconds = parse_duration(value, limit_s=MAX_REQUEST_TIMEOUT_S)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (at most 1h)") from None
    if seconds <= 0:
        raise click.BadParameter(f"must be more than zero, got {value!r}")
    return seconds


# How every request of run, plan and resume may travel.
_NETWORK_OPTIONS = (
    click.option(
        "--allow-insecure-http",
        is_flag=True,
        help="Allow plain http:// to hosts other than this machine (credentials then cross "
        "the network in clear). Loopback is always allowed.",
    ),
    click.option(
        "--request-timeout",
        "request_timeout_s",
        metavar="DURATION",
        callback=_request_timeout,
        help=f"Most one request may take, from connecting to its last byte "
        f"(default {DEFAULT_REQUEST_TIMEOUT_S:g}s).",
    ),
)


def _target_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments and options run and plan share: the runbook and where its targets are."""
    for option in reversed(_TARGET_OPTIONS + _NETWORK_OPTIONS):
        command = option(command)
    return command


def _network_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_NETWORK_OPTIONS):
        command = option(command)
    return command


# Where run, apply and resume tell what happens (engine.run.notify); the runbook's notify: too.
_NOTIFY = click.option(
    "--notify",
    "notify",
    multiple=True,
    metavar="URL",
    help="POST a JSON notification (with a Slack-compatible text field) to this webhook when "
    "the run waits for approval, when a guard rail stops it, and when it ends (repeatable). "
    "The URL is taken as given ($NAME is not expanded) and is a secret that ps shows here: "
    "prefer the runbook's notify: with url_env.",
)

_STOP_FILE = click.option(
    "--stop-file",
    "stop_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PATH",
    help="Stop the run when this file appears (repeatable): nothing more is changed, what is "
    "in flight is reconciled, the rollback runs where a change was accepted; exit 1.",
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
    "shard_by",
    "only_targets",
    "skip_targets",
)


@click.command()
@_target_options
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The run directory: reports and journal (default ./runbook-reports/<run-id>/).",
)
@FORMATS
@_YES
@_NOTIFY
@_STOP_FILE
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
    notify: tuple[str, ...],
    stop_files: tuple[Path, ...],
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
            flags = {
                "use_emulator": "--emulator",
                "param_values": "--param",
                "only_targets": "--target",
                "skip_targets": "--skip-target",
            }
            flag = flags.get(given[0], "--" + given[0].replace("_", "-"))
            raise UsageError(
                f"{flag} cannot be combined with --resume: a resumed run keeps the targets, "
                "params and limits it started with"
            )
        directory = report_dir or session.DEFAULT_REPORTS / resume_id
        _resume(directory, options["file"], quiet, yes, options, formats, notify, stop_files)
        return
    where, inputs = _where_and_inputs(options)
    observer, approver = _terminal(quiet=quiet, yes=yes)
    outcome = _in_a_loop(
        session.run(
            inputs,
            where,
            report_dir=report_dir,
            approver=approver,
            observer=observer,
            formats=formats,
            handle_signals=True,
            approval_how=HOW_YES if yes else HOW_TERMINAL,
            notify=notify,
            stop_files=stop_files,
        )
    )
    _show(outcome)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@FORMATS
@_YES
@_STOP_FILE
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Credentials for the resumed run (default: the file the run started with, if any, "
    "else the environment).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the summary.")
@_NOTIFY
@_network_options
def resume(
    run_dir: Path,
    formats: tuple[str, ...],
    yes: bool,
    quiet: bool,
    notify: tuple[str, ...],
    stop_files: tuple[Path, ...],
    **options: Any,
) -> None:
    """Continue the interrupted run in RUN_DIR from its journal.

    Retries the journal shows acknowledged are not sent again; a retry whose answer was never
    recorded is reconciled by querying the job's status; finished steps are not run again and
    verification picks up the jobs it had not settled. Exit codes as for `runbook run`.
    """
    _resume(run_dir, None, quiet, yes, options, formats, notify, stop_files)


@click.command()
@_target_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PLAN.json",
    help="Also write the plan to this file, to review and then run with `runbook apply`.",
)
def plan(quiet: bool, out: Path | None, **options: Any) -> None:
    """Show what running FILE would do, per project, making only read-only API calls.

    Selection runs for real; mutating steps list the jobs they would send; verification does
    not run. With --out, the plan is written to a file that `runbook apply` runs as reviewed.
    Exit 0 when the plan was made, 1 when a step failed, 2 on invalid input.
    """
    where, inputs = _where_and_inputs(options)
    observer = ProgressLines(quiet=quiet, plan=True)  # a plan's lines are its output, in its words
    made = _in_a_loop(session.plan(inputs, where, observer=observer, handle_signals=True))
    click.echo(plan_summary(made.report), nl=False)
    if out is not None and made.exit_code == 0:
        plan_hash = made.write(out)
        click.echo(
            f"\nplan written to {out} (plan_hash {plan_hash[:12]}); apply it with: "
            f"runbook apply {out}"
        )
    elif out is not None:
        say(
            "no plan file written: a step failed",
            level=logging.WARNING,
            text="\nno plan file written: a step failed",
        )
    raise SystemExit(made.exit_code)


def _max_age(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    if value is None:
        return DEFAULT_MAX_AGE_S
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be more than zero, got {value!r}")
    return seconds


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path, dir_okay=False))
@_TARGET_OPTIONS[1]
@_TARGET_OPTIONS[2]
@_TARGET_OPTIONS[3]
@_TARGET_OPTIONS[4]
@_TARGET_OPTIONS[5]
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML/JSON with ak + sk (+ security_token) or token; wins over the environment.",
)
@click.option(
    "--max-age",
    "max_age_s",
    metavar="DURATION",
    callback=_max_age,
    help="Refuse a plan older than this (default 1h): the fleet may have changed since.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The run directory: reports and journal (default ./runbook-reports/<run-id>/).",
)
@FORMATS
@_STOP_FILE
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the summary.")
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Accepted for scripts that pass it to run as well; changes nothing: the plan file is "
    "the approval, and the report records it as the plan's.",
)
@_NOTIFY
@_network_options
def apply(
    plan_file: Path,
    max_age_s: float,
    report_dir: Path | None,
    formats: tuple[str, ...],
    quiet: bool,
    yes: bool,
    notify: tuple[str, ...],
    stop_files: tuple[Path, ...],
    **options: Any,
) -> None:
    """Run the plan file PLAN_FILE (from `runbook plan FILE --out`) as it was reviewed.

    Only the jobs it lists are sent, each only while its status is still the one it was
    planned on; a job that changed since, or that the plan does not list, is left alone as
    `drifted`. The plan file is the approval (its hash is in the report; --yes is allowed and
    changes nothing). A plan older than --max-age, edited since, or of a runbook changed since
    is refused (exit 2). Exit codes otherwise as for `runbook run`.

    Takes no --target/--skip-target, params or shard: the plan's own limits hold (they are in
    the file and its hash); to narrow an apply, make a new plan with them.
    """
    del yes  # the plan file answers every approve step
    where = _where(options)
    observer, _ = _terminal(quiet=quiet, yes=True)
    outcome = _in_a_loop(
        session.apply(
            plan_file,
            where,
            max_age_s=max_age_s,
            report_dir=report_dir,
            observer=observer,
            formats=formats,
            handle_signals=True,
            notify=notify,
            stop_files=stop_files,
        )
    )
    _show(outcome)


def _resume(
    directory: Path,
    file: Path | None,
    quiet: bool,
    yes: bool,
    options: dict[str, Any],
    formats: tuple[str, ...],
    notify: tuple[str, ...],
    stop_files: tuple[Path, ...] = (),
) -> None:
    observer, approver = _terminal(quiet=quiet, yes=yes)
    outcome = _in_a_loop(
        session.resume(
            directory,
            file=file,
            approver=approver,
            observer=observer,
            credentials_file=options["credentials_file"],
            allow_insecure_http=options["allow_insecure_http"],
            request_timeout_s=options["request_timeout_s"],
            formats=formats,
            handle_signals=True,
            approval_how=HOW_YES if yes else HOW_TERMINAL,
            notify=notify,
            stop_files=stop_files,
        )
    )
    _show(outcome)


def _where_and_inputs(options: dict[str, Any]) -> tuple[Where, Inputs]:
    """Where the targets are and the validated runbook with its params, from run/plan options."""
    where = _where(options)
    given: dict[str, str] = {}
    for item in options["param_values"]:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param expects NAME=VALUE, got '{item}'")
        given[name.strip()] = value
    inputs = session.prepare(
        options["file"],
        params=given,
        params_file=options["params_file"],
        overrides={key: options[key] for key in GUARD_RAILS},
        shard=options["shard"],
        shard_by=options["shard_by"],
        limit=TargetLimit(only=options["only_targets"], skip=options["skip_targets"]),
    )
    return where, inputs


def _where(options: dict[str, Any]) -> Where:
    """Where the targets are: the embedded emulator, or an endpoint with its credentials."""
    if options["use_emulator"] and options["endpoint"]:
        raise UsageError("--emulator and --endpoint cannot be used together; pick one target")
    if options["use_emulator"]:
        where = Where(
            emulator=EmulatorSettings(
                seed=options["emulator_seed"],
                jobs=options["emulator_jobs"],
                time_scale=options["emulator_time_scale"],
            ),
            allow_insecure_http=options["allow_insecure_http"],  # for the webhooks
            request_timeout_s=options["request_timeout_s"],
        )
    else:
        where = endpoint_where(
            options["endpoint"],
            credentials_file=options["credentials_file"],
            allow_insecure_http=options["allow_insecure_http"],
            request_timeout_s=options["request_timeout_s"],
        )
    return where


def _show(outcome: session.RunOutcome) -> None:
    """The summary and the files on stdout; how to go on after an interruption on stderr."""
    click.echo(terminal_summary(outcome.report), nl=False)
    click.echo("reports: " + ", ".join(str(p) for p in outcome.written))
    if outcome.interrupted:
        with run_context(run_id=outcome.report.run_id):
            say(f"resume with: runbook resume {outcome.run_dir}", run_dir=str(outcome.run_dir))
    raise SystemExit(outcome.exit_code)


def _in_a_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run the application's coroutine on a loop of its own, with the collector tuned."""
    _collect_garbage_less_often()
    return asyncio.run(work)


def _collect_garbage_less_often() -> None:
    """A run keeps every job's record and timeline until its report is written; with Python's
    default thresholds (700, 10, 10) the collector rescans them over and over, 2 s of a 14 s
    run at 100,000 jobs (bench/). Objects alive from startup are frozen out of the scans, and
    the young generation is collected after 1,000,000 allocations instead of 700: by then most
    of what a run allocates has been freed by reference counting and is never scanned (GC time
    at 100,000 jobs: 0.27 s with 100,000, 0.04 s with 1,000,000, same peak RSS). A process-wide
    setting, so the command sets it, not the application a Python caller imports."""
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 100)


# ----------------------------------------------------------------------------- the terminal


def _terminal(*, quiet: bool, yes: bool) -> tuple[RunObserver, Approver | None]:
    """What the run shows while it goes on, and who answers its approvals (None: nobody can,
    so a runbook with an approval is refused before anything runs)."""
    live = _live_progress(quiet)
    observer: RunObserver = ProgressLines(quiet=quiet) if live is None else live
    if not yes and not sys.stdin.isatty():
        return observer, None
    approver = _approver(yes)
    if live is not None:
        approver = _asking_on_a_clear_screen(approver, live)
    return observer, approver


def _live_progress(quiet: bool) -> LiveProgress | None:
    """A table redrawn in place, on a terminal only: plain lines in CI, in pipes and logs,
    and JSON records with --log-format json (a shipper reading the terminal's log, a
    ``script`` or ``tmux`` capture, sees nothing but JSON)."""
    if quiet or not sys.stderr.isatty() or os.environ.get("CI") or chosen_log_format() != TEXT:
        return None
    # rich is loaded only when there is a terminal to draw on (16 ms of every CI run else).
    from rich.console import Console

    from engine.report.live import LiveProgress

    return LiveProgress(Console(stderr=True))


def _approver(yes: bool) -> Approver:
    """Show what is about to be changed; --yes approves, otherwise ask y/N on the terminal."""

    async def approve(request: ApprovalRequest) -> bool:
        say(approval_summary(request), event="approval", step=request.step.id, jobs=request.total)
        if yes:
            say("approved (--yes)", event="approved", step=request.step.id, how="--yes")
            return True
        return await _ask_yes_no("go ahead?")

    return approve


def _asking_on_a_clear_screen(approver: Approver, live: LiveProgress) -> Approver:
    async def approve(request: ApprovalRequest) -> bool:
        live.pause()
        try:
            return await approver(request)
        finally:
            live.resume()

    return approve


async def _ask_yes_no(question: str) -> bool:
    """y/N on the terminal without blocking the event loop, so Ctrl-C or SIGTERM still stop
    the run while it waits (and its report is written). The prompt is the one line on stderr
    that is not logged: a human types after it, in either log format."""
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
