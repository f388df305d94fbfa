"""A past run read back: its report.json, or for a run killed before it wrote one, the report
its journal gives (as far as the journal goes). What ``runbook report`` and ``merge`` render."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from engine.actions.catalog import CATALOG
from engine.actions.registry import REGISTRY
from engine.bounded import FileRefusedError, read_file
from engine.errors import UsageError
from engine.ledger import JobBook
from engine.report.build import build_report
from engine.report.document import Report
from engine.report.render import REPORT_FILES
from engine.run.inputs import sharded
from engine.run.journal import JOURNAL_NAME, RUNBOOK_COPY, JournalState, read_journal
from engine.run.result import RunResult, TargetOutcome
from engine.runbook import Runbook, load_runbook

# report.json of a million jobs is about 250 MB; a file four times that is not one of ours.
REPORT_LIMIT = 1 << 30


def past_report(run_dir: Path) -> Report:
    """The report of a past run: its report.json, or for a run killed before it wrote one, the
    report its journal gives (jobs as far as the journal goes)."""
    path = run_dir / REPORT_FILES["json"]
    journal = run_dir / JOURNAL_NAME
    if path.is_file() and not _newer(journal, path):
        try:
            return Report.from_json(json.loads(read_file(path, limit=REPORT_LIMIT)))
        except FileRefusedError as exc:
            raise UsageError(f"cannot read {path}: {exc.reason}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
    if not (run_dir / JOURNAL_NAME).is_file():
        raise UsageError(f"{run_dir} has neither report.json nor a journal; give a run directory")
    state = read_journal(run_dir / JOURNAL_NAME)
    runbook = load_runbook(run_dir / RUNBOOK_COPY, CATALOG)
    if state.header.shard is not None:  # the journal's target indices count the shard's targets
        runbook = sharded(runbook, state.header.shard, run_dir / RUNBOOK_COPY)
    return build_report(result_from_journal(state, runbook))


def _newer(one: Path, other: Path) -> bool:
    """Whether ``one`` was written after ``other`` (a run resumed since its last report)."""
    try:
        return one.stat().st_mtime_ns > other.stat().st_mtime_ns
    except OSError:
        return False


def result_from_journal(state: JournalState, runbook: Runbook) -> RunResult:
    """A run as far as its journal goes.

    Jobs keep the dispositions the journal last recorded (``selected``, ``retry_accepted`` for
    work the run did not finish); API figures are not journaled and are left empty.
    """
    header = state.header
    started = datetime.fromisoformat(header.started_at)
    targets = []
    last_t = 0.0
    for index, target in enumerate(runbook.targets):
        known = state.target(index)
        jobs = JobBook(lambda: 0.0)
        jobs.restore(list(known.records.values()))
        last_t = max([last_t, *(e.t for r in known.records.values() for e in r.events)])
        targets.append(
            TargetOutcome(
                target=target,
                endpoint=header.endpoint or target.endpoint or "",
                jobs=jobs,
                steps=list(known.steps.values()),
            )
        )
    return RunResult(
        run_id=header.run_id,
        runbook=runbook,
        started_at=started,
        finished_at=started + timedelta(seconds=last_t),
        wall_s=last_t,
        targets=targets,
        mutating=any(REGISTRY[s.action].mutating for s in runbook.steps),
        interrupted=not state.finished or state.interrupted,
        resumed_at=list(state.resumes),
        params=header.params,
        shard=header.shard,
    )
