"""Render a report document as one self-contained HTML page: summary, tables, timeline chart."""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.report.build import NEEDS_A_HUMAN
from engine.report.junit import timeline_text
from engine.report.render import _COLUMNS, _headline

# The chart draws at most this many jobs needing a human, plus a sample of the others.
CHART_NEEDS_A_HUMAN = 400
CHART_SAMPLE = 100
# The "needs a human" table lists this many; every job is still in the per-project job lists.
TABLE_NEEDS_A_HUMAN = 500
# Above this many jobs needing a human, their reasons are first counted in a short table.
GLANCE_FROM = 12
GLANCE_ROWS = 15
# Job lists of a run this small start unfolded.
OPEN_JOB_LISTS = 100

_NEEDS = tuple(d.value for d in NEEDS_A_HUMAN)
# Disposition -> colour; similar outcomes share a hue (greens good, reds failed, ...).
_COLOURS = {
    "recovered": "#1a7f37",
    "healthy": "#4ac26b",
    "skipped": "#8c959f",
    "selected": "#b6c2cf",
    "retry_accepted": "#54aeff",
    "failed_again": "#cf222e",
    "failed": "#82071e",
    "timed_out": "#e16f24",
    "retry_rejected": "#8250df",
    "pause_rejected": "#a475f9",
    "retry_unknown": "#bf8700",
    "pause_unknown": "#d4a72c",
    "not_found": "#57606a",
    "not_retried": "#6e7781",
    "not_verified": "#0969da",
    "cancelled": "#424a53",
    "paused": "#0550ae",
}
_SENT = frozenset({"retry_sent", "pause_sent", "would_retry", "would_pause"})

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --good: #1a7f37;
  --bad: #cf222e; --warn: #bf8700; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 14px/1.5 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
