"""Diagnostics as CI tools read them: SARIF 2.1.0, GitHub workflow commands, GitLab Code Quality.

    diagnostics_sarif(diags, root=, version=)   one SARIF run: every rule, every result located
    diagnostics_github(diags, root=)            one ``::error file=...::message`` line each
    diagnostics_gitlab(diags, root=)            a Code Quality report (the merge request widget)

Each names the diagnostic's rule (``engine.rules``) and is deterministic: no timestamps, no
machine names, the order given. A path under ``root`` (the current directory) is written
relative to it, with forward slashes, as repository-rooted CI tools expect; any other path is
written absolute.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from engine.errors import Diagnostic
from engine.rules import Level, Rule

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "drs-runbook"
# The uriBaseId of relative paths: GitHub code scanning and most viewers read it as the checkout.
SOURCE_ROOT = "%SRCROOT%"
_RULES = tuple(Rule)
_GITLAB_SEVERITY = {Level.ERROR: "major", Level.WARNING: "minor"}


def diagnostics_sarif(
    diagnostics: Iterable[Diagnostic],
    *,
    root: Path,
    version: str,
    information_uri: str | None = None,
) -> str:
    """A SARIF 2.1.0 log of one run whose driver lists every rule, and a result per diagnostic.

    ``information_uri`` is the project's home page as the package declares it (left out when
    it declares none). A rule has no ``helpUri``: no URL of the documentation is known to be
    right wherever the tool is installed; its help text says where the rule is documented
    (docs/ci.md, the section named by its id).
    """
    driver: dict[str, Any] = {"name": TOOL_NAME, "version": version, "semanticVersion": version}
    if information_uri:
        driver["informationUri"] = information_uri
    driver["rules"] = [_sarif_rule(rule) for rule in _RULES]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": driver},
                # Columns count characters (Python's str), not UTF-16 code units.
                "columnKind": "unicodeCodePoints",
                "results": [_sarif_result(d, root) for d in diagnostics],
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)


def _sarif_rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": str(rule),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.help},
        "help": {"text": sarif_help(rule)},
        "defaultConfiguration": {"level": str(rule.level)},
    }


def sarif_help(rule: Rule) -> str:
    """A rule's help as SARIF gives it: its help, and where the rule is documented."""
    return f"{rule.help} Documented in docs/ci.md, section {rule} (rules: engine/rules.py)."


def _sarif_result(diagnostic: Diagnostic, root: Path) -> dict[str, Any]:
    location = diagnostic.location
    relative = _relative(location.path, root)
    artifact = (
        {"uri": quote(relative), "uriBaseId": SOURCE_ROOT}
        if relative is not None
        else {"uri": Path(os.path.abspath(location.path)).as_uri()}
    )
    return {
        "ruleId": str(diagnostic.rule),
        "ruleIndex": _RULES.index(diagnostic.rule),
        "level": str(diagnostic.rule.level),
        "message": {"text": _text(diagnostic)},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": artifact,
                    "region": {"startLine": location.line, "startColumn": location.col},
                }
            }
        ],
    }


def diagnostics_github(diagnostics: Iterable[Diagnostic], *, root: Path) -> str:
    """One GitHub Actions workflow command per diagnostic, ``::error`` or ``::warning``.

    ``::error file=PATH,line=L,col=C,title=RULE::message (hint: ...)``: the runner turns each
    into an annotation on the file's line. A newline in a message is escaped, never written,
    so a diagnostic is always exactly one line.
    """
    lines: list[str] = []
    for diagnostic in diagnostics:
        location = diagnostic.location
        properties = {
            "file": _relative(location.path, root) or os.path.abspath(location.path),
            "line": str(location.line),
            "col": str(location.col),
            "title": str(diagnostic.rule),
        }
        written = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
        command = diagnostic.rule.level  # "error" and "warning" are the command names
        lines.append(f"::{command} {written}::{_escape_data(_text(diagnostic))}")
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    """A workflow command's message as the runner unescapes it (actions/toolkit ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value (``escapeProperty``): also ``:`` and ``,``."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def diagnostics_gitlab(diagnostics: Iterable[Diagnostic], *, root: Path) -> str:
    """A GitLab Code Quality report: a JSON array of issues, one per diagnostic.

    The fingerprint hashes the rule, the file and the message, not the line, so a finding keeps
    its identity when lines are inserted above it; the n-th repeat of one hashes n as well, so
    every fingerprint of a report is unique, as GitLab requires.
    """
    issues: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for diagnostic in diagnostics:
        location = diagnostic.location
        path = _relative(location.path, root) or os.path.abspath(location.path)
        key = (str(diagnostic.rule), path, diagnostic.message)
        repeat = seen[key] = seen.get(key, -1) + 1
        identity = json.dumps([*key, repeat], ensure_ascii=False)
        issues.append(
            {
                "description": _text(diagnostic),
                "check_name": str(diagnostic.rule),
                "fingerprint": hashlib.sha256(identity.encode()).hexdigest(),
                "severity": _GITLAB_SEVERITY[diagnostic.rule.level],
                "location": {"path": path, "lines": {"begin": location.line}},
            }
        )
    return json.dumps(issues, indent=2, ensure_ascii=False)


def _text(diagnostic: Diagnostic) -> str:
    """The message and its hint, as the one-line form says them (without the location)."""
    hint = diagnostic.hint
    return f"{diagnostic.message} (hint: {hint})" if hint else diagnostic.message


def _relative(path: str, root: Path) -> str | None:
    """``path`` relative to ``root`` with forward slashes, or None when it is not under it."""
    absolute = PurePath(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return None
