"""The report as Markdown for an incident ticket: summary first, then what needs a human, then
every project's steps and jobs."""

from __future__ import annotations

from collections.abc import Sequence

from engine.report.document import DrillReport, JobReport, Report
from engine.report.summary import (
    columns,
    delay_summary,
    delay_text,
    has_delays,
    headline,
    row,
    step_status,
    step_tallies,
    steps_ended,
    target_status,
)


def _md_escape(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows)
    return out


def _md_job_row(job: JobReport, *, delays: bool) -> str:
    """A row of a project's job table (``_md_table``'s cells, spelt out: a row per job)."""
    e = _md_escape
    delay = f" {delay_text(job)} |" if delays else ""
    return (
        f"| `{e(job.id)}` | {e(job.name)} | {e(job.status_at_selection)} | "
        f"{e(job.last_status)} | {e(job.disposition)} | {_ttr(job)} |{delay} "
        f"{e(job.reason or '')} |"
    )


def _ttr(job: JobReport) -> str:
    value = job.time_to_recover_s
    return "" if value is None else f"{value:.1f}s"


def to_markdown(report: Report) -> str:
    return "\n".join(markdown_lines(report)) + "\n"


def markdown_lines(report: Report) -> list[str]:
    """The report for an incident ticket, line by line: summary first, then what needs a
    human, then detail."""
    runbook = report.runbook
    lines = [
        f"# Runbook `{runbook.name}` — run `{report.run_id}`",
        "",
        f"**{_sentence(headline(report))}** (exit code {report.exit_code}).",
        "",
        *(_drill_lines(report.drill) if report.drill is not None else ()),
        f"- Runbook file: `{runbook.path}`",
        f"- Started {report.started_at}, finished {report.finished_at} ({report.wall_s:.1f}s)",
        "- API calls: " + (", ".join(f"`{k}`: {v}" for k, v in report.api_calls.items()) or "none"),
    ]
    rto = report.time_to_recover_s
    if rto.count:
        lines.append(
            f"- Time to recover: median {rto.p50:.1f}s, p95 {rto.p95:.1f}s, "
            f"max {rto.max:.1f}s ({rto.count} jobs)"
        )
    if delays := delay_summary(report):
        lines.append(f"- Replication delay: {delays}")
    if report.api_resilience:
        lines.append(
            "- API resilience: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.api_resilience.items())
        )
    if report.resumed_at:
        lines.append(f"- Resumed after an interruption at {', '.join(report.resumed_at)}")
    if (stop := report.stopped_by) is not None:
        lines.append(
            f"- Stopped by `{_md_escape(stop.condition)}` ({_md_escape(stop.location)}) at "
            f"{stop.tripped_at}: {_md_escape(stop.detail)}; {stop.in_flight} change request(s) "
            "in flight were awaited, nothing more was sent but the rollback"
        )
    if report.plan_hash:
        lines.append(f"- Applied plan `{report.plan_hash}`")
    for decision in report.approvals:
        verb = "approved" if decision.get("approved") else "declined"
        lines.append(
            f"- Step `{decision.get('step')}` {verb} by {_md_escape(decision.get('approved_by'))}"
            f" at {decision.get('approved_at')} ({decision.get('how')})"
        )
    lines += ["", "## What was done", "", *_what_was_done(report)]
    shown = columns(report)
    headers = ["project", *shown]
    rows: list[list[object]] = [[t.label, *row(t.totals, shown)] for t in report.targets]
    rows.append(["**total**", *row(report.totals, shown)])
    lines += ["", "## Summary", "", *_md_table(headers, rows)]
    needs = report.needing_a_human()
    if needs:
        lines += ["", "## Needs a human", ""]
        lines += _md_table(
            ["project", "job id", "name", "disposition", "last status", "reason"],
            [
                (t.label, f"`{j.id}`", j.name, j.disposition, j.last_status, j.reason)
                for t, j in needs
            ],
        )
    if notices := report.notices():
        lines += ["", "## Notices", ""]
        lines += [f"- {t.label}, step `{s.id}`: {_md_escape(text)}" for t, s, text in notices]
    with_delays = has_delays(report)
    for target in report.targets:
        lines += ["", f"## {target.label} (`{target.project_id}`, {target.where})", ""]
        status, _ = target_status(target, mutating=report.mutating)
        lines += [f"Status: {status}.", ""]
        tallies = step_tallies(target)
        lines += _md_table(
            ["step", "action", "status", "duration", "result"],
            [
                (
                    s.id,
                    s.action,
                    step_status(s, tallies.get(s.id)),
                    f"{s.duration_s:.1f}s",
                    s.message or ", ".join(f"{k}: {v}" for k, v in s.outputs.items()),
                )
                for s in target.steps
            ],
        )
        lines.append("")
        if not target.jobs:
            lines.append("No job matched the selection.")
            continue
        delay_column = ["delay (last / max)"] if with_delays else []
        lines += _md_table(
            [
                *("job id", "name", "at selection", "last status", "disposition", "TTR"),
                *delay_column,
                "detail",
            ],
            [],
        )
        lines += (_md_job_row(job, delays=with_delays) for job in target.jobs)
    return lines


