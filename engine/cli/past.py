"""``runbook report`` and ``merge``: past runs rendered and joined, without touching the API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from engine import session
from engine.cli import FORMATS, say
from engine.errors import UsageError
from engine.report.render import REPORT_FILES, render
from engine.report.terminal import terminal_summary


@click.command()
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
    text = render(session.past_report(run_dir), output_format)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    say(f"wrote {output}", file=str(output))


@click.command()
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False)
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write the merged reports (default ./runbook-reports/merged-<first run id>/).",
)
@FORMATS
def merge(run_dirs: Sequence[Path], report_dir: Path | None, formats: tuple[str, ...]) -> None:
    """Merge the reports of RUN_DIRS, the shards of one run (`run --shard I/N`), into one.

    Writes report.json and the other formats to --report-dir (default
    ./runbook-reports/merged-<first run id>/), prints the summary, and exits with the worst
    exit code of the shards, so a CI job after the shards can gate on the whole fleet.
    """
    merged = session.merge_runs(run_dirs, report_dir=report_dir, formats=formats)
    click.echo(terminal_summary(merged.report), nl=False)
    click.echo("reports: " + ", ".join(str(p) for p in merged.written))
    raise SystemExit(merged.exit_code)
