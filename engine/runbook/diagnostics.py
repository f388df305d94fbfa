"""Diagnostics as people and tools read them: source line with a caret, or a JSON array.

``str(diagnostic)`` stays the one-line ``FILE:LINE:COL: message (hint: ...)`` that editors and
tests parse; :func:`render_diagnostics` adds the line and a caret under the column, the way
compilers show an error, and :func:`diagnostics_json` is the ``--format json`` shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from engine.bounded import FileRefusedError, read_file
from engine.errors import Diagnostic
from engine.runbook.parse import MAX_BYTES

_RESET = "\033[0m"
_BOLD = "\033[1m"
_SEVERITY_COLORS = {"error": "\033[31m", "warning": "\033[33m"}
_CARET = "\033[32m"
_MAX_LINE = 200


def render_diagnostics(diagnostics: Iterable[Diagnostic], *, color: bool = False) -> str:
    """Each diagnostic as ``FILE:LINE:COL: message``, its source line, a caret, and its hint.

    A warning says ``warning:`` before its message; an error is exactly ``str(diagnostic)``'s
    first part. The source line comes from the diagnostic, or else from the file if readable.
    """
    files: dict[str, list[str] | None] = {}
    blocks: list[str] = []
    for diagnostic in diagnostics:
        location = diagnostic.location
        where = f"{_BOLD}{location}{_RESET}" if color else str(location)
        label = "warning: " if diagnostic.severity == "warning" else ""
        if color and label:
            label = f"{_SEVERITY_COLORS['warning']}{label}{_RESET}"
        lines = [f"{where}: {label}{diagnostic.message}"]
        source = diagnostic.source_line
        if source is None:
            source = _line_of(files, location.path, location.line)
        if source is not None and len(source) <= _MAX_LINE:
            # Keep tabs in the caret's indent so it lines up under any tab width.
            indent = "".join("\t" if c == "\t" else " " for c in source[: location.col - 1])
            caret = f"{_CARET}^{_RESET}" if color else "^"
            lines += [f"  {source}", f"  {indent}{caret}"]
        if diagnostic.hint:
            lines.append(f"  hint: {diagnostic.hint}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _line_of(files: dict[str, list[str] | None], path: str, number: int) -> str | None:
    if path not in files:
        # At most what the parser read: the file may be anything (a FIFO, /dev/zero).
        try:
            files[path] = read_file(Path(path), limit=MAX_BYTES).decode("utf-8").splitlines()
        except (FileRefusedError, UnicodeDecodeError):
            files[path] = None
    lines = files[path]
    return lines[number - 1] if lines is not None and 1 <= number <= len(lines) else None


def diagnostics_json(diagnostics: Iterable[Diagnostic]) -> str:
    """A JSON array of ``{path, line, col, severity, rule, message, hint}``, in the given order."""
    return json.dumps(
        [
            {
                "path": d.location.path,
                "line": d.location.line,
                "col": d.location.col,
                "severity": d.severity,
                "rule": str(d.rule),
                "message": d.message,
                "hint": d.hint,
            }
            for d in diagnostics
        ],
        indent=2,
        ensure_ascii=False,
    )
