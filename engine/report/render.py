"""Pure renderers of the report document: JSON, Markdown for tickets, and the terminal summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from engine.report.build import NEEDS_A_HUMAN
from engine.run.executor import ApprovalRequest

_NEEDS = {d.value for d in NEEDS_A_HUMAN}
# Terminal and Markdown summary columns: (heading, disposition values counted).
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("selected", ("selected",)),
    ("recovered", ("recovered", "healthy")),
    ("failed again", ("failed_again", "failed")),
    ("rejected", ("retry_rejected",)),
    ("timed out", ("timed_out",)),
    (
        "other",
        (
            "retry_unknown",
            "not_found",
            "not_retried",
            "not_verified",
            "cancelled",
            "paused",
            "pause_rejected",
            "pause_unknown",
        ),
    ),
    ("skipped", ("skipped",)),
)


# Above this many jobs report.json is written compact: indenting doubles the file.
INDENTED_UP_TO_JOBS = 10_000


def to_json(report: dict[str, Any]) -> str:
    return json_bytes(report).decode()


def json_bytes(report: dict[str, Any]) -> bytes:
    """report.json's UTF-8 bytes, as a run writes them: no round trip through ``str``, and the
    final newline added by orjson, not by a copy (the file is 25 MB at 100,000 jobs)."""
    indent = orjson.OPT_INDENT_2 if report["totals"]["jobs"] <= INDENTED_UP_TO_JOBS else 0
    return orjson.dumps(report, option=indent | orjson.OPT_APPEND_NEWLINE)


def render(report: dict[str, Any], output_format: str) -> str:
    """The report in one of the formats a run writes: json, md, html or junit."""
    if output_format == "json":
        return to_json(report)
    return "\n".join(render_lines(report, output_format)) + "\n"


def render_lines(report: dict[str, Any], output_format: str) -> list[str]:
    """A text format (md, html or junit) line by line, without their line ends: a run writes
    them to the file one by one, never as one string (at 100,000 jobs the HTML alone would be
    31 MB in memory, plus its 15 MB encoding)."""
    if output_format == "md":
        return markdown_lines(report)
    if output_format == "html":
        from engine.report.html_page import html_lines

        return html_lines(report)
    if output_format == "junit":
        from engine.report.junit import junit_lines

        return junit_lines(report)
    raise ValueError(f"unknown report format {output_format!r}")


def _headline(report: dict[str, Any]) -> str:
    totals = report["totals"]
    if report.get("interrupted"):
        return f"interrupted; {totals['needs_attention']} job(s) left for a human"
    if not report.get("mutating", True) and report["exit_code"] == 0:
        return f"{totals['selected']} job(s) selected; no step of this runbook acts on them"
    if report["exit_code"] == 0:
        return f"all {totals['selected']} selected job(s) healthy"
    failed_targets = [t for t in report["targets"] if t["status"] == "failed"]
    parts = []
    if totals["needs_attention"]:
        parts.append(f"{totals['needs_attention']} of {totals['selected']} job(s) need a human")
    if failed_targets:
        parts.append(f"a step failed in {len(failed_targets)} project(s)")
    return "; ".join(parts) or "run did not complete"


def _row_counts(totals: dict[str, int]) -> list[str]:
    selected = totals["selected"]
    cells = [str(selected)]
    for _, keys in _COLUMNS[1:]:
        cells.append(str(sum(totals.get(k, 0) for k in keys)))
    return cells


def _label(target: dict[str, Any]) -> str:
    return str(target["name"] or target["project_id"])


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = [headers, ["-" * w for w in widths], *rows]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in out]


def _needs_a_human(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (target, job)
        for target in report["targets"]
        for job in target["jobs"]
        if job["disposition"] in _NEEDS
    ]


def terminal_summary(report: dict[str, Any], *, max_listed: int = 20) -> str:
    """A short plain-text summary: one row per project, then the jobs that need a human."""
    headers = ["project", *(h for h, _ in _COLUMNS)]
    rows = [[_label(t), *_row_counts(t["totals"])] for t in report["targets"]]
    rows.append(["total", *_row_counts(report["totals"])])
    lines = [f"run {report['run_id']}: {_headline(report)}", "", *_table(headers, rows)]
    for target in report["targets"]:
        for step in target["steps"]:
            if step["status"] == "failed":
                lines.append(f"{_label(target)}: step '{step['id']}' failed: {step['message']}")
    needs = _needs_a_human(report)
    if needs:
        lines += ["", "needs a human:"]
        for target, job in needs[:max_listed]:
            lines.append(
                f"  {_label(target)}  {job['id']}  {job['name']}  "
                f"{job['disposition']}: {job['reason']}"
            )
        if len(needs) > max_listed:
            lines.append(f"  ... and {len(needs) - max_listed} more (see the report)")
    rto = report["time_to_recover_s"]
    if rto["count"]:
        lines += [
            "",
            f"time to recover: median {rto['p50']}s, p95 {rto['p95']}s, "
            f"max {rto['max']}s over {rto['count']} job(s)",
        ]
    return "\n".join(lines) + "\n"


def _md_escape(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows)
    return out


def _md_job_row(job: dict[str, Any]) -> str:
    """A row of a project's job table (``_md_table``'s cells, spelt out: a row per job)."""
    e = _md_escape
    return (
        f"| `{e(job['id'])}` | {e(job['name'])} | {e(job['status_at_selection'])} | "
        f"{e(job['last_status'])} | {e(job['disposition'])} | {_ttr(job)} | "
        f"{e(job['reason'] or '')} |"
    )


def _ttr(job: dict[str, Any]) -> str:
    value = job["time_to_recover_s"]
    return "" if value is None else f"{value:.1f}s"


def to_markdown(report: dict[str, Any]) -> str:
    return "\n".join(markdown_lines(report)) + "\n"


def markdown_lines(report: dict[str, Any]) -> list[str]:
    """The report for an incident ticket, line by line: summary first, then what needs a
    human, then detail."""
    runbook = report["runbook"]
    lines = [
        f"# Runbook `{runbook['name']}` — run `{report['run_id']}`",
        "",
        f"**{_headline(report).capitalize()}** (exit code {report['exit_code']}).",
        "",
        f"- Runbook file: `{runbook['path']}`",
        f"- Started {report['started_at']}, finished {report['finished_at']} "
        f"({report['wall_s']:.1f}s)",
        "- API calls: "
        + (", ".join(f"`{k}`: {v}" for k, v in report["api_calls"].items()) or "none"),
    ]
    rto = report["time_to_recover_s"]
    if rto["count"]:
        lines.append(
            f"- Time to recover: median {rto['p50']:.1f}s, p95 {rto['p95']:.1f}s, "
            f"max {rto['max']:.1f}s ({rto['count']} jobs)"
        )
    resilience = report.get("api_resilience") or {}
    if resilience:
        lines.append(
            "- API resilience: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in resilience.items())
        )
    if report.get("resumed_at"):
        lines.append(f"- Resumed after an interruption at {', '.join(report['resumed_at'])}")
    lines += ["", "## What was done", "", *_what_was_done(report)]
    headers = ["project", *(h for h, _ in _COLUMNS)]
    rows = [[_label(t), *_row_counts(t["totals"])] for t in report["targets"]]
    rows.append(["**total**", *_row_counts(report["totals"])])
    lines += ["", "## Summary", "", *_md_table(headers, rows)]
    needs = _needs_a_human(report)
    if needs:
        lines += ["", "## Needs a human", ""]
        lines += _md_table(
            ["project", "job id", "name", "disposition", "last status", "reason"],
            [
                (
                    _label(t),
                    f"`{j['id']}`",
                    j["name"],
                    j["disposition"],
                    j["last_status"],
                    j["reason"],
                )
                for t, j in needs
            ],
        )
    for target in report["targets"]:
        where = target["region"] or target["endpoint"]
        lines += ["", f"## {_label(target)} (`{target['project_id']}`, {where})", ""]
        lines += _md_table(
            ["step", "action", "status", "duration", "result"],
            [
                (
                    s["id"],
                    s["action"],
                    s["status"],
                    f"{s['duration_s']:.1f}s",
                    s["message"] or ", ".join(f"{k}: {v}" for k, v in s["outputs"].items()),
                )
                for s in target["steps"]
            ],
        )
        lines.append("")
        if not target["jobs"]:
            lines.append("No job matched the selection.")
            continue
        lines += _md_table(
            ["job id", "name", "at selection", "last status", "disposition", "TTR", "detail"], []
        )
        lines += map(_md_job_row, target["jobs"])
    return lines


def _what_was_done(report: dict[str, Any]) -> list[str]:
    """One line per step, over every project: how it ended and its outputs summed."""
    order: dict[str, dict[str, Any]] = {}
    for target in report["targets"]:
        for step in target["steps"]:
            seen = order.setdefault(
                step["id"], {"step": step, "status": Counter(), "outputs": Counter()}
            )
            seen["status"][step["status"]] += 1
            for key, value in step["outputs"].items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    seen["outputs"][key] += value
    lines = []
    for step_id, seen in order.items():
        step = seen["step"]
        ended = ", ".join(f"{status} in {n}" for status, n in seen["status"].items())
        counted = ", ".join(
            f"{k} {v:g}" for k, v in seen["outputs"].items() if "ratio" not in k and "_s" not in k
        )
        title = f" — {step['name']}" if step.get("name") else ""
        lines.append(
            f"- `{step_id}` ({step['action']}){title}: {ended} project(s)"
            + (f"; {counted}" if counted else "")
        )
    return lines


def plan_summary(report: dict[str, Any]) -> str:
    """What a run would do, per project: the jobs each mutating step would send, and the skips."""
    calls = sum(report["api_calls"].values())
    lines = [
        f"plan for runbook '{report['runbook']['name']}': no changes made "
        f"({calls} read-only API call(s))"
    ]
    for target in report["targets"]:
        where = target["region"] or target["endpoint"]
        lines += ["", f"{_label(target)} ({target['project_id']}, {where})"]
        for step in target["steps"]:
            would = [
                (job, event)
                for job in target["jobs"]
                for event in job["events"]
                if event["kind"] in {"would_retry", "would_pause"} and event["step"] == step["id"]
            ]
            if step["status"] == "failed":
                lines.append(f"  {step['id']} ({step['action']}): FAILED: {step['message']}")
            elif would:
                batches = len({event.get("detail") for _, event in would})
                lines += _would_send(
                    f"{step['id']} ({step['action']})",
                    [(job["id"], job["name"], job["last_status"]) for job, _ in would],
                    batches,
                    indent="  ",
                )
            elif step["status"] == "skipped":
                lines.append(f"  {step['id']} ({step['action']}): {step['message']}")
            else:
                outputs = ", ".join(f"{k}: {v}" for k, v in step["outputs"].items())
                lines.append(f"  {step['id']} ({step['action']}): {outputs}")
        skipped = [j for j in target["jobs"] if j["disposition"] == "skipped"]
        lines += _left_alone([(j["id"], j["name"], j["reason"]) for j in skipped], indent="  ")
    return "\n".join(lines) + "\n"


Row = tuple[str, str, str | None]


def _would_send(
    what: str, jobs: Sequence[Row], batches: int, *, indent: str, most: int | None = None
) -> list[str]:
    """A mutating step's plan: the jobs it would send (plan and run print it alike)."""
    lines = [f"{indent}{what} would send {len(jobs)} job(s) in {batches} batch(es):"]
    return lines + _rows(jobs, indent + "  ", most)


