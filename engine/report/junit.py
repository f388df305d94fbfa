"""Render a report document as JUnit XML, so CI shows each job's verification and each assert as
a test case.

The XML is valid against the strict schema of the Jenkins xUnit plugin (``junit-10.xsd``, vendored
in tests/vendor/): ``<testsuites>`` carries only name, tests, failures, errors and time; the skipped
count, the timestamp and the runbook's ``file`` are on each ``<testsuite>``. That schema allows no
``file`` on a ``<testcase>``, and the strict schema wins: the runbook is each suite's ``file``
(and its ``runbook`` property), not each case's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from engine.ledger import Disposition, EventJson, EventKind
from engine.report.document import JobReport, Report, StepReport, TargetReport
from engine.report.drill import ASSERT_ACTION
from engine.report.summary import delay_text
from engine.run.result import StepStatus
from engine.runbook.evaluation import show_value

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
# XML 1.0 cannot carry these characters at all, escaped or not; nor can UTF-8 carry a lone
# surrogate (U+D800-U+DFFF: a name decoded with surrogateescape, a server's "\ud800" escape),
# so the file could not even be written.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What escaping changes in an attribute value; most ids, names and statuses have none of it.
_NOT_PLAIN = re.compile('[&<>"\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


@dataclass(frozen=True, slots=True, kw_only=True)
class _Verdict:
    """How one job or assert fared in one test case: passed, skipped, or a failure (it did not
    hold) or an error (it could not be judged) with a type, a message and a text."""

    kind: Literal["passed", "skipped", "failure", "error"]
    message: str = ""
    type: str = ""
    time_s: float = 0.0
    timeline: str = ""  # the failure's text: the job's timeline, or what an assert compared
    output: str = ""  # the case's system-out: the job's replication delay, when one was read


def to_junit(report: Report) -> str:
    return "\n".join(junit_lines(report)) + "\n"


def junit_lines(report: Report) -> list[str]:
    """JUnit XML, line by line: one suite per target; one case per job per verify step, one per
    ``assert`` step, and one per other failed step.

    A runbook without a ``drs.verify_status`` step gets one case per job for the run as a whole.
    A job passes when it ends recovered or healthy (or selected, in a read-only run); a skipped
    job is a skipped case; anything else is a failure typed with its DRS error code, or else its
    disposition. An assert that held passes, one that did not is a failure (its message has the
    measured values), one not run is skipped, and one that could not be evaluated is an error.
    Any other failed step is an error case, so a project whose selection failed is not green.

    Written as text with the standard library's XML escaping rather than built as an element
    tree: a large run has a case per job, and the tree costs 3x the time (bench/).
    """
    file = runbook_file(report.runbook.path)
    suites = [_suite(report, t, index, file) for index, t in enumerate(report.targets)]
    # junit-10.xsd allows no skipped count (nor a timestamp) on <testsuites>: each suite has its.
    totals = {key: sum(suite.counts[key] for suite in suites) for key in _TOTALS}
    head = _tag(
        "testsuites",
        name=f"runbook {report.runbook.name}",
        **totals,
        time=_seconds(report.wall_s),
    )
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', head + ">"]
    for suite in suites:
        lines.extend(suite.lines)
    lines.append("</testsuites>")
    return lines


_TOTALS = ("tests", "failures", "errors")


def runbook_file(path: str) -> str:
    """The runbook's path as a suite's ``file``: the path the report records, made relative to the
    working directory when it is an absolute path under it (CI tools match files by their path in
    the checkout)."""
    recorded = Path(path)
    if not recorded.is_absolute():
        return path
    try:
        return recorded.relative_to(Path.cwd()).as_posix()
    except (ValueError, OSError):  # elsewhere, or the working directory is gone
        return path


@dataclass(frozen=True, slots=True, kw_only=True)
class _Suite:
    counts: dict[str, int]
    lines: list[str]


def _suite(report: Report, target: TargetReport, index: int, file: str) -> _Suite:
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
    # Each assert, then each other failed step, in step order: a case each.
    for step in target.steps:
        if step.action == ASSERT_ACTION:
            verdicts.append((_step_name(step), _assert_verdict(report, target, step)))
        elif step.status is StepStatus.FAILED:
            failed = _Verdict(
                kind="error",
                message=step.message or "step failed",
                type="step_failed",
                time_s=step.duration_s,
            )
            verdicts.append((f"step {step.id} ({step.action})", failed))
    if report.stopped_by is not None:  # the stop: an error case of its own
        stopped = _Verdict(kind="error", message=report.stopped_by.describe(), type="stopped")
        verdicts.append(("run stopped", stopped))
    counts = {
        "tests": len(verdicts),
        "failures": sum(1 for _, v in verdicts if v.kind == "failure"),
        "errors": sum(1 for _, v in verdicts if v.kind == "error"),
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
            file=file,
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
        ("stopped_by", None if report.stopped_by is None else report.stopped_by.describe()),
    ):
        if value is not None:
            lines.append("      " + _tag("property", name=name, value=value) + " />")
    lines.append("    </properties>")
    classname = _quoted(label)
    lines.extend(_case(classname, name, verdict) for name, verdict in verdicts)
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


def _step_name(step: StepReport) -> str:
    """An assert's case: its id and, when it has one, its name (the pass criterion in words)."""
    return f"assert {step.id}" + (f": {step.name}" if step.name else "")


