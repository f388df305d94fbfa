"""The ``runbook`` command: click commands over ``engine.session``.

Commands load lazily (click's documented ``LazyGroup`` pattern): ``runbook validate`` imports the
runbook pipeline and nothing of the executor, asyncio or the HTTP stack. ``main`` is the only
place where errors become text and exit codes; the command modules parse options, call the
application and print what it returned.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from engine import __version__
from engine.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EngineError,
    RunbookInvalidError,
    UsageError,
)
from engine.logs import LOG_FORMATS, TEXT, ContextFilter, formatter_for
from engine.redact import RedactingFilter, redact
from engine.runbook.diagnostics import render_diagnostics
from engine.surrogates import described, lone_surrogate_at, replace_lone_surrogates


class LazyGroup(click.Group):
    """A group whose commands are imported when they are used (or listed in ``--help``)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)  # command name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, _, attribute = self._lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            return _log_format_too(_verbose_too(command))
        return super().get_command(ctx, cmd_name)


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """``-v`` after the subcommand adds to any given before it: ``runbook -v run -v`` is -vv."""
    if value:
        root = ctx.find_root()
        root.meta[_VERBOSITY] = root.meta.get(_VERBOSITY, 0) + value
        configure_logging(root.meta[_VERBOSITY], root.meta.get(_LOG_FORMAT, TEXT))


def _log_format_after(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--log-format`` after the subcommand wins over one before it."""
    if value is not None:
        root = ctx.find_root()
        root.meta[_LOG_FORMAT] = value
        configure_logging(root.meta.get(_VERBOSITY, 0), value)


_VERBOSITY = "engine.verbosity"
_LOG_FORMAT = "engine.log_format"
_VERBOSE_NAME = "verbose_after_command"
_LOG_FORMAT_NAME = "log_format_after_command"
_LOG_FORMAT_HELP = (
    "Log lines as text (timestamped) or json (one object a line); env RUNBOOK_LOG_FORMAT."
)


def _verbose_too(command: click.Command) -> click.Command:
    """Every subcommand takes ``-v``/``--verbose`` too, as the docs write it: ``runbook run
    FILE -v`` (added once, here, so no command can forget it)."""
    if not any(param.name == _VERBOSE_NAME for param in command.params):
        command.params.append(
            click.Option(
                ["-v", "--verbose", _VERBOSE_NAME],
                count=True,
                expose_value=False,
                callback=_more_verbose,
                help="Log to stderr: -v info, -vv debug.",
            )
        )
    return command


def _log_format_too(command: click.Command) -> click.Command:
    """Every subcommand takes ``--log-format`` too, as it takes ``-v``."""
    if not any(param.name == _LOG_FORMAT_NAME for param in command.params):
        command.params.append(
            click.Option(
                ["--log-format", _LOG_FORMAT_NAME],
                type=click.Choice(LOG_FORMATS),
                default=None,
                expose_value=False,
                callback=_log_format_after,
                help=_LOG_FORMAT_HELP,
            )
        )
    return command


COMMANDS = {
    "validate": "engine.cli.checking:validate",
    "lint": "engine.cli.checking:lint",
    "schema": "engine.cli.checking:schema",
    "init": "engine.cli.authoring:init",
    "run": "engine.cli.running:run",
    "resume": "engine.cli.running:resume",
    "plan": "engine.cli.running:plan",
    "apply": "engine.cli.running:apply",
    "report": "engine.cli.past:report",
    "merge": "engine.cli.past:merge",
    "emulator": "engine.cli.emulator:emulator",
}


# Report files a run (or a merge) writes; the choices are the report's formats.
FORMATS = click.option(
    "--format",
    "formats",
    type=click.Choice(["json", "md", "html", "junit"]),
    multiple=True,
    help="Report files to write (repeatable; default all four). report.json is always written; "
    "`runbook report` renders the others later.",
)


def configure_logging(verbose: int, log_format: str = TEXT) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(ContextFilter())  # the run id, target and step of the emitting task
    # Last, so it sees every field a line will show: a server's words may echo a secret.
    handler.addFilter(RedactingFilter())
    # On the root logger, so aiohttp's and asyncio's warnings pass the filter too (Python's
    # last-resort handler would print them unfiltered); the engine's own level is -v's.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    engine = logging.getLogger("engine")
    engine.handlers[:] = []
    engine.setLevel(level)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v info, -vv debug.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=TEXT,
    show_default=True,
    envvar="RUNBOOK_LOG_FORMAT",
    help=_LOG_FORMAT_HELP,
)
@click.version_option(__version__, prog_name="runbook")
@click.pass_context
def cli(ctx: click.Context, verbose: int, log_format: str) -> None:
    """Declarative runbooks for Huawei Cloud DRS fleets: select, batch-retry, verify, report."""
    ctx.meta[_VERBOSITY] = verbose
    ctx.meta[_LOG_FORMAT] = log_format
    configure_logging(verbose, log_format)


def color(stream: object) -> bool:
    """Whether to colour text on ``stream``: a terminal, and ``NO_COLOR`` not set."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command, turn engine errors into one message and an exit code."""
    try:
        _refuse_text_that_is_not_utf8(sys.argv[1:] if argv is None else argv)
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


def _refuse_text_that_is_not_utf8(args: Sequence[str]) -> None:
    """Python reads the bytes of an argument that are not UTF-8 as lone surrogates
    (``surrogateescape``), which no journal, report or notification could then write: a file
    name, a ``--param`` value or a target in another encoding is refused before anything runs.
    """
    for arg in args:
        if (index := lone_surrogate_at(arg)) is not None:
            raise UsageError(
                f"argument '{replace_lone_surrogates(arg)}' is not UTF-8 text "
                f"({described(arg[index])} at character {index + 1}); the journal and reports "
                "are UTF-8, so rename the file or give the value in UTF-8"
            )


def _error_text(exc: EngineError) -> str:
    """Diagnostics with their source lines; any other engine error as one sentence."""
    if isinstance(exc, RunbookInvalidError):
        return render_diagnostics(exc.diagnostics, color=color(sys.stderr))
    return redact(f"runbook: {exc.format_message()}")
