"""``runbook validate``, ``lint`` and ``schema``: the runbook pipeline, nothing of the executor."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from engine import __version__
from engine.actions.catalog import CATALOG, MUTATING
from engine.api.endpoints import clear_text_targets
from engine.cli import color, say
from engine.errors import EXIT_USAGE, Diagnostic, RunbookInvalidError
from engine.runbook import diagnostics_json, load_runbook, render_diagnostics
from engine.runbook import lint as lint_runbook
from engine.runbook.ci_diagnostics import (
    TOOL_NAME,
    diagnostics_github,
    diagnostics_gitlab,
    diagnostics_sarif,
)
from engine.runbook.schema import schema_text

_FORMAT = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif", "github", "gitlab"]),
    default="text",
    show_default=True,
    help="text: FILE:LINE:COL: message with the source line; json: an array for tools; "
    "sarif: SARIF 2.1.0 (code scanning); github: workflow-command annotations; "
    "gitlab: a Code Quality report. See docs/ci.md.",
)
_INSECURE = click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Accept targets whose endpoint is plain http:// to another machine.",
)
_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))


@click.command()
@_FILES
@_FORMAT
@click.option("--lint", "with_lint", is_flag=True, help="Also report lint warnings.")
@_INSECURE
def validate(
    files: Sequence[Path], output_format: str, with_lint: bool, allow_insecure_http: bool
) -> None:
    """Check runbook FILES; print every problem as FILE:LINE:COL: message.

    Exit 0 when all are valid (warnings do not count), 2 when any is not.
    """
    _check_files(files, output_format, with_lint=with_lint, allow_http=allow_insecure_http)


@click.command()
@_FILES
@_FORMAT
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings.")
@_INSECURE
def lint(
    files: Sequence[Path], output_format: str, strict: bool, allow_insecure_http: bool
) -> None:
    """Validate FILES and warn about risky runbooks (mutations without verification, ...).

    Exit 2 when a file is invalid; with --strict, 1 when there are warnings; else 0.
    """
    warnings = _check_files(files, output_format, with_lint=True, allow_http=allow_insecure_http)
    if strict and warnings:
        raise SystemExit(1)


def _check_files(
    files: Sequence[Path], output_format: str, *, with_lint: bool, allow_http: bool
) -> int:
    """Validate (and lint) every file; print all diagnostics; exit 2 on errors; count warnings."""
    found: list[Diagnostic] = []
    invalid = False
    for path in files:
        try:
            runbook = load_runbook(path, CATALOG)
        except RunbookInvalidError as exc:
            invalid = True
            found.extend(exc.diagnostics)
            continue
        if not allow_http and (in_clear := clear_text_targets(runbook)):
            invalid = True
            found.extend(in_clear)
            continue
        if with_lint:
            found.extend(lint_runbook(runbook, MUTATING))
        if output_format == "text":
            say(f"{path}: ok", file=str(path))
    if output_format == "text":
        if found:
            click.echo(render_diagnostics(found, color=color(sys.stdout)))
    elif written := _for_tools(found, output_format):
        click.echo(written)
    if invalid:
        raise SystemExit(EXIT_USAGE)
    return sum(1 for d in found if d.severity == "warning")


def _for_tools(found: Sequence[Diagnostic], output_format: str) -> str:
    """The diagnostics in a format for tools; paths relative to the current directory."""
    root = Path.cwd()
    if output_format == "json":
        return diagnostics_json(found)
    if output_format == "github":
        return diagnostics_github(found, root=root)
    if output_format == "gitlab":
        return diagnostics_gitlab(found, root=root)
    urls = _project_urls()
    return diagnostics_sarif(
        found,
        root=root,
        version=__version__,
        information_uri=urls.get("homepage") or urls.get("repository") or urls.get("source"),
    )


def _project_urls() -> dict[str, str]:
    """The package's ``[project.urls]`` by lowercase label (none when it declares none)."""
    from importlib import metadata  # only for SARIF: 13-50 ms of imports validate skips

    try:
        entries = metadata.metadata(TOOL_NAME).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return {}
    urls: dict[str, str] = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    return urls


@click.command()
def schema() -> None:
    """Print the runbook JSON Schema (for editors and other tools)."""
    click.echo(schema_text(), nl=False)