def _assert_verdict(report: Report, target: TargetReport, step: StepReport) -> _Verdict:
    """An ``assert`` step's case: it held, it did not (a failure: its outputs say ``passed:
    false``, its message what it compared), it was not run (a plan, ``when``, an interrupt), or
    it could not be evaluated (an error, as any failed step)."""
    if step.status is StepStatus.SUCCEEDED:
        return _Verdict(kind="passed", time_s=step.duration_s)
    if step.status is not StepStatus.FAILED:
        return _Verdict(kind="skipped", message=step.message or f"not run ({step.status})")
    message = step.message or "assertion failed"
    if step.outputs.get("passed") is not False:
        return _Verdict(kind="error", message=message, type="step_failed", time_s=step.duration_s)
    return _Verdict(
        kind="failure",
        message=message,
        type="assertion_failed",
        time_s=step.duration_s,
        timeline="\n".join([message, *_budget_lines(report, target, step)]),
    )


def _budget_lines(report: Report, target: TargetReport, step: StepReport) -> list[str]:
    """What a drill's RTO assert compared: its expression, the measured output with the value it
    had in this target, and the budget."""
    budget = report.drill.budget if report.drill is not None else None
    if budget is None or budget.step != step.id:
        return []
    measured = budget.measured
    parts = measured.split(".")
    if len(parts) == 3 and parts[0] == "steps":  # steps.<id>.<output>, as ``DrillBudget`` says
        value = next((s.outputs.get(parts[2]) for s in target.steps if s.id == parts[1]), None)
        if value is not None:
            measured = f"{measured} = {show_value(value)}"
    return [
        f"that: {budget.that}",
        f"measured: {measured}",
        f"budget: {show_value(budget.budget_s)} s",
    ]


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
    """One test case; ``classname`` comes quoted (the suite's, quoted once per suite).
    Spelt out rather than built with ``_tag``: a large run has a case per job."""
    time = _seconds(verdict.time_s)
    case = f'    <testcase classname={classname} name={_quoted(name)} time="{time}"'
    if verdict.kind == "skipped":
        return _holding(case, _tag("skipped", message=verdict.message))
    if verdict.kind == "error":  # a step that failed: its message says it all
        return _holding(case, _tag("error", message=verdict.message, type=verdict.type))
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
    """Seconds as junit-10.xsd's time pattern takes them: never negative (``-0.000``, float noise
    of a span that is zero, is not a time to it)."""
    return f"{max(value, 0.0):.3f}"


def _text(value: object) -> str:
    """The value as text XML can carry: characters XML 1.0 forbids become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(value))
