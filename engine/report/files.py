"""A run directory's report files: which a run writes, writing them, and dropping stale ones.

Next to them the directory holds the run's journal (``engine.run.journal``) and, for a run
against the in-process emulator, the emulator's own count (``emulator-stats.json``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from engine.errors import StorageError, UsageError
from engine.report.document import Report, to_json_bytes
from engine.report.render import REPORT_FILES, render_lines

EMULATOR_STATS = "emulator-stats.json"
# Room a run wants before it starts: the journal and four reports of 100,000 jobs take ~400 MB,
# of a thousand jobs a few MB. Below this much, the first write would likely fail mid-run.
MIN_FREE_BYTES = 64 * 2**20


def usable_directory(directory: Path) -> Path:
    """Create the report directory up front: a run must not end with nowhere to write, and
    must not start on a file system without room for its journal and reports."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise UsageError(
            f"cannot write reports to {directory}: {exc.strerror or exc}; choose --report-dir"
        ) from exc
    if free < MIN_FREE_BYTES:
        raise UsageError(
            f"only {free / 2**20:.1f} MiB free where {directory} is; a run needs at least "
            f"{MIN_FREE_BYTES // 2**20} MiB for its journal and reports (free some space, or "
            "choose another --report-dir)"
        )
    return directory


def write_reports_or_say(directory: Path, report: Report, formats: Iterable[str]) -> list[Path]:
    """``write_reports``, a failure to write (a full disk) being one sentence to the user."""
    try:
        return write_reports(directory, report, formats)
    except OSError as exc:
        raise StorageError(
            f"cannot write the reports to {directory}: {exc.strerror or exc}; the journal "
            f"there is whole: free some space, then `runbook report {directory}` renders them"
        ) from None


def write_reports(directory: Path, report: Report, formats: Iterable[str]) -> list[Path]:
    """report.json, then each other format asked for; the paths written, in that order. Each
    file appears whole or not at all (written aside, then renamed): a full disk must not leave
    a half report.json that `runbook report` would then trust over the journal."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / REPORT_FILES["json"]]
    with _whole(written[0]) as aside:
        aside.write_bytes(to_json_bytes(report))
    wanted = set(formats)
    for name in (f for f in REPORT_FILES if f in wanted and f != "json"):
        path = directory / REPORT_FILES[name]
        write_lines(path, render_lines(report, name))
        written.append(path)
    return written


def write_lines(path: Path, lines: Sequence[str], *, chunk: int = 1000) -> None:
    """``lines`` to ``path``, each ended by a newline, joined a thousand at a time: as cheap as
    one join, without holding the whole text (and its UTF-8) in memory at once."""
    with _whole(path) as aside, aside.open("w", encoding="utf-8") as file:
        for start in range(0, len(lines), chunk):
            file.write("\n".join(lines[start : start + chunk]))
            file.write("\n")


@contextlib.contextmanager
def _whole(path: Path) -> Iterator[Path]:
    """A file beside ``path`` to write, renamed over it once written; removed on failure."""
    aside = path.with_name(f".{path.name}.partial")
    try:
        yield aside
        os.replace(aside, path)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise


def drop_stale_reports(directory: Path) -> None:
    """Reports of an earlier run (or of this one before it was interrupted) would outlive it:
    until this run writes its own, `runbook report` must read its journal, not them."""
    for name in (*REPORT_FILES.values(), EMULATOR_STATS):
        (directory / name).unlink(missing_ok=True)
