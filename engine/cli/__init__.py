"""The ``runbook`` command: click commands over ``engine.session``.

Commands load lazily (click's documented ``LazyGroup`` pattern): ``runbook validate`` imports the
runbook pipeline and nothing of the executor, asyncio or the HTTP stack. ``main`` is the only
place where errors become text and exit codes; the command modules parse options, call the
application and print what it returned.

Results go to stdout; everything else the command says goes to stderr through logging (``say``:
its notes, errors and diagnostics, and ``engine.report.progress``'s lines), so the one
formatter ``configure_logging`` chose writes all of it: as the command always printed it with
``--log-format text``, as one JSON object a line with ``json``. The only other writer of stderr
is a human's: the ``go ahead? [y/N]`` prompt on a terminal (and the live table, which is drawn
only in text on a terminal).
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import click

from engine import __version__
from engine.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Diagnostic,
    EngineError,
    RunbookInvalidError,
    UsageError,
)
from engine.logs import (
    LOG_FORMATS,
    TEXT,
    TEXT_LINE,
    BriefTracebacks,
    ContextFilter,
    formatter_for,
    run_context,
)
from engine.logs import say as log_say
from engine.redact import RedactingFilter, redact
from engine.runbook.diagnostics import render_diagnostics
from engine.surrogates import described, lone_surrogate_at

# What the command says on stderr (notes, errors): shown at every verbosity, as its output is.
CONSOLE_LOGGER = "engine.cli"
# The environment's --log-format, read by click's option and before click runs (``main``).
LOG_FORMAT_ENV = "RUNBOOK_LOG_FORMAT"
# engine.report.progress's lines: the same.
PROGRESS_LOGGER = "engine.progress"


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


def _verbose_before(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``-v`` before the subcommand counts at once: errors in what follows are logged in the
    chosen format and verbosity."""
    root = ctx.find_root()
    root.meta[_VERBOSITY] = value
    configure_logging(value, root.meta.get(_LOG_FORMAT, TEXT))
    return value


