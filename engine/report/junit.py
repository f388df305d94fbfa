"""Render a report document as JUnit XML, so CI shows each job's verification as a test case."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from engine.ledger import Disposition, EventJson, EventKind
from engine.report.document import JobReport, Report, TargetReport
from engine.report.summary import delay_text

VERIFY_ACTION = "drs.verify_status"
# The event kinds a verify step settles a job with.
_VERDICTS = frozenset(
    k.value
    for k in (
        EventKind.RECOVERED,
        EventKind.FAILED_AGAIN,
        EventKind.FAILED,
        EventKind.TIMED_OUT,
        EventKind.LAGGING,
        EventKind.FLAPPING,
        EventKind.NOT_FOUND,
    )
)
# XML 1.0 cannot carry these characters at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# What escaping changes in an attribute value; most ids, names and statuses have none of it.
_NOT_PLAIN = re.compile('[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')


@dataclass(frozen=True, slots=True, kw_only=True)
class _Verdict:
    """How one job fared in one test case: passed, skipped, or failed with a type and message."""

    kind: Literal["passed", "skipped", "failure"]
    message: str = ""
    type: str = ""
    time_s: float = 0.0
    timeline: str = ""
    output: str = ""  # the case's system-out: the job's replication delay, when one was read


def to_junit(report: Report) -> str:
    return "\n".join(junit_lines(report)) + "\n"


def junit_lines(report: Report) -> list[str]:
    """JUnit XML, line by line: one suite per target; one case per job per verify step, and
    one per failed step.

    A runbook without a ``drs.verify_status`` step gets one case per job for the run as a whole.
    A job passes when it ends recovered or healthy (or selected, in a read-only run); a skipped
    job is a skipped case; anything else is a failure typed with its DRS error code, or else its
    disposition. A failed step is an error case, so a project whose selection failed is not green.

    Written as text with the standard library's XML escaping rather than built as an element
    tree: a large run has a case per job, and the tree costs 3x the time (bench/).
    """
    suites = [_suite(report, t, index) for index, t in enumerate(report.targets)]
    totals = {key: sum(suite.counts[key] for suite in suites) for key in _COUNTS}
    head = _tag(
        "testsuites",
        name=f"runbook {report.runbook.name}",
        **totals,
        time=_seconds(report.wall_s),
        timestamp=report.started_at,
    )
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', head + ">"]
    for suite in suites:
        lines.extend(suite.lines)
    lines.append("</testsuites>")
    return lines


_COUNTS = ("tests", "failures", "errors", "skipped")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Suite:
    counts: dict[str, int]
    lines: list[str]


def _suite(report: Report, target: TargetReport, index: int) -> _Suite:
    label = target.label
    mutating = report.mutating
    verify_steps = [s.id for s in target.steps if s.action == VERIFY_ACTION]
    verdicts: list[tuple[str, _Verdict]] = []
    for job in target.jobs:
        job_name = f"{job.name or '(unnamed)'} [{job.id}]"
        if not verify_steps:
            verdicts.append((f"{job_name} run", _run_verdict(job, mutating)))
            continue
        delay = delay_text(job)
        for step_id in verify_steps:
            last = step_id == verify_steps[-1]
            verdict = _step_verdict(job, step_id, last, mutating)
            if delay and last:
                verdict = dataclasses.replace(
                    verdict, output=f"replication delay (last / max): {delay}"
                )
            verdicts.append((f"{job_name} {step_id}", verdict))
    failed_steps = [s for s in target.steps if s.status == "failed"]
    counts = {
        "tests": len(verdicts) + len(failed_steps),
        "failures": sum(1 for _, v in verdicts if v.kind == "failure"),
        "errors": len(failed_steps),
        "skipped": sum(1 for _, v in verdicts if v.kind == "skipped"),
    }
    lines = [
        "  "
        + _tag(
            "testsuite",
            name=label,
            id=index,
            timestamp=report.started_at,
            **counts,
            time=_seconds(_span_s(target)),
        )
        + ">",
        "    <properties>",
    ]
    for name, value in (
        ("run_id", report.run_id),
        ("runbook", report.runbook.path),
        ("project_id", target.project_id),
        ("region", target.region),
        ("endpoint", target.endpoint),
        ("resumed_at", ", ".join(report.resumed_at) or None),
        ("plan_hash", report.plan_hash),
    ):
        if value is not None:
            lines.append("      " + _tag("property", name=name, value=value) + " />")
    lines.append("    </properties>")
    classname = _quoted(label)
    lines.extend(_case(classname, name, verdict) for name, verdict in verdicts)
    for step in failed_steps:
        case = _tag(
            "testcase",
            classname=label,
            name=f"step {step.id} ({step.action})",
            time=_seconds(step.duration_s),
        )
        error = _tag("error", message=step.message or "step failed", type="step_failed")
        lines.append(_holding("    " + case, error))
    notices = [f"step {s.id}: notice: {text}" for s in target.steps for text in s.notices]
    if notices:  # the service's odd answers: CI shows a suite's system-err beside its cases
        lines.append(f"    <system-err>{escape(_text(chr(10).join(notices)))}</system-err>")
    lines.append("  </testsuite>")
    return _Suite(counts=counts, lines=lines)


def _span_s(target: TargetReport) -> float:
    """How long the target's steps took, first start to last end, on the run's clock: waits
    between steps (a gate, an approval) and the downtime before a resume count; steps the run
    never got to do not."""
    ran = [s for s in target.steps if not (s.message or "").startswith("not run")]
    if not ran:
        return 0.0
    return max(s.started_t + s.duration_s for s in ran) - min(s.started_t for s in ran)


def _run_verdict(job: JobReport, mutating: bool) -> _Verdict:
    """A job's case for a runbook without a verify step: its final disposition decides."""
    return _from_disposition(job, mutating, time_s=job.time_to_recover_s or 0.0)


