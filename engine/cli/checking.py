"""``runbook validate``, ``lint`` and ``schema``: the runbook pipeline, nothing of the executor."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from engine.actions.catalog import CATALOG, MUTATING
from engine.cli import color
from engine.errors import EXIT_USAGE, Diagnostic, RunbookInvalidError
from engine.runbook import diagnostics_json, load_runbook, render_diagnostics
from engine.runbook import lint as lint_runbook
from engine.runbook.schema import schema_text

_FORMAT = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: FILE:LINE:COL: message with the source line; json: an array for tools.",
)
_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))


@click.command()
@_FILES
@_FORMAT
@click.option("--lint", "with_lint", is_flag=True, help="Also report lint warnings.")
def validate(files: Sequence[Path], output_format: str, with_lint: bool) -> None:
    """Check runbook FILES; print every problem as FILE:LINE:COL: message.

    Exit 0 when all are valid (warnings do not count), 2 when any is not.
    """
    _check_files(files, output_format, with_lint=with_lint)


@click.command()
@_FILES
@_FORMAT
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
    found: list[Diagnostic] = []
    invalid = False
    for path in files:
        try:
            runbook = load_runbook(path, CATALOG)
        except RunbookInvalidError as exc:
            invalid = True
            found.extend(exc.diagnostics)
            continue
        if with_lint:
            found.extend(lint_runbook(runbook, MUTATING))
        if output_format == "text":
            click.echo(f"{path}: ok", err=True)
    if output_format == "json":
        click.echo(diagnostics_json(found))
    elif found:
        click.echo(render_diagnostics(found, color=color(sys.stdout)))
    if invalid:
        raise SystemExit(EXIT_USAGE)
    return sum(1 for d in found if d.severity == "warning")


@click.command()
def schema() -> None:
    """Print the runbook JSON Schema (for editors and other tools)."""
    click.echo(schema_text(), nl=False)
