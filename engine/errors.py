"""The engine's exception tree and source locations.

    EngineError                      base; carries ``exit_code`` and formats itself
    ├── UsageError                   bad command line or settings (exit 2)
    ├── RunbookInvalidError          one or more Diagnostics with FILE:LINE:COL (exit 2)
    ├── RunStoppedError              a mutating request held back: the run's stop tripped
    └── ApiError                     the DRS / IAM API could not be used
        ├── DrsApiError              a non-2xx answer with an error body (error_code, error_msg)
        ├── AuthError                credentials rejected or unavailable
        └── TransportError           the request did not complete (connect, reset, timeout)

Only ``engine.cli`` turns these into text and exit codes. Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.rules import Rule

_E = TypeVar("_E", bound=BaseException)

EXIT_OK = 0
EXIT_JOBS_NOT_HEALTHY = 1
EXIT_USAGE = 2
EXIT_STORAGE = 3  # the run directory could not be written: the run stopped changing jobs
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Location:
    """A place in a source file; line and col are 1-based as editors show them."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    """One problem in a runbook, pointing at the YAML node that causes it.

    ``rule`` says what kind of problem it is (the id CI tools show) and whether it is an error
    or a lint warning: the severity is the rule's, never set apart from it.
    """

    location: Location
    message: str
    rule: Rule
    hint: str | None = None
    source_line: str | None = None  # the text of the line, for a caret under the column

    @property
    def severity(self) -> str:
        """``error`` (the runbook is invalid) or ``warning`` (lint)."""
        return str(self.rule.level)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class EngineError(Exception):
    """Base of every error the engine reports to a user.

    ``run_id``: the run it ended, when it left one that had begun (``engine.session`` sets it
    on the way out, so the command's error line names the run as its log lines did)."""

    exit_code: int = 1
    run_id: str | None = None

    def format_message(self) -> str:
        return str(self)


class UsageError(EngineError):
    """The command line, an option or the environment is wrong."""

    exit_code = EXIT_USAGE


class StorageError(EngineError):
    """The run's journal or reports could not be written (a full disk, say): the run sent no
    further change; its journal, cut back to whole lines, can be resumed once there is room."""

    exit_code = EXIT_STORAGE


class RunStoppedError(EngineError):
    """A mutating request was not sent: a stop condition of the run tripped before it left
    (``engine.run.stop``). Nothing was applied; the caller books its jobs as not sent."""


class RunbookInvalidError(EngineError):
    """The runbook failed validation; carries every diagnostic found, in source order."""

    exit_code = EXIT_USAGE

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(sorted(diagnostics, key=lambda d: d.location))
        super().__init__(f"{len(self.diagnostics)} problem(s) in runbook")

    def format_message(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


class ApiError(EngineError):
    """The DRS or IAM API could not be used."""


class DrsApiError(ApiError):
    """A non-2xx answer whose JSON body carried ``error_code`` and ``error_msg``."""

    def __init__(
        self,
        *,
        http_status: int,
        error_code: str,
        error_msg: str,
        request_id: str | None,
        operation: str,
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.operation = operation
        rid = f", request id {request_id}" if request_id else ""
        super().__init__(f"{operation}: HTTP {http_status} {error_code}: {error_msg}{rid}")


class AuthError(ApiError):
    """Credentials were rejected, or none could be found."""


class TransportError(ApiError):
    """The request did not complete: connection refused or reset, or a timeout.

    Whether a mutating request reached the server is unknown after this error; callers
    must reconcile by querying state, never by blindly re-sending.
    """


def first_leaf(group: BaseExceptionGroup[_E]) -> _E:
    """The first exception of a (nested) group: one error, as a single task would raise it."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