def _left_alone(jobs: Sequence[Row], *, indent: str, most: int | None = None) -> list[str]:
    """Jobs that matched but no step will touch, with why (dual-active parent, no RETRY, ...)."""
    if not jobs:
        return []
    return [f"{indent}left alone ({len(jobs)}):", *_rows(jobs, indent + "  ", most)]


def _rows(jobs: Sequence[Row], indent: str, most: int | None) -> list[str]:
    shown = jobs if most is None else jobs[:most]
    lines = [f"{indent}{job_id}  {name}  {detail or ''}".rstrip() for job_id, name, detail in shown]
    if len(shown) < len(jobs):
        lines.append(f"{indent}... and {len(jobs) - len(shown)} more")
    return lines


def approval_summary(
    request: ApprovalRequest, *, max_listed: int = 10, heading: str | None = None
) -> str:
    """What is about to be changed (or approved), per project as ``runbook plan`` shows it: the
    jobs the next change would send, in how many batches, and the jobs left alone."""
    message = request.step.with_.get("message")
    lines = [f"{message}"] if isinstance(message, str) and heading is None else []
    lines += [
        f"{heading or 'approval'} '{request.step.id}': {request.total} job(s) selected in "
        f"{len(request.selected)} project(s); next: "
        + ", ".join(f"{s.id} ({s.action})" for s in request.next_steps)
    ]
    for target, jobs in request.selected.items():
        where = target.region or target.endpoint
        lines.append(
            f"  {target.label} ({target.project_id}, {where}): {len(jobs)} job(s) selected"
        )
        preview = request.previews.get(target)
        what = None if preview is None else f"{preview.step.id} ({preview.step.action})"
        if preview is None or preview.problem is not None:
            if preview is not None:
                lines.append(f"    {what}: {preview.problem}")
            lines += _rows([(j.job_id, j.name, j.last_status) for j in jobs], "    ", max_listed)
        else:
            sent = [(j.job_id, j.name, j.last_status) for j in preview.would_send]
            lines += _would_send(str(what), sent, preview.batches, indent="    ", most=max_listed)
        alone = request.left_alone.get(target, [])
        lines += _left_alone(
            [(j.job_id, j.name, j.reason) for j in alone], indent="    ", most=max_listed
        )
    return "\n".join(lines)
