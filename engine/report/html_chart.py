"""The HTML report's timeline: one bar per job from the request sent to the last thing seen,
capped for large runs (every job that needs a human first, then an even sample of the rest)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.ledger import SENT_KINDS, WOULD_KINDS, Disposition, EventKind
from engine.report.document import JobReport, Report, TargetReport
from engine.report.html_style import COLOURS, clip, escape, rank, secs

# The chart draws at most this many jobs needing a human, plus a sample of the others.
CHART_NEEDS_A_HUMAN = 400
CHART_SAMPLE = 100
_SENT = SENT_KINDS | WOULD_KINDS


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
    # A drill's pause of this job: from taking effect to the resume acknowledged (or the end).
    paused: tuple[float, float] | None = None


def _bar(job: JobReport) -> _Bar | None:
    events = job.events
    if not events or job.disposition is Disposition.SKIPPED:
        return None
    times = [e["t"] for e in events]
    sent = next((e["t"] for e in events if e["kind"] in _SENT), None)
    selected = next((e["t"] for e in events if e["kind"] == EventKind.SELECTED), times[0])
    ttr = job.time_to_recover_s
    title = f"{job.name} ({job.id}): {job.disposition}" + (
        f", recovered in {ttr:.1f}s" if ttr is not None else ""
    )
    if job.reason:
        title += f" — {job.reason}"
    paused = None
    if job.paused_at_t is not None:
        resumed = next(
            (
                e["t"]
                for e in events
                if e["kind"] == EventKind.RETRY_ACKNOWLEDGED and e["t"] >= job.paused_at_t
            ),
            max(times),
        )
        paused = (job.paused_at_t, resumed)
    return _Bar(
        paused=paused,
        label=job.name or job.id,
        title=title,
        disposition=job.disposition,
        selected_t=selected,
        start_t=sent if sent is not None else selected,
        end_t=max(times),
        marks=tuple(e["t"] for e in events if e["kind"] == EventKind.STATUS_OBSERVED),
        outcome=(
            f"recovered in {secs(ttr)}" if ttr is not None else job.disposition.replace("_", " ")
        ),
    )


def _chart_jobs(report: Report) -> tuple[list[tuple[TargetReport, list[_Bar]]], str]:
    """The jobs to draw, per project, and a note saying what was left out.

    Every job that needs a human is drawn, up to CHART_NEEDS_A_HUMAN; past that, and for the
    others (up to CHART_SAMPLE), an even sample in run order, so each project and each way of
    failing keeps its share of the rows.
    """
    acted_on = [
        job for _, job in report.jobs() if job.disposition is not Disposition.SKIPPED and job.events
    ]
    needs = [job for job in acted_on if job.disposition.needs_a_human]
    others = [job for job in acted_on if not job.disposition.needs_a_human]
    drawn_needs, drawn_others = _sample(needs, CHART_NEEDS_A_HUMAN), _sample(others, CHART_SAMPLE)
    keep = {id(job) for job in (*drawn_needs, *drawn_others)}
    groups = []
    for target in report.targets:
        bars = [bar for job in target.jobs if id(job) in keep and (bar := _bar(job)) is not None]
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


def _sample(jobs: Sequence[JobReport], size: int) -> list[JobReport]:
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


# A drill's phases on the timeline: (name, fill), drawn behind the bars.
_PHASES = (("pause", "#ddf4ff"), ("outage", "#fff1e5"), ("resume → recovered", "#dafbe1"))


def drill_phases(report: Report) -> list[tuple[str, str, float, float]]:
    """A drill's pause (the first pause sent to the last pause seen taking effect), outage
    (to the first resume acknowledged) and resume (to the last recovery), as (name, fill,
    start, end) in run-relative seconds; none for a run that is no drill or paused nothing."""
    drill = report.drill
    if drill is None:
        return []
    paused = [j.paused_t for j in drill.paused if j.paused_t is not None]
    resumed = [j.resumed_t for j in drill.paused if j.resumed_t is not None]
    recovered = [j.recovered_t for j in drill.paused if j.recovered_t is not None]
    ids = {(j.project, j.id) for j in drill.paused}
    sent = [
        e["t"]
        for target, job in report.jobs()
        if (target.label, job.id) in ids
        for e in job.events
        if e["kind"] == EventKind.PAUSE_SENT
    ]
    if not paused:
        return []
    edges = [min(sent, default=min(paused)), max(paused)]
    if resumed:
        edges.append(min(resumed))
        if recovered:
            edges.append(max(recovered))
    return [
        (name, fill, start, end)
        for (name, fill), start, end in zip(_PHASES, edges, edges[1:], strict=False)
        if end >= start
    ]


def timeline(report: Report) -> list[str]:
    groups, note = _chart_jobs(report)
    out = ["<h2>Timeline</h2>"]
    if not groups:
        return [*out, '<p class="note">no job was acted on</p>']
    rows = sum(len(bars) for _, bars in groups)
    row_h = 18 if rows <= 80 else 10 if rows <= 200 else 5
    labelled = row_h >= 10
    label_w, plot_w, group_h, axis_h = (250 if labelled else 110), 880, 28, 30
    phases = drill_phases(report)
    axis_h += 20 if phases else 0  # a band above the ticks names the drill's phases
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
    for index, (name, fill, start, stop) in enumerate(phases):
        left, right = x(start), max(x(stop), x(start) + 2)
        svg.append(
            f'<rect x="{left}" y="4" width="{round(right - left, 1)}" height="{bottom - 4}" '
            f'fill="{fill}"/>'
        )
        if right - left >= 7 * len(name) or index:
            where = f'x="{round((left + right) / 2, 1)}" text-anchor="middle"'
        else:  # too narrow for its name (a pause takes effect at once): said before it
            where = f'x="{round(left - 4, 1)}" text-anchor="end"'
        svg.append(
            f'<text {where} y="16" font-size="11" font-weight="600" fill="#1f2328">'
            f"{escape(name)}</text>"
        )
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
            f"{escape(target.label)}</text>"
        )
        y += group_h
        for bar in bars:
            svg.append(_bar_svg(bar, y, row_h, x, labelled=labelled, edge=width))
            y += row_h
    svg.append("</svg>")
    shown = sorted({bar.disposition for _, bars in groups for bar in bars}, key=rank)
    legend = "".join(
        f'<span><i style="background:{COLOURS.get(d, "#8c959f")}"></i>{escape(d)}</span>'
        for d in shown
    ) + "".join(
        f'<span><i style="background:{fill};outline:1px solid #d1d9e0"></i>drill: {escape(name)}'
        "</span>"
        for name, fill, _, _ in phases
    )
    return [
        *out,
        '<p class="note">one bar per job, from the retry (or pause) being sent to the last thing '
        "the run saw of it; the thin line before a bar is the wait since selection, the white "
        f"ticks are status changes. {escape(note)}</p>",
        f'<div class="legend"><span><i class="wait"></i>waiting to be sent</span>{legend}'
        + (
            f'<span><i style="background:{COLOURS["paused"]}"></i>paused by the drill</span>'
            if phases
            else ""
        )
        + "</div>",
        f'<div class="chart">{"".join(svg)}</div>',
    ]


def _bar_svg(
    bar: _Bar, y: int, row_h: int, x: Callable[[float], float], *, labelled: bool, edge: float
) -> str:
    colour = COLOURS.get(bar.disposition, "#8c959f")
    mid = y + row_h / 2
    bar_h = row_h - 6 if labelled else row_h - 1
    parts = [f"<g><title>{escape(bar.title)}</title>"]
    if labelled:
        parts.append(
            f'<text x="12" y="{mid + 4}" font-size="11.5" fill="#1f2328">'
            f"{escape(clip(bar.label, 36))}</text>"
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
    if bar.paused is not None:  # the job's own outage, in the paused colour
        start, stop = bar.paused
        parts.append(
            f'<rect x="{x(start)}" y="{mid - bar_h / 2}" '
            f'width="{round(max(x(stop) - x(start), 2), 1)}" height="{bar_h}" '
            f'fill="{COLOURS["paused"]}"><title>paused {secs(stop - start)}</title></rect>'
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
                f"{escape(bar.outcome)}</text>"
            )
        elif right - left > 6 * len(bar.outcome) + 12:
            parts.append(
                f'<text x="{right - 6}" y="{mid + 4}" font-size="11" fill="#fff" '
                f'text-anchor="end">{escape(bar.outcome)}</text>'
            )
    parts.append("</g>")
    return "".join(parts)
