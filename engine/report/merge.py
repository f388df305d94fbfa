"""``runbook merge``: one report from the reports of a run split with ``--shard I/N``.

Targets are independent, so the merged report lists every shard's targets; totals, API calls
and resilience counters add up; the time-to-recover summary is worked out again over every job;
the run spans the earliest start to the latest finish, and its exit code is the worst one.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from engine.errors import UsageError
from engine.report.build import rto_summary
from engine.report.document import Report, Totals
from engine.report.drill import merge_drills
from engine.run.shard import Shard


def merge_reports(parts: Sequence[tuple[str, Report]]) -> Report:
    """The reports of ``parts`` (each with the name it is known by, for messages) as one."""
    if len(parts) < 2:
        raise UsageError("runbook merge needs the reports of at least two shards")
    (first_name, first), *rest = parts
    # Not the runbook's path: runners check it out in places of their own.
    same: dict[str, Callable[[Report], object]] = {
        "runbook": lambda r: r.runbook.name,
        "params": lambda r: r.params,
        "plan flag": lambda r: r.plan,
    }
    for name, part in rest:
        for what, value in same.items():
            if value(part) != value(first):
                raise UsageError(
                    f"{name} and {first_name} differ in their {what}: only shards of one run "
                    "of one runbook merge"
                )
    _check_shards(parts)
    seen: dict[tuple[str, str | None, str | None], str] = {}
    for name, part in parts:
        for target in part.targets:
            key = (target.project_id, target.region, target.name)
            if key in seen:
                raise UsageError(
                    f"target {target.label} is in both {seen[key]} and {name}: a shard was "
                    "given twice, or the shards overlap"
                )
            seen[key] = name
    reports = [part for _, part in parts]
    targets = [target for report in reports for target in report.targets]
    started = min(reports, key=lambda r: _instant(r.started_at)).started_at
    finished = max(reports, key=lambda r: _instant(r.finished_at)).finished_at
    return dataclasses.replace(
        first,  # run_id, engine, settings: the first shard's
        shard=None,
        merged_from=[report.run_id for report in reports],
        started_at=started,
        finished_at=finished,
        wall_s=round((_instant(finished) - _instant(started)).total_seconds(), 3),
        exit_code=max(report.exit_code for report in reports),
        mutating=any(report.mutating for report in reports),
        interrupted=any(report.interrupted for report in reports),
        resumed_at=sorted(at for report in reports for at in report.resumed_at),
        totals=Totals(_added([report.totals for report in reports])),
        time_to_recover_s=rto_summary(
            job.time_to_recover_s
            for target in targets
            for job in target.jobs
            if job.time_to_recover_s is not None
        ),
        api_calls=dict(sorted(_added([report.api_calls for report in reports]).items())),
        api_resilience=_added_figures([report.api_resilience for report in reports]),
        targets=targets,
        approvals=[a for report in reports for a in report.approvals],
        plan_hash=next((r.plan_hash for r in reports if r.plan_hash), None),
        drill=merge_drills([report.drill for report in reports]),
        # The first stop of any shard (each shard watches its own conditions).
        stopped_by=min(
            (r.stopped_by for r in reports if r.stopped_by is not None),
            key=lambda stop: _instant(stop.tripped_at),
            default=None,
        ),
    )


def _check_shards(parts: Sequence[tuple[str, Report]]) -> None:
    """Shards of one split: the same N and the same --shard-by, each I once (a report of a
    whole run has no shard)."""
    shards = [(name, Shard.parse(part.shard)) for name, part in parts if part.shard]
    splits = {(shard.count, shard.by) for _, shard in shards}
    if len(splits) > 1:
        raise UsageError(
            "the reports come from different splits ("
            + ", ".join(f"{name}: {shard}" for name, shard in shards)
            + "); merge the shards of one split"
        )
    taken: dict[int, str] = {}
    for name, shard in shards:
        if shard.index in taken:
            raise UsageError(f"{name} and {taken[shard.index]} are both shard {shard}")
        taken[shard.index] = name


def _added(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Counts added up key by key, in the order the keys are first seen."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


def _added_figures(figures: Sequence[Mapping[str, int | float]]) -> dict[str, int | float]:
    """Figures added up key by key (first-seen order); sums of seconds rounded to the ms."""
    total: dict[str, int | float] = {}
    for figure in figures:
        for key, value in figure.items():
            total[key] = total.get(key, 0) + value
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in total.items()}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)
