"""Log lines as people and machines read them: timestamped text or JSON, with the run's context.

    2025-05-01T09:30:12.345Z INFO engine.api.resilience: list jobs: HTTP 429 ...    (text)
    {"ts": "2025-05-01T09:30:12.345Z", "level": "INFO", "logger": "engine.api.resilience",
     "message": "list jobs: HTTP 429 ...", "run_id": "...", "target": "prod-a", "step": "select",
     "request_id": "...", "route": "POST /v3/{project_id}/jobs", "status": 429}           (json)

The context (run id, target, step) is kept in ``contextvars`` that the executor sets where it
runs a target's step (``run_context``), so every task it starts inherits it; ``ContextFilter``
copies it onto each record as it is emitted. Request ids, routes and statuses are the fields a
call site passes in ``extra=`` (``engine.api.client``), never words parsed out of a message.

What the command itself says on stderr (progress lines, notes, errors, diagnostics) is logged
too, by ``say``: such a record carries ``text_line``, what a text log writes for it whole (the
bare note, or ``15:04:05Z [prod-a] select started`` for a progress line, as the command has
always printed them), while JSON writes it as any other record, with its structured fields
(``step``, ``settled``, ``total``, ``elapsed_s`` ...). So the format is chosen once, by the
formatter, and a run with ``--log-format json`` writes nothing else on stderr.

This module formats; it does not configure: ``engine.cli.configure_logging`` attaches the
handler, and ``engine.redact.RedactingFilter`` (after ``ContextFilter``, so it sees every final
field) keeps secrets out of both formats alike. Nothing here runs for a record below the level.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

TEXT = "text"
JSON = "json"
LOG_FORMATS = (TEXT, JSON)

_RUN_ID: ContextVar[str | None] = ContextVar("runbook_run_id", default=None)
_TARGET: ContextVar[str | None] = ContextVar("runbook_target", default=None)
_STEP: ContextVar[str | None] = ContextVar("runbook_step", default=None)

# The structured fields of a JSON line after the four every line has, in the order written:
# the context, then what a call site passes in ``extra=``.
CONTEXT_FIELDS = ("run_id", "target", "step")
CALL_FIELDS = ("request_id", "route", "status")
# What a text log writes for a record the command says (``say``), in place of its usual line.
TEXT_LINE = "text_line"
# What every LogRecord has (and what formatting adds to it): anything else a call site gave.
RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


@contextlib.contextmanager
def run_context(
    *, run_id: str | None = None, target: str | None = None, step: str | None = None
) -> Iterator[None]:
    """Within the block (and every task started in it), log records carry the values given;
    a value not given keeps what an enclosing block set."""
    tokens = [
        (var, var.set(value))
        for var, value in ((_RUN_ID, run_id), (_TARGET, target), (_STEP, step))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Puts the run id, target and step of the emitting task on each record (attach to handlers,
    before the redacting filter); a field the call site passed itself is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("run_id", _RUN_ID), ("target", _TARGET), ("step", _STEP)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


def say(
    logger: logging.Logger,
    level: int,
    message: str,
    *,
    text: str | None = None,
    **fields: object,
) -> None:
    """Log what the command tells its user: a text log writes ``text`` (default: the message)
    as it is, the way the command always printed it; JSON the message and ``fields``."""
    logger.log(level, "%s", message, extra={TEXT_LINE: message if text is None else text, **fields})


def timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2025-05-01T09:30:12.345Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``<UTC timestamp> LEVEL logger: message``, then any traceback; what the command says
    (``say``) as it has always read: its ``text_line`` alone."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        shown = getattr(record, TEXT_LINE, None)
        if isinstance(shown, str):
            return shown
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record.created)


# What JSON writes apart from the context and call fields (already written), or not at all.
_NOT_FIELDS = RECORD_ATTRIBUTES | {TEXT_LINE, *CONTEXT_FIELDS, *CALL_FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``ts``, ``level``, ``logger``, ``message``, then
    whichever of the context and call fields the record has, then any other field its call
    site gave (``extra=``; ``text_line`` is the text log's), and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, *CALL_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in entry and name not in _NOT_FIELDS and value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        exc = "\n".join(part for part in (record.exc_text, record.stack_info) if part)
        if exc:
            entry["exc"] = exc
        return json.dumps(entry, ensure_ascii=False, default=str)


class BriefTracebacks(logging.Filter):
    """A record of the named libraries keeps its words but not its traceback: the exception's
    type and message are added to the message instead (attach to handlers, before the
    redacting filter).

    For the OpenTelemetry SDK, whose exporter threads log a traceback when the collector is
    down or slow: the run's telemetry is lost, which its warning says; the stack inside the
    SDK tells the user nothing (``-vv`` keeps it, for whoever debugs the SDK)."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self._prefixes = tuple(prefixes)
        self._dotted = tuple(f"{p}." for p in prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.exc_info or record.exc_text) and (
            record.name in self._prefixes or record.name.startswith(self._dotted)
        ):
            exc = record.exc_info[1] if record.exc_info else None
            said = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
            record.msg, record.args = record.getMessage() + said, None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == JSON:
        return JsonFormatter()
    if log_format == TEXT:
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
