"""Render a report document as one self-contained HTML page: summary, tables, timeline chart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from engine.ledger import NEEDS_A_HUMAN, Column, Disposition
from engine.percentiles import nearest_rank
from engine.report.document import (
    DrillReport,
    JobReport,
    Report,
    StepReport,
    TargetReport,
    Totals,
)
from engine.report.html_chart import timeline
from engine.report.html_style import CSS, escape, pill, secs
from engine.report.junit import timeline_text
from engine.report.summary import (
    columns,
    delay_text,
    has_delays,
    headline,
    last_delays,
    row,
    steps_ended,
    target_status,
)
from engine.units import describe_delay

# The "needs a human" table lists this many; every job is still in the per-project job lists.
TABLE_NEEDS_A_HUMAN = 500
# Above this many jobs needing a human, their reasons are first counted in a short table.
GLANCE_FROM = 12
GLANCE_ROWS = 15
# Job lists of a run this small start unfolded.
OPEN_JOB_LISTS = 100


def to_html(report: Report) -> str:
    return "\n".join(html_lines(report)) + "\n"


def html_lines(report: Report) -> list[str]:
    """The report as one HTML file that needs nothing else (no script, no network, no font),
    line by line.

    Summary first (what happened, what needs a human and why), then the projects, the timeline
    of every job (capped for large runs, and the page says so), the API traffic and every job.
    """
    runbook = report.runbook
    title = f"runbook {runbook.name}: run {report.run_id}"
    body = [
        "<main>",
        '<div class="kicker">DRS runbook report</div>',
        f"<h1>{escape(runbook.name)}</h1>",
        f'<div class="meta">run <code>{escape(report.run_id)}</code> · '
        f"<code>{escape(runbook.path)}</code> · started {escape(report.started_at)}, "
        f"finished {escape(report.finished_at)}</div>",
    ]
    if report.resumed_at:
        at = ", ".join(report.resumed_at)
        body.append(f'<div class="meta">resumed after an interruption at {escape(at)}</div>')
    if report.plan_hash:
        body.append(f'<div class="meta">applied plan <code>{escape(report.plan_hash)}</code></div>')
    if runbook.description:
        body.append(f'<p class="meta">{escape(runbook.description)}</p>')
    summary = _summary(report)
    # A drill's verdict and recovery come first, right under the headline that states it.
    body += [summary[0], *_drill(report.drill), *summary[1:]]
    body += _done(report)
    body += _needs_a_human(report)
    body += _notices(report)
    body += _projects(report)
    body += timeline(report)
    body += _api(report)
    body += _jobs(report)
    body += [
        f"<footer>drs-runbook report, format version {escape(report.report_version)}. "
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
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]


def _summary(report: Report) -> list[str]:
    totals = report.totals
    tone = "warn" if report.interrupted else "bad" if report.exit_code != 0 else "good"
    said = headline(report)
    projects = len(report.targets)
    facts = [f"exit code {report.exit_code}", f"{projects} project(s)"]
    if report.stopped_by is not None:
        facts.append(f"{report.stopped_by.in_flight} change request(s) in flight at the stop")
    if not report.mutating:
        facts.append("read-only runbook: no job was changed")
    out = [
        f'<div class="headline {tone}">{escape(said[:1].upper() + said[1:])}'
        f"<small>{escape(' · '.join(facts))}</small></div>",
        '<div class="cards">',
        _card(totals.selected, "jobs selected", f"of {totals.jobs} seen"),
        _card(totals.ok, "recovered or healthy", tone="good"),
        _card(
            totals.needs_attention,
            "need a human",
            "listed below" if totals.needs_attention else "",
            tone="bad" if totals.needs_attention else "",
        ),
        _card(totals.of_disposition(Disposition.SKIPPED), "skipped", "by the selection"),
    ]
    rto = report.time_to_recover_s
    if rto.count:
        out.append(
            _card(
                secs(rto.p50),
                "median recovery",
                f"p95 {secs(rto.p95)} · max {secs(rto.max)}",
            )
        )
    if delays := last_delays(report):
        lagging = totals.of_disposition(Disposition.LAGGING)
        median = describe_delay(nearest_rank(delays, 50))
        sub = f"median {median} · {len(delays)} jobs · {lagging} lagging"
        largest = describe_delay(delays[-1])
        tone = "bad" if lagging else ""
        out.append(_card(largest, "largest delay at the last poll", sub, tone=tone))
    resilience = report.api_resilience
    out += [
        _card(
            sum(report.api_calls.values()),
            "API calls",
            f"{resilience.get('throttled', 0)} throttled · {resilience.get('retries', 0)} re-sent",
        ),
        _card(secs(report.wall_s), "wall time"),
        "</div>",
    ]
    return out


def _drill(drill: DrillReport | None) -> list[str]:
    """The drill: pause-to-recovery against the budget, its checks, and each paused job."""
    if drill is None:
        return []
    tone = "good" if drill.passed else "bad"
    budget = drill.budget
    p95_tone = "" if budget is None else "good" if budget.held else "bad"
    out = [
        f'<h2>Drill <span class="verdict {tone}">{escape(drill.verdict)}</span></h2>',
        '<div class="cards">',
        _card(len(drill.paused), "jobs paused", f"{_recovered(drill)} recovered"),
    ]
    if drill.paused:
        within = "" if budget is None else f"budget {budget.budget_s:g}s"
        out += [
            _card(
                drill.outage_words(drill.rto_p95_s, secs),
                "p95 pause → recovery",
                within,
                tone=p95_tone,
            ),
            _card(
                drill.outage_words(drill.rto_p50_s, secs),
                "median pause → recovery",
                f"max {drill.outage_words(drill.rto_max_s, secs)}",
            ),
        ]
    held = sum(1 for c in drill.checks if c.status == "succeeded")
    out += [
        _card(
            f"{held}/{len(drill.checks)}",
            "checks held",
            "assert steps, every project",
            tone="good" if held == len(drill.checks) else "bad",
        ),
        "</div>",
    ]
    failed = [c for c in drill.checks if c.status == "failed"]
    if failed:
        out.append("<ul>")
        out += [
            f"<li>{escape(c.project)}: <code>{escape(c.step)}</code> failed: "
            f"{escape(c.message)}</li>"
            for c in failed
        ]
        out.append("</ul>")
    if budget is not None:
        out.append(
            f'<p class="note">RTO budget from <code>{escape(budget.step)}</code>: '
            f"<code>{escape(budget.that)}</code></p>"
        )
    if drill.paused:
        out.append(
            '<div class="scroll"><table><thead><tr><th>project</th><th>paused job</th>'
            "<th>disposition</th>"
            '<th class="n">paused at</th><th class="n">resumed at</th>'
            '<th class="n">recovered at</th><th class="n">pause → recovery</th></tr></thead><tbody>'
        )
        out += [
            f'<tr><td class="nw">{escape(j.project)}</td><td class="nw">{escape(j.name)}<br>'
            f'<span class="meta">{escape(j.id)}</span></td><td>{pill(j.disposition)}</td>'
            f'<td class="n">{_at(j.paused_t)}</td><td class="n">{_at(j.resumed_t)}</td>'
            f'<td class="n">{_at(j.recovered_t)}</td>'
            f'<td class="n">{secs(j.pause_to_recovery_s)}</td></tr>'
            for j in drill.paused
        ]
        out.append("</tbody></table></div>")
        out.append('<p class="note">times are seconds since the run started</p>')
    return out


def _recovered(drill: DrillReport) -> int:
    return sum(1 for j in drill.paused if j.pause_to_recovery_s is not None)


def _at(seconds: float | None) -> str:
    """A run-relative time: to the hundredth early in the run (a pause lands at 0.02 s)."""
    if seconds is None:
        return ""
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"


def _card(value: object, label: str, sub: str = "", *, tone: str = "") -> str:
    small = f"<small>{escape(sub)}</small>" if sub else ""
    return (
        f'<div class="card {tone}"><b>{escape(value)}</b><span>{escape(label)}</span>{small}</div>'
    )


def _done(report: Report) -> list[str]:
    """Each step once, over every project: how it ended, its outputs summed, its messages."""
    steps: dict[str, list[tuple[TargetReport, StepReport]]] = {}
    for target in report.targets:
        for step in target.steps:
            steps.setdefault(step.id, []).append((target, step))
    if not steps:
        return []
    rows = []
    ended_by_step = steps_ended(report)
    for step_id, runs in steps.items():
        ended = ended_by_step[step_id]
        messages = [f"{target.label}: {step.message}" for target, step in runs if step.message]
        result = [escape(_outputs(step for _, step in runs))]
        result += [f'<span class="meta">{escape(m)}</span>' for m in messages[:5]]
        if len(messages) > 5:
            result.append(f'<span class="meta">… and {len(messages) - 5} more</span>')
        rows.append(
            f"<tr><td><code>{escape(step_id)}</code></td><td><code>{escape(runs[0][1].action)}</code>"
            f"</td><td>{escape(ended)}</td><td>{'<br>'.join(r for r in result if r)}</td>"
            f'<td class="n">{secs(max(step.duration_s for _, step in runs))}</td></tr>'
        )
    return [
        "<h2>What was done</h2>",
        "<table><thead><tr><th>step</th><th>action</th><th>ended</th>"
        '<th>result, all projects</th><th class="n">took (longest)</th></tr></thead>',
        f"<tbody>{''.join(rows)}</tbody></table>",
    ]


def _outputs(steps: Iterable[StepReport]) -> str:
    """Counts summed over projects; flags as how many said yes; rates and times left out."""
    sums: dict[str, int] = {}
    flags: dict[str, list[bool]] = {}
    for step in steps:
        for key, value in step.outputs.items():
            if isinstance(value, bool):
                flags.setdefault(key, []).append(value)
            elif isinstance(value, int):
                sums[key] = sums.get(key, 0) + value
    parts = [f"{key} {value}" for key, value in sums.items()]
    parts += [f"{key} in {sum(v)} of {len(v)}" for key, v in flags.items()]
    return ", ".join(parts)


def _needs(report: Report) -> list[tuple[TargetReport, JobReport]]:
    """The jobs that need a human, most urgent disposition first."""
    order = {disposition: rank for rank, disposition in enumerate(NEEDS_A_HUMAN)}
    return sorted(report.needing_a_human(), key=lambda pair: order[pair[1].disposition])


def _notices(report: Report) -> list[str]:
    """Odd answers of the service, said by the steps that saw them."""
    notices = report.notices()
    if not notices:
        return []
    items = [
        f"<li>{escape(t.label)}: step <code>{escape(s.id)}</code>: {escape(text)}</li>"
        for t, s, text in notices
    ]
    return [f"<h2>Notices ({len(notices)})</h2>", "<ul>", *items, "</ul>"]


def _needs_a_human(report: Report) -> list[str]:
    needs = _needs(report)
    failed_steps = [
        (target, step)
        for target in report.targets
        for step in target.steps
        if step.status == "failed"
    ]
    if not needs and not failed_steps:
        return ["<h2>Needs a human</h2>", '<p class="note">nothing: every selected job is fine</p>']
    out = [f"<h2>Needs a human ({len(needs)} job(s))</h2>"]
    if failed_steps:
        out.append("<ul>")
        out += [
            f"<li>{escape(t.label)}: step <code>{escape(s.id)}</code> failed: "
            f"{escape(s.message)}</li>"
            for t, s in failed_steps
        ]
        out.append("</ul>")
    if not needs:
        return out
    if len(needs) > GLANCE_FROM:
        out += _at_a_glance(needs)
    shown = needs[:TABLE_NEEDS_A_HUMAN]
    coded = any(job.error_code for _, job in shown)
    out.append(
        '<div class="scroll"><table><thead><tr><th>project</th><th>job</th><th>job id</th>'
        "<th>disposition</th>"
        "<th>last status</th>"
        + ("<th>error code</th>" if coded else "")
        + "<th>reason</th><th>events</th></tr></thead><tbody>"
    )
    for target, job in shown:
        out.append(
            f'<tr><td class="nw">{escape(target.label)}</td><td class="nw">{escape(job.name)}</td>'
            f"<td><code>{escape(job.id)}</code></td><td>{pill(job.disposition)}</td>"
            f"<td><code>{escape(job.last_status)}</code></td>"
            + (f"<td><code>{escape(job.error_code)}</code></td>" if coded else "")
            + f"<td>{escape(job.reason)}</td><td>{_events(job)}</td></tr>"
        )
    out.append("</tbody></table></div>")
    if len(needs) > len(shown):
        out.append(
            f'<p class="note">the first {len(shown)} of {len(needs)} are listed here; '
            "every job is in the per-project lists below</p>"
        )
    return out


def _at_a_glance(needs: Sequence[tuple[TargetReport, JobReport]]) -> list[str]:
    """The reasons jobs need a human, most frequent first: a long list read at a glance."""
    reasons = Counter((job.disposition, job.error_code or "", job.reason or "") for _, job in needs)
    out = [
        "<h3>Why, at a glance</h3>",
        '<table><thead><tr><th class="n">jobs</th><th>disposition</th><th>error code</th>'
        "<th>reason</th></tr></thead><tbody>",
    ]
    out += [
        f'<tr><td class="n">{n}</td><td>{pill(disposition)}</td><td><code>{escape(code)}</code>'
        f"</td><td>{escape(reason)}</td></tr>"
        for (disposition, code, reason), n in reasons.most_common(GLANCE_ROWS)
    ]
    out.append("</tbody></table>")
    if len(reasons) > GLANCE_ROWS:
        out.append(f'<p class="note">and {len(reasons) - GLANCE_ROWS} less frequent reason(s)</p>')
    shown = min(len(needs), TABLE_NEEDS_A_HUMAN)
    heading = f"The {shown} jobs" if shown == len(needs) else f"The first {shown} jobs"
    return [*out, f"<h3>{heading}</h3>"]


def _events(job: JobReport) -> str:
    return (
        f'<details class="events"><summary>{len(job.events)}</summary>'
        f"<pre>{escape(timeline_text(job.events))}</pre></details>"
    )


def _projects(report: Report) -> list[str]:
    shown = columns(report)
    heads = "".join(f'<th class="n">{escape(h)}</th>' for h in shown)
    out = [
        "<h2>Projects</h2>",
        f"<table><thead><tr><th>project</th><th>region</th><th>status</th>{heads}"
        '<th class="n">median TTR</th></tr></thead><tbody>',
    ]
    for target in report.targets:
        ttrs = sorted(j.time_to_recover_s for j in target.jobs if j.time_to_recover_s is not None)
        median = secs(nearest_rank(ttrs, 50)) if ttrs else ""
        # the status in words over its jobs: never a green "ok" over jobs that need a human
        status, good = target_status(target, mutating=report.mutating)
        out.append(
            f"<tr><td>{escape(target.label)}<br><code>{escape(target.project_id)}</code></td>"
            f"<td>{escape(target.region)}</td>"
            f'<td class="status-{"ok" if good else "failed"}">{escape(status)}</td>'
            f"{_count_cells(target.totals, shown)}"
            f'<td class="n">{median}</td></tr>'
        )
    rto = report.time_to_recover_s
    out += [
        f'<tr class="total"><td>total</td><td></td><td></td>{_count_cells(report.totals, shown)}'
        f'<td class="n">{secs(rto.p50) if rto.count else ""}</td></tr>',
        "</tbody></table>",
    ]
    return out


def _count_cells(totals: Totals, shown: tuple[Column, ...]) -> str:
    cells = []
    for value in row(totals, shown):
        cells.append(f'<td class="n{" zero" if value == 0 else ""}">{value}</td>')
    return "".join(cells)


def _api(report: Report) -> list[str]:
    calls = report.api_calls
    resilience = report.api_resilience
    out = ["<h2>API traffic</h2>"]
    if resilience:
        figures = [
            f"waited {secs(value)} backing off"
            if key == "waited_s"
            else f"{key.replace('_', ' ')} {value}"
            for key, value in resilience.items()
        ]
        out.append(f'<p class="note">{escape(", ".join(figures))}</p>')
    if not calls:
        return [*out, '<p class="note">no API call</p>']
    out += [
        '<table class="narrow"><thead><tr><th>request</th><th class="n">calls</th></tr></thead>'
        "<tbody>",
        *(
            f'<tr><td><code>{escape(k)}</code></td><td class="n">{v}</td></tr>'
            for k, v in calls.items()
        ),
        "</tbody></table>",
    ]
    return out


def _jobs(report: Report) -> list[str]:
    out = ["<h2>Every job</h2>"]
    with_delays = has_delays(report)
    total = report.totals.jobs
    for target in report.targets:
        jobs = target.jobs
        opened = " open" if total <= OPEN_JOB_LISTS else ""
        out.append(
            f"<details{opened}><summary>{escape(target.label)} "
            f'<span class="meta">({escape(target.project_id)}, {escape(target.where)}): '
            f"{len(jobs)} job(s)</span></summary>"
        )
        if not jobs:
            out += ['<p class="note">no job matched the selection</p>', "</details>"]
            continue
        delay_head = '<th class="n">delay (last / max)</th>' if with_delays else ""
        out.append(
            '<div class="scroll"><table><thead><tr><th>job id</th><th>name</th>'
            "<th>at selection</th><th>last status</th><th>disposition</th>"
            f'<th class="n">TTR</th>{delay_head}<th>detail</th></tr></thead><tbody>'
        )
        for job in jobs:
            delay = f'<td class="n">{escape(delay_text(job))}</td>' if with_delays else ""
            ttr = job.time_to_recover_s
            kind = " · ".join(v for v in (job.engine_type, job.db_use_type) if v)
            detail = " ".join(v for v in (job.error_code, job.reason) if v)
            out.append(
                f'<tr><td><code>{escape(job.id)}</code></td><td class="nw">{escape(job.name)}'
                f'<br><span class="meta">{escape(kind)}</span></td>'
                f"<td><code>{escape(job.status_at_selection)}</code></td>"
                f"<td><code>{escape(job.last_status)}</code></td>"
                f"<td>{pill(job.disposition)}</td>"
                f'<td class="n">{secs(ttr) if ttr is not None else ""}</td>{delay}'
                f'<td class="detail">{escape(detail)}</td></tr>'
            )
        out += ["</tbody></table></div>", "</details>"]
    return out
