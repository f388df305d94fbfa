"""What the terminal shows: the run's summary, a plan, and what is about to be changed."""

from __future__ import annotations

from collections.abc import Sequence

from engine.ledger import WOULD_KINDS, Disposition
from engine.report.document import Report
from engine.report.summary import columns, delay_summary, headline, row
from engine.run.approval import ApprovalRequest
from engine.runbook import Target


def _table(
    headers: Sequence[str] | int,
    rows: Sequence[Sequence[str]],
    *,
    numbers_from: int | None = None,
) -> list[str]:
    """A plain-text table: columns aligned however wide a cell is (in terminal cells: a CJK
    character takes two), numbers (the columns from ``numbers_from`` on) right-aligned, a rule
    of dashes under the header and nothing else, so it reads the same in a terminal, a CI log
    and a ticket; ``headers`` a number: that many columns and no header. Never wrapped: a
    reason is read whole (and grepped).

    Drawn here rather than by rich's Table, which took 25 s of a profiled 5,000-target run
    (rich.cells only measures the cells, the same way rich did)."""
    from rich.cells import cell_len

    shown = not isinstance(headers, int)
    head: Sequence[str] = [""] * headers if isinstance(headers, int) else headers
    every = [head, *rows] if shown else list(rows)
    widths = [max((cell_len(r[i]) for r in every), default=0) for i in range(len(head))]
    right = [numbers_from is not None and i >= numbers_from for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            " " * (w - cell_len(c)) + c if r else c + " " * (w - cell_len(c))
            for c, w, r in zip(cells, widths, right, strict=True)
        )
        return "  ".join(padded).rstrip()

    # the rule under the header: a cell's dashes run on over its right padding, but the last
    # column has none
    last = len(widths) - 1
    rule = " ".join("-" * (w + (i < last)) for i, w in enumerate(widths))
    lines = [line(head), rule] if shown else []
    lines += (line(cells) for cells in rows)
    return lines


def terminal_summary(report: Report, *, max_listed: int = 20) -> str:
    """A short plain-text summary: one row per project, then the jobs that need a human."""
    shown = columns(report)
    headers = ["project", *shown]
    rows = [[t.label, *map(str, row(t.totals, shown))] for t in report.targets]
    rows.append(["total", *map(str, row(report.totals, shown))])
    lines = [
        f"run {report.run_id}: {headline(report)}",
        "",
        *_table(headers, rows, numbers_from=1),
    ]
    for target in report.targets:
        for step in target.steps:
            if step.status == "failed":
                lines.append(f"{target.label}: step '{step.id}' failed: {step.message}")
    for target, step, text in report.notices():
        lines.append(f"{target.label}: step '{step.id}': notice: {text}")
    needs = report.needing_a_human()
    if needs:
        lines += ["", "needs a human:"]
        listed = [
            [target.label, job.id, job.name, f"{job.disposition}: {job.reason}"]
            for target, job in needs[:max_listed]
        ]
        # aligned like the table above, without its header (the columns say what they are)
        lines += ["  " + line for line in _table(4, listed)]
        if len(needs) > max_listed:
            lines.append(f"  ... and {len(needs) - max_listed} more (see the report)")
    rto = report.time_to_recover_s
    if rto.count:
        lines += [
            "",
            f"time to recover: median {rto.p50}s, p95 {rto.p95}s, "
            f"max {rto.max}s over {rto.count} job(s)",
        ]
    if delays := delay_summary(report):
        lines.append(f"replication delay: {delays}")
    return "\n".join(lines) + "\n"


def plan_summary(report: Report) -> str:
    """What a run would do, per project: the jobs each mutating step would send, and the skips."""
    calls = sum(report.api_calls.values())
    lines = [
        f"plan for runbook '{report.runbook.name}': no changes made ({calls} read-only API call(s))"
    ]
    for target in report.targets:
        lines += ["", f"{target.label} ({target.project_id}, {target.where})"]
        for step in target.steps:
            would = [
                (job, event)
                for job in target.jobs
                for event in job.events
                if event["kind"] in WOULD_KINDS and event["step"] == step.id
            ]
            if step.status == "failed":
                lines.append(f"  {step.id} ({step.action}): FAILED: {step.message}")
            elif would:
                batches = len({event.get("detail") for _, event in would})
                lines += _would_send(
                    f"{step.id} ({step.action})",
                    [(job.id, job.name, job.last_status) for job, _ in would],
                    batches,
                    indent="  ",
                )
            elif step.status == "skipped":
                lines.append(f"  {step.id} ({step.action}): {step.message}")
            else:
                outputs = ", ".join(f"{k}: {v}" for k, v in step.outputs.items())
                lines.append(f"  {step.id} ({step.action}): {outputs}")
            lines += (f"    notice: {text}" for text in step.notices)
        skipped = [j for j in target.jobs if j.disposition is Disposition.SKIPPED]
        lines += _left_alone([(j.id, j.name, j.reason) for j in skipped], indent="  ")
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


def _to_act_on(request: ApprovalRequest, target: Target) -> int:
    """The jobs a gate is about: those selected and not yet acted on, and those the next change
    would send (a drill's paused jobs are no longer "selected", and are sent): the count and
    the list under it agree."""
    ids = {job.job_id for job in request.selected.get(target, [])}
    preview = request.previews.get(target)
    if preview is not None:
        ids.update(job.job_id for job in preview.would_send)
    return len(ids)


def approval_summary(
    request: ApprovalRequest, *, max_listed: int = 10, heading: str | None = None
) -> str:
    """What is about to be changed (or approved), per project as ``runbook plan`` shows it: the
    jobs the next change would send, in how many batches, and the jobs left alone."""
    message = request.step.with_.get("message")
    lines = [f"{message}"] if isinstance(message, str) and heading is None else []
    to_act_on = {target: _to_act_on(request, target) for target in request.selected}
    lines += [
        f"{heading or 'approval'} '{request.step.id}': {sum(to_act_on.values())} job(s) to act "
        f"on in {len(request.selected)} project(s); next: "
        + ", ".join(f"{s.id} ({s.action})" for s in request.next_steps)
    ]
    for target, jobs in request.selected.items():
        where = target.region or target.endpoint
        lines.append(
            f"  {target.label} ({target.project_id}, {where}): {to_act_on[target]} job(s) to act on"
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