def _log_format_before(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--log-format`` (or ``RUNBOOK_LOG_FORMAT``) before the subcommand, as soon as read: an
    unknown command or a bad option after it is already one JSON line."""
    root = ctx.find_root()
    root.meta[_LOG_FORMAT] = value
    configure_logging(root.meta.get(_VERBOSITY, 0), value)
    return value


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
                is_eager=True,  # before the other options: a bad value among them is JSON too
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
    if verbose < 2:  # a collector that is down is one warning line, not the SDK's stack
        handler.addFilter(BriefTracebacks("opentelemetry"))
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
    for output in (CONSOLE_LOGGER, PROGRESS_LOGGER):  # the command's output, not its log
        logging.getLogger(output).setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python's warnings are lines of the same format too


def chosen_log_format() -> str:
    """The ``--log-format`` of the command being run (text outside one)."""
    ctx = click.get_current_context(silent=True)
    return TEXT if ctx is None else str(ctx.find_root().meta.get(_LOG_FORMAT, TEXT))


def say(
    message: str, *, level: int = logging.INFO, text: str | None = None, **fields: object
) -> None:
    """Tell the user something on stderr, in the log format: as ``text`` (default: the
    message) in a text log, as a record with ``fields`` in JSON (``engine.logs.say``)."""
    log_say(logging.getLogger(CONSOLE_LOGGER), level, message, text=text, **fields)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    count=True,
    callback=_verbose_before,
    help="Log to stderr: -v info, -vv debug.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=TEXT,
    show_default=True,
    envvar=LOG_FORMAT_ENV,
    callback=_log_format_before,
    help=_LOG_FORMAT_HELP,
)
@click.version_option(__version__, prog_name="runbook")
def cli(verbose: int, log_format: str) -> None:
    """Declarative runbooks for Huawei Cloud DRS fleets: select, batch-retry, verify, report."""


def color(stream: object) -> bool:
    """Whether to colour text on ``stream``: a terminal, and ``NO_COLOR`` not set."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the command, turn engine errors into one message and an exit code.

    Every message goes through logging, in the format chosen (``RUNBOOK_LOG_FORMAT`` until the
    command line says otherwise): a crash too, as its traceback, for it is a bug."""
    args = sys.argv[1:] if argv is None else argv
    configure_logging(0, _log_format_before_parsing(args))
    try:
        _refuse_text_that_is_not_utf8(args)
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except EngineError as exc:
        with run_context(run_id=exc.run_id):  # an error of a run that had begun names it
            _say_error(exc)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        shown = io.StringIO()
        exc.show(shown)  # usage, hint and error, as click words them
        say(exc.format_message(), level=logging.ERROR, text=shown.getvalue().rstrip("\n"))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        say("runbook: aborted", level=logging.ERROR)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        say("runbook: interrupted", level=logging.ERROR)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # a bug: its traceback as Python prints it, in the log format
        trace = "".join(traceback.format_exception(exc)).rstrip("\n")
        logging.getLogger(CONSOLE_LOGGER).critical(
            "runbook crashed: %s: %s",
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={TEXT_LINE: trace},
        )
        sys.exit(1)
    sys.exit(EXIT_OK)


def _log_format_before_parsing(args: Sequence[str]) -> str:
    """The log format for what is said before click has read the command line (an argument
    refused below): the last ``--log-format`` given, else ``RUNBOOK_LOG_FORMAT``, else text."""
    chosen = os.environ.get(LOG_FORMAT_ENV, TEXT)
    for index, arg in enumerate(args):
        if arg == "--log-format" and index + 1 < len(args):
            chosen = args[index + 1]
        elif arg.startswith("--log-format="):
            chosen = arg.partition("=")[2]
    return chosen if chosen in LOG_FORMATS else TEXT


def _refuse_text_that_is_not_utf8(args: Sequence[str]) -> None:
    """Python reads the bytes of an argument that are not UTF-8 as lone surrogates
    (``surrogateescape``), which no journal, report or notification could then write: a file
    name, a ``--param`` value or a target in another encoding is refused before anything runs.
    The argument is named by its option or position, never shown: nothing has registered it
    as a secret yet, and it may be one (``--notify URL``, ``--param token=...``)."""
    for position, arg in enumerate(args, start=1):
        if (index := lone_surrogate_at(arg)) is None:
            continue
        option, equals, _ = arg.partition("=")
        if arg.startswith("--") and equals:
            what = f"the value of {option}"
        elif position > 1 and args[position - 2].startswith("-"):
            what = f"the value of {args[position - 2]}"
        else:
            what = f"argument {position}"
        raise UsageError(
            f"{what} is not UTF-8 text ({described(arg[index])} at character {index + 1}; not "
            "shown, as it may be a secret): the journal and reports are UTF-8, so give it in "
            "UTF-8 (rename the file, or set the value again)"
        )


def _say_error(exc: EngineError) -> None:
    """Diagnostics one record each, with their source lines in text; any other engine error
    as one sentence."""
    if isinstance(exc, RunbookInvalidError):
        colored = color(sys.stderr)  # for a text log on a terminal; JSON has no text_line
        for diagnostic in exc.diagnostics:
            _say_diagnostic(diagnostic, colored=colored)
        return
    say(redact(f"runbook: {exc.format_message()}"), level=logging.ERROR)


def _say_diagnostic(diagnostic: Diagnostic, *, colored: bool) -> None:
    location = diagnostic.location
    say(
        str(diagnostic),
        level=logging.WARNING if diagnostic.severity == "warning" else logging.ERROR,
        text=render_diagnostics([diagnostic], color=colored),
        file=location.path,
        line=location.line,
        col=location.col,
        rule=diagnostic.rule.value,
        severity=diagnostic.severity,
        hint=diagnostic.hint,
    )