def _sentence(text: str) -> str:
    """``text`` with a capital first letter, the rest as written (``RTO`` stays)."""
    return text[:1].upper() + text[1:]


def _drill_lines(drill: DrillReport) -> list[str]:
    """The drill section the report opens with: verdict, pause-to-recovery figures against the
    budget, the checks that did not pass, and each paused job's pause, resume and recovery."""
    lines = [
        f"## Drill: {drill.verdict}",
        "",
    ]
    if drill.paused:
        figures = ", ".join(
            f"{name} {drill.outage_words(value, _one_decimal)}"
            for name, value in (
                ("median", drill.rto_p50_s),
                ("p95", drill.rto_p95_s),
                ("max", drill.rto_max_s),
            )
        )
        lines.append(f"- Pause to recovery: {figures} ({len(drill.paused)} paused job(s))")
    if drill.budget is not None:
        held = "held" if drill.budget.held else "**not held**"
        lines.append(
            f"- RTO budget: {drill.budget.budget_s:g}s, {held} (`{drill.budget.step}`: "
            f"`{_md_escape(drill.budget.that)}`)"
        )
    failed = [c for c in drill.checks if c.status == "failed"]
    passed = sum(1 for c in drill.checks if c.status == "succeeded")
    lines.append(f"- Checks: {passed} of {len(drill.checks)} held")
    lines += [f"  - {c.project}, `{c.step}`: {_md_escape(c.message)}" for c in failed]
    if drill.paused:
        lines.append("")
        lines += _md_table(
            [
                "project",
                "paused job",
                "paused at",
                "resumed at",
                "recovered at",
                "pause to recovery",
                "disposition",
            ],
            [
                (
                    j.project,
                    j.name or j.id,
                    _at(j.paused_t),
                    _at(j.resumed_t),
                    _at(j.recovered_t),
                    _at(j.pause_to_recovery_s),
                    j.disposition,
                )
                for j in drill.paused
            ],
        )
        lines.append("")
        lines.append("Times are seconds since the run started.")
    return [*lines, ""]


def _at(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f}s"


def _what_was_done(report: Report) -> list[str]:
    """One line per step, over every project: how it ended and its outputs summed."""
    seen: dict[str, tuple[str, str | None, dict[str, float]]] = {}
    for target in report.targets:
        for step in target.steps:
            action, name, outputs = seen.setdefault(step.id, (step.action, step.name, {}))
            for key, value in step.outputs.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    outputs[key] = outputs.get(key, 0) + value
    ended = steps_ended(report)
    lines = []
    for step_id, (action, name, outputs) in seen.items():
        counted = ", ".join(
            f"{k} {v:g}" for k, v in outputs.items() if "ratio" not in k and "_s" not in k
        )
        title = f" — {name}" if name else ""
        lines.append(
            f"- `{step_id}` ({action}){title}: {ended[step_id]}"
            + (f"; {counted}" if counted else "")
        )
    return lines


def _one_decimal(seconds: float) -> str:
    return f"{seconds:.1f}s"