.kicker { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
h1 { font-size: 24px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 17px; margin: 36px 0 10px; padding-bottom: 6px; font-weight: 600;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; font-weight: 600; }
.meta, .note { color: var(--muted); font-size: 13px; }
.note { margin: 6px 0 10px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 12px; }
.headline { margin: 16px 0 14px; padding: 12px 18px; border-radius: 8px; font-size: 18px;
  font-weight: 600; border-left: 6px solid var(--good); background: #dafbe1; }
.headline.bad { border-color: var(--bad); background: #ffebe9; }
.headline.warn { border-color: var(--warn); background: #fff8c5; }
.headline small { display: block; font-size: 13px; font-weight: 400; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 24px; font-weight: 600; line-height: 1.3; }
.card span { display: block; font-size: 13px; }
.card small { display: block; color: var(--muted); font-size: 12px; }
.card.good b { color: var(--good); } .card.bad b { color: var(--bad); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.zero { color: #c5ccd3; }
tr.total td { font-weight: 600; background: var(--soft); }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px;
  white-space: nowrap; }
.status-ok { color: var(--good); font-weight: 600; } .status-failed { color: var(--bad);
  font-weight: 600; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
details.events { margin: 0; } details.events summary { font-weight: 400; color: var(--muted); }
details.events pre { margin: 4px 0 0; font-size: 12px; }
td code, td.nw { white-space: nowrap; }
table.narrow { width: auto; min-width: 50%; }
td.detail { min-width: 220px; }
.scroll { overflow-x: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 6px 0 10px; font-size: 12.5px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.legend i.wait { height: 2px; vertical-align: 3px; background: #8c959f; }
.chart { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.chart svg { display: block; font-family: inherit; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { details { display: block; } .chart { overflow: visible; } }
"""


def to_html(report: dict[str, Any]) -> str:
    return "\n".join(html_lines(report)) + "\n"


def html_lines(report: dict[str, Any]) -> list[str]:
    """The report as one HTML file that needs nothing else (no script, no network, no font),
    line by line.

    Summary first (what happened, what needs a human and why), then the projects, the timeline
    of every job (capped for large runs, and the page says so), the API traffic and every job.
    """
    runbook = report["runbook"]
    title = f"runbook {runbook['name']}: run {report['run_id']}"
    body = [
        "<main>",
        '<div class="kicker">DRS runbook report</div>',
        f"<h1>{_e(runbook['name'])}</h1>",
        f'<div class="meta">run <code>{_e(report["run_id"])}</code> · '
        f"<code>{_e(runbook['path'])}</code> · started {_e(report['started_at'])}, "
        f"finished {_e(report['finished_at'])}</div>",
    ]
    if runbook["description"]:
        body.append(f'<p class="meta">{_e(runbook["description"])}</p>')
    body += _summary(report)
    body += _done(report)
    body += _needs_a_human(report)
    body += _projects(report)
    body += _timeline(report)
    body += _api(report)
    body += _jobs(report)
    body += [
        f"<footer>drs-runbook report, format version {_e(report['report_version'])}. "
        "Times on the chart are seconds since the run started. This page is self-contained: "
        "it loads nothing from the network.</footer>",
        "</main>",
    ]
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # No fetch of any kind: the page must open offline and leak nothing when opened.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]


def _summary(report: dict[str, Any]) -> list[str]:
    totals = report["totals"]
    tone = "warn" if report.get("interrupted") else "bad" if report["exit_code"] != 0 else "good"
    headline = _headline(report)
    projects = len(report["targets"])
    facts = [f"exit code {report['exit_code']}", f"{projects} project(s)"]
    if not report.get("mutating", True):
        facts.append("read-only runbook: no job was changed")
    out = [
        f'<div class="headline {tone}">{_e(headline[:1].upper() + headline[1:])}'
        f"<small>{_e(' · '.join(facts))}</small></div>",
        '<div class="cards">',
        _card(totals["selected"], "jobs selected", f"of {totals['jobs']} seen"),
        _card(totals["ok"], "recovered or healthy", tone="good"),
        _card(
            totals["needs_attention"],
            "need a human",
            "listed below" if totals["needs_attention"] else "",
            tone="bad" if totals["needs_attention"] else "",
        ),
        _card(totals.get("skipped", 0), "skipped", "by the selection"),
    ]
    rto = report["time_to_recover_s"]
    if rto["count"]:
        out.append(
            _card(
                _secs(rto["p50"]),
                "median recovery",
                f"p95 {_secs(rto['p95'])} · max {_secs(rto['max'])}",
            )
        )
    resilience = report.get("api_resilience", {})
    out += [
        _card(
            sum(report["api_calls"].values()),
            "API calls",
            f"{resilience.get('throttled', 0)} throttled · {resilience.get('retries', 0)} re-sent",
        ),
        _card(_secs(report["wall_s"]), "wall time"),
        "</div>",
    ]
    return out


def _card(value: object, label: str, sub: str = "", *, tone: str = "") -> str:
    small = f"<small>{_e(sub)}</small>" if sub else ""
    return f'<div class="card {tone}"><b>{_e(value)}</b><span>{_e(label)}</span>{small}</div>'


def _done(report: dict[str, Any]) -> list[str]:
    """Each step once, over every project: how it ended, its outputs summed, its messages."""
    steps: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for target in report["targets"]:
        for step in target["steps"]:
            steps.setdefault(step["id"], []).append((target, step))
    if not steps:
        return []
    rows = []
    for step_id, runs in steps.items():
        statuses = Counter(step["status"] for _, step in runs)
        ended = ", ".join(f"{status} in {n}" for status, n in statuses.items())
        messages = [
            f"{_label(target)}: {step['message']}" for target, step in runs if step["message"]
        ]
        result = [_e(_outputs(step for _, step in runs))]
        result += [f'<span class="meta">{_e(m)}</span>' for m in messages[:5]]
        if len(messages) > 5:
            result.append(f'<span class="meta">… and {len(messages) - 5} more</span>')
        rows.append(
            f"<tr><td><code>{_e(step_id)}</code></td><td><code>{_e(runs[0][1]['action'])}</code>"
            f"</td><td>{_e(ended)}</td><td>{'<br>'.join(r for r in result if r)}</td>"
            f'<td class="n">{_secs(max(step["duration_s"] for _, step in runs))}</td></tr>'
        )
    return [
        "<h2>What was done</h2>",
        "<table><thead><tr><th>step</th><th>action</th><th>ended (projects)</th>"
        '<th>result, all projects</th><th class="n">took (longest)</th></tr></thead>',
        f"<tbody>{''.join(rows)}</tbody></table>",
    ]


def _outputs(steps: Iterable[dict[str, Any]]) -> str:
    """Counts summed over projects; flags as how many said yes; rates and times left out."""
    sums: dict[str, int] = {}
    flags: dict[str, list[bool]] = {}
    for step in steps:
        for key, value in step["outputs"].items():
            if isinstance(value, bool):
                flags.setdefault(key, []).append(value)
            elif isinstance(value, int):
                sums[key] = sums.get(key, 0) + value
    parts = [f"{key} {value}" for key, value in sums.items()]
    parts += [f"{key} in {sum(v)} of {len(v)}" for key, v in flags.items()]
    return ", ".join(parts)


def _needs(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The jobs that need a human, most urgent disposition first."""
    order = {value: rank for rank, value in enumerate(_NEEDS)}
    found = [
        (target, job)
        for target in report["targets"]
        for job in target["jobs"]
        if job["disposition"] in order
    ]
    return sorted(found, key=lambda pair: order[pair[1]["disposition"]])


def _needs_a_human(report: dict[str, Any]) -> list[str]:
    needs = _needs(report)
    failed_steps = [
        (target, step)
        for target in report["targets"]
        for step in target["steps"]
        if step["status"] == "failed"
    ]
    if not needs and not failed_steps:
        return ["<h2>Needs a human</h2>", '<p class="note">nothing: every selected job is fine</p>']
    out = [f"<h2>Needs a human ({len(needs)} job(s))</h2>"]
    if failed_steps:
        out.append("<ul>")
        out += [
            f"<li>{_e(_label(t))}: step <code>{_e(s['id'])}</code> failed: {_e(s['message'])}</li>"
            for t, s in failed_steps
        ]
        out.append("</ul>")
    if not needs:
        return out
    if len(needs) > GLANCE_FROM:
        out += _at_a_glance(needs)
    shown = needs[:TABLE_NEEDS_A_HUMAN]
    coded = any(job["error_code"] for _, job in shown)
    out.append(
        '<div class="scroll"><table><thead><tr><th>project</th><th>job</th><th>job id</th>'
        "<th>disposition</th>"
        "<th>last status</th>"
        + ("<th>error code</th>" if coded else "")
        + "<th>reason</th><th>events</th></tr></thead><tbody>"
    )
    for target, job in shown:
        out.append(
            f'<tr><td class="nw">{_e(_label(target))}</td><td class="nw">{_e(job["name"])}</td>'
            f"<td><code>{_e(job['id'])}</code></td><td>{_pill(job['disposition'])}</td>"
            f"<td><code>{_e(job['last_status'])}</code></td>"
            + (f"<td><code>{_e(job['error_code'])}</code></td>" if coded else "")
            + f"<td>{_e(job['reason'])}</td><td>{_events(job)}</td></tr>"
        )
    out.append("</tbody></table></div>")
    if len(needs) > len(shown):
        out.append(
            f'<p class="note">the first {len(shown)} of {len(needs)} are listed here; '
            "every job is in the per-project lists below</p>"
        )
    return out


def _at_a_glance(needs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """The reasons jobs need a human, most frequent first: a long list read at a glance."""
    reasons = Counter(
        (job["disposition"], job["error_code"] or "", job["reason"] or "") for _, job in needs
    )
    out = [
        "<h3>Why, at a glance</h3>",
        '<table><thead><tr><th class="n">jobs</th><th>disposition</th><th>error code</th>'
        "<th>reason</th></tr></thead><tbody>",
    ]
    out += [
        f'<tr><td class="n">{n}</td><td>{_pill(disposition)}</td><td><code>{_e(code)}</code>'
        f"</td><td>{_e(reason)}</td></tr>"
        for (disposition, code, reason), n in reasons.most_common(GLANCE_ROWS)
    ]
    out.append("</tbody></table>")
    if len(reasons) > GLANCE_ROWS:
        out.append(f'<p class="note">and {len(reasons) - GLANCE_ROWS} less frequent reason(s)</p>')
    shown = min(len(needs), TABLE_NEEDS_A_HUMAN)
    heading = f"The {shown} jobs" if shown == len(needs) else f"The first {shown} jobs"
    return [*out, f"<h3>{heading}</h3>"]


def _events(job: dict[str, Any]) -> str:
    return (
        f'<details class="events"><summary>{len(job["events"])}</summary>'
        f"<pre>{_e(timeline_text(job['events']))}</pre></details>"
    )


def _projects(report: dict[str, Any]) -> list[str]:
    heads = "".join(f'<th class="n">{_e(h)}</th>' for h, _ in _COLUMNS)
    out = [
        "<h2>Projects</h2>",
        f"<table><thead><tr><th>project</th><th>region</th><th>status</th>{heads}"
        '<th class="n">median TTR</th></tr></thead><tbody>',
    ]
    for target in report["targets"]:
        ttrs = sorted(
            j["time_to_recover_s"] for j in target["jobs"] if j["time_to_recover_s"] is not None
        )
        median = _secs(ttrs[math.ceil(len(ttrs) / 2) - 1]) if ttrs else ""
        out.append(
            f"<tr><td>{_e(_label(target))}<br><code>{_e(target['project_id'])}</code></td>"
            f"<td>{_e(target['region'])}</td>"
            f'<td class="status-{_e(target["status"])}">{_e(target["status"])}</td>'
            f"{_count_cells(target['totals'])}"
            f'<td class="n">{median}</td></tr>'
        )
    rto = report["time_to_recover_s"]
    out += [
        f'<tr class="total"><td>total</td><td></td><td></td>{_count_cells(report["totals"])}'
        f'<td class="n">{_secs(rto["p50"]) if rto["count"] else ""}</td></tr>',
        "</tbody></table>",
    ]
    return out


def _count_cells(totals: dict[str, int]) -> str:
    cells = []
    for _, keys in _COLUMNS:
        value = sum(totals.get(k, 0) for k in keys)
        cells.append(f'<td class="n{" zero" if value == 0 else ""}">{value}</td>')
    return "".join(cells)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bar:
    """One job on the timeline: selected at ``selected_t``, acted on at ``start_t``, settled."""

    label: str
    title: str
    disposition: str
    selected_t: float
    start_t: float
    end_t: float
    marks: tuple[float, ...]
    outcome: str  # the words beside the bar: "recovered in 4.0s", "timed out"


def _bar(job: dict[str, Any]) -> _Bar | None:
    events = job["events"]
    if not events or job["disposition"] == "skipped":
        return None
    times = [e["t"] for e in events]
    sent = next((e["t"] for e in events if e["kind"] in _SENT), None)
    selected = next((e["t"] for e in events if e["kind"] == "selected"), times[0])
    ttr = job["time_to_recover_s"]
    title = f"{job['name']} ({job['id']}): {job['disposition']}" + (
        f", recovered in {ttr:.1f}s" if ttr is not None else ""
    )
    if job["reason"]:
        title += f" — {job['reason']}"
    return _Bar(
        label=job["name"] or job["id"],
        title=title,
        disposition=job["disposition"],
        selected_t=selected,
        start_t=sent if sent is not None else selected,
        end_t=max(times),
        marks=tuple(e["t"] for e in events if e["kind"] == "status_observed"),
        outcome=(
            f"recovered in {_secs(ttr)}"
            if ttr is not None
            else job["disposition"].replace("_", " ")
        ),
    )


def _chart_jobs(report: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], list[_Bar]]], str]:
    """The jobs to draw, per project, and a note saying what was left out.

    Every job that needs a human is drawn, up to CHART_NEEDS_A_HUMAN; past that, and for the
    others (up to CHART_SAMPLE), an even sample in run order, so each project and each way of
    failing keeps its share of the rows.
    """
    acted_on = [
        job
        for target in report["targets"]
        for job in target["jobs"]
        if job["disposition"] != "skipped" and job["events"]
    ]
    needs = [job for job in acted_on if job["disposition"] in _NEEDS]
    others = [job for job in acted_on if job["disposition"] not in _NEEDS]
    drawn_needs, drawn_others = _sample(needs, CHART_NEEDS_A_HUMAN), _sample(others, CHART_SAMPLE)
    keep = {id(job) for job in (*drawn_needs, *drawn_others)}
    groups = []
    for target in report["targets"]:
        bars = [bar for job in target["jobs"] if id(job) in keep and (bar := _bar(job)) is not None]
        if bars:
            groups.append((target, sorted(bars, key=lambda b: (b.end_t, b.start_t))))
    if len(keep) == len(acted_on):
        return groups, f"every job the run acted on ({len(keep)}); skipped jobs are not drawn"
    return groups, (
        f"{len(keep)} of {len(acted_on)} jobs drawn: "
        + (
            f"all {len(needs)} that need a human"
            if len(drawn_needs) == len(needs)
            else f"an even sample of {len(drawn_needs)} of the {len(needs)} that need a human"
        )
        + (
            f" and all {len(others)} others"
            if len(drawn_others) == len(others)
            else f" and an even sample of {len(drawn_others)} of the {len(others)} others"
        )
        + "; skipped jobs are not drawn. Every job is listed below."
    )


def _sample(jobs: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``size`` jobs spread evenly over ``jobs``, in their order; all of them if they fit."""
    if len(jobs) <= size:
        return list(jobs)
    step = len(jobs) / size
    return [jobs[int(i * step)] for i in range(size)]


def _ticks(end: float) -> list[float]:
    """About eight round tick values (1, 2 or 5 times a power of ten) from 0 to ``end``."""
    raw = end / 8 or 1.0
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(end / step) + 1)]


def _timeline(report: dict[str, Any]) -> list[str]:
    groups, note = _chart_jobs(report)
    out = ["<h2>Timeline</h2>"]
    if not groups:
        return [*out, '<p class="note">no job was acted on</p>']
    rows = sum(len(bars) for _, bars in groups)
    row_h = 18 if rows <= 80 else 10 if rows <= 200 else 5
    labelled = row_h >= 10
    label_w, plot_w, group_h, axis_h = (250 if labelled else 110), 880, 28, 30
    end = max(bar.end_t for _, bars in groups for bar in bars) or 1.0
    ticks = _ticks(end)
    end = max(end, ticks[-1])
    body_h = sum(group_h + len(bars) * row_h for _, bars in groups)
    height = axis_h + body_h + 40
    width = label_w + plot_w + 60

    def x(t: float) -> float:
        return round(label_w + t / end * plot_w, 1)

    svg = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="timeline of {rows} jobs, seconds since the run started">'
    ]
    bottom = axis_h + body_h + 4
    for tick in ticks:
        label = f"{tick:g}s"
        svg.append(
            f'<line x1="{x(tick)}" y1="{axis_h - 6}" x2="{x(tick)}" y2="{bottom}" '
            'stroke="#e6eaef"/>'
            f'<text x="{x(tick)}" y="{axis_h - 12}" font-size="11" fill="#59636e" '
            f'text-anchor="middle">{label}</text>'
            f'<text x="{x(tick)}" y="{bottom + 14}" font-size="11" fill="#59636e" '
            f'text-anchor="middle">{label}</text>'
        )
    svg.append(
        f'<text x="{label_w + plot_w / 2}" y="{bottom + 32}" font-size="11.5" fill="#59636e" '
        'text-anchor="middle">seconds since the run started</text>'
    )
    y = axis_h
    for target, bars in groups:
        svg.append(
            f'<line x1="0" y1="{y + 2}" x2="{label_w + plot_w}" y2="{y + 2}" stroke="#d1d9e0"/>'
            f'<text x="0" y="{y + 20}" font-size="13" font-weight="600" fill="#1f2328">'
            f"{_e(_label(target))}</text>"
        )
        y += group_h
        for bar in bars:
            svg.append(_bar_svg(bar, y, row_h, x, labelled=labelled, edge=width))
            y += row_h
    svg.append("</svg>")
    shown = sorted({bar.disposition for _, bars in groups for bar in bars}, key=_rank)
    legend = "".join(
        f'<span><i style="background:{_COLOURS.get(d, "#8c959f")}"></i>{_e(d)}</span>'
        for d in shown
    )
    return [
        *out,
        '<p class="note">one bar per job, from the retry (or pause) being sent to the last thing '
        "the run saw of it; the thin line before a bar is the wait since selection, the white "
        f"ticks are status changes. {_e(note)}</p>",
        f'<div class="legend"><span><i class="wait"></i>waiting to be sent</span>{legend}</div>',
        f'<div class="chart">{"".join(svg)}</div>',
    ]


def _bar_svg(
    bar: _Bar, y: int, row_h: int, x: Callable[[float], float], *, labelled: bool, edge: float
) -> str:
    colour = _COLOURS.get(bar.disposition, "#8c959f")
    mid = y + row_h / 2
    bar_h = row_h - 6 if labelled else row_h - 1
    parts = [f"<g><title>{_e(bar.title)}</title>"]
    if labelled:
        parts.append(
            f'<text x="12" y="{mid + 4}" font-size="11.5" fill="#1f2328">'
            f"{_e(_clip(bar.label, 36))}</text>"
        )
    if bar.start_t > bar.selected_t:
        parts.append(
            f'<line x1="{x(bar.selected_t)}" y1="{mid}" x2="{x(bar.start_t)}" y2="{mid}" '
            'stroke="#8c959f" stroke-width="1.5"/>'
        )
    left, right = x(bar.start_t), max(x(bar.end_t), x(bar.start_t) + 3)
    parts.append(
        f'<rect x="{left}" y="{mid - bar_h / 2}" width="{round(right - left, 1)}" '
        f'height="{bar_h}" rx="{2 if labelled else 0}" fill="{colour}"/>'
    )
    if labelled:
        parts += [
            f'<line x1="{x(t)}" y1="{mid - bar_h / 2}" x2="{x(t)}" y2="{mid + bar_h / 2}" '
            'stroke="#fff" stroke-opacity="0.85" stroke-width="1.5"/>'
            for t in bar.marks
            if bar.start_t < t < bar.end_t
        ]
        # What became of the job, after the bar, or inside its end when the bar is too long.
        if right + 8 + 6 * len(bar.outcome) < edge:
            parts.append(
                f'<text x="{right + 6}" y="{mid + 4}" font-size="11" fill="#59636e">'
                f"{_e(bar.outcome)}</text>"
            )
        elif right - left > 6 * len(bar.outcome) + 12:
            parts.append(
                f'<text x="{right - 6}" y="{mid + 4}" font-size="11" fill="#fff" '
                f'text-anchor="end">{_e(bar.outcome)}</text>'
            )
    parts.append("</g>")
    return "".join(parts)


def _api(report: dict[str, Any]) -> list[str]:
    calls = report["api_calls"]
    resilience = report.get("api_resilience", {})
    out = ["<h2>API traffic</h2>"]
    if resilience:
        figures = [
            f"waited {_secs(value)} backing off"
            if key == "waited_s"
            else f"{key.replace('_', ' ')} {value}"
            for key, value in resilience.items()
        ]
        out.append(f'<p class="note">{_e(", ".join(figures))}</p>')
    if not calls:
        return [*out, '<p class="note">no API call</p>']
    out += [
        '<table class="narrow"><thead><tr><th>request</th><th class="n">calls</th></tr></thead>'
        "<tbody>",
        *(
            f'<tr><td><code>{_e(k)}</code></td><td class="n">{v}</td></tr>'
            for k, v in calls.items()
        ),
        "</tbody></table>",
    ]
    return out


def _jobs(report: dict[str, Any]) -> list[str]:
    out = ["<h2>Every job</h2>"]
    total = report["totals"]["jobs"]
    for target in report["targets"]:
        jobs = target["jobs"]
        where = target["region"] or target["endpoint"]
        opened = " open" if total <= OPEN_JOB_LISTS else ""
        out.append(
            f"<details{opened}><summary>{_e(_label(target))} "
            f'<span class="meta">({_e(target["project_id"])}, {_e(where)}): '
            f"{len(jobs)} job(s)</span></summary>"
        )
        if not jobs:
            out += ['<p class="note">no job matched the selection</p>', "</details>"]
            continue
        out.append(
            '<div class="scroll"><table><thead><tr><th>job id</th><th>name</th>'
            "<th>at selection</th><th>last status</th><th>disposition</th>"
            '<th class="n">TTR</th><th>detail</th></tr></thead><tbody>'
        )
        for job in jobs:
            ttr = job["time_to_recover_s"]
            kind = " · ".join(v for v in (job["engine_type"], job["db_use_type"]) if v)
            detail = " ".join(v for v in (job["error_code"], job["reason"]) if v)
            out.append(
                f'<tr><td><code>{_e(job["id"])}</code></td><td class="nw">{_e(job["name"])}'
                f'<br><span class="meta">{_e(kind)}</span></td>'
                f"<td><code>{_e(job['status_at_selection'])}</code></td>"
                f"<td><code>{_e(job['last_status'])}</code></td>"
                f"<td>{_pill(job['disposition'])}</td>"
                f'<td class="n">{_secs(ttr) if ttr is not None else ""}</td>'
                f'<td class="detail">{_e(detail)}</td></tr>'
            )
        out += ["</tbody></table></div>", "</details>"]
    return out


def _rank(disposition: str) -> int:
    order = list(_COLOURS)
    return order.index(disposition) if disposition in order else len(order)


def _pill(disposition: str) -> str:
    colour = _COLOURS.get(disposition, "#8c959f")
    return f'<span class="pill" style="background:{colour}">{_e(disposition)}</span>'


def _label(target: dict[str, Any]) -> str:
    return str(target["name"] or target["project_id"])


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _secs(value: float | None) -> str:
    if value is None:
        return ""
    if 0 < value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f}s" if value < 600 else f"{value / 60:.1f} min"


def _e(value: object) -> str:
    """Text for HTML content or a quoted attribute; None is empty. Ids, names and statuses
    rarely hold a character to escape: looking costs a fifth of escaping."""
    if value is None:
        return ""
    text = str(value)
    return text if _NOT_PLAIN.search(text) is None else html.escape(text, quote=True)


# What html.escape(quote=True) changes.
_NOT_PLAIN = re.compile("[&<>\"']")