def _step_verdict(job: JobReport, step_id: str, last: bool, mutating: bool) -> _Verdict:
    """A job's case for one verify step.

    The step's own verdict event decides when there is one; the last verify step also answers for
    where the job ended (a job paused after it is not healthy). A job the step never looked at
    (rejected, withheld, interrupted) is judged by its final disposition.
    """
    in_step = [e for e in job.events if e["step"] == step_id]
    span = in_step[-1]["t"] - in_step[0]["t"] if in_step else 0.0
    verdicts = [e for e in in_step if e["kind"] in _VERDICTS]
    if job.disposition is Disposition.SKIPPED or not verdicts:
        return _from_disposition(job, mutating, time_s=span)
    verdict = verdicts[-1]
    if verdict["kind"] != EventKind.RECOVERED:
        return _failure(job, verdict.get("error_code"), verdict["kind"], span)
    if last and not job.disposition.is_good(mutating=mutating):
        return _from_disposition(job, mutating, time_s=span)
    ttr = job.time_to_recover_s
    return _Verdict(kind="passed", time_s=ttr if ttr is not None and last else span)


def _from_disposition(job: JobReport, mutating: bool, *, time_s: float) -> _Verdict:
    """A job passes when it ends recovered or healthy (or selected, in a read-only run)."""
    disposition = job.disposition
    if disposition is Disposition.SKIPPED:
        return _Verdict(kind="skipped", message=job.reason or "skipped by the selection")
    if disposition.is_good(mutating=mutating):
        return _Verdict(kind="passed", time_s=time_s)
    return _failure(job, job.error_code, disposition, time_s)


def _failure(job: JobReport, error_code: str | None, what: str, time_s: float) -> _Verdict:
    code = error_code or job.error_code
    reason = job.reason or f"last status {job.last_status}"
    message = f"{what}: {reason}" + (f" ({code})" if code and code not in reason else "")
    return _Verdict(
        kind="failure",
        message=message,
        type=code or what,
        time_s=time_s,
        timeline=timeline_text(job.events),
    )


def _case(classname: str, name: str, verdict: _Verdict) -> str:
    """One job's test case; ``classname`` comes quoted (the suite's, quoted once per suite).
    Spelt out rather than built with ``_tag``: a large run has a case per job."""
    time = _seconds(verdict.time_s)
    case = f'    <testcase classname={classname} name={_quoted(name)} time="{time}"'
    if verdict.kind == "skipped":
        return _holding(case, _tag("skipped", message=verdict.message))
    out = f"\n      <system-out>{escape(verdict.output)}</system-out>" if verdict.output else ""
    if verdict.kind == "failure":
        failure = _tag("failure", message=verdict.message, type=verdict.type)
        timeline = escape(_text(verdict.timeline))
        return f"{case}>\n      {failure}>{timeline}</failure>{out}\n    </testcase>"
    return f"{case}>{out}\n    </testcase>" if out else case + " />"


def _holding(case: str, child: str) -> str:
    """A testcase whose one child (skipped, error) is an empty element."""
    return f"{case}>\n      {child} />\n    </testcase>"


def _tag(element: str, /, **attributes: object) -> str:
    """``<element a="v" ...`` with each value escaped for an attribute (the caller closes it)."""
    escaped = (f"{key}={_quoted(str(value))}" for key, value in attributes.items())
    return "<" + " ".join([element, *escaped])


def _quoted(text: str) -> str:
    """An attribute value in quotes, escaped only when it needs to be (the common case is not)."""
    return f'"{text}"' if _NOT_PLAIN.search(text) is None else quoteattr(_text(text))


def timeline_text(events: Iterable[EventJson]) -> str:
    """A job's events, one a line: ``12.345s  retry_rejected  (retry)  DRS.M05004  detail``."""
    return "\n".join(_event_line(e) for e in events)


def _event_line(event: EventJson) -> str:
    fields: Sequence[object] = (
        f"{event['t']:.3f}s",
        event["kind"],
        f"({event['step']})",
        event.get("status"),
        event.get("error_code"),
        event.get("detail"),
    )
    return "  ".join(str(f) for f in fields if f)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _text(value: object) -> str:
    """The value as text XML can carry: characters XML 1.0 forbids become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(value))
