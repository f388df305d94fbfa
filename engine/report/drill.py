"""A drill's verdict: the one place that decides whether a disaster-recovery drill passed.

A run is a drill when its runbook says so (``drill: true``) or pauses jobs (``Runbook.drill``);
a plan is not (nothing was paused). The verdict is **failed** when, in this order (``why``
says the first that applies):

1. the run was interrupted before the drill finished;
2. a step failed in a project: an ``assert`` (the steady state before the fault, the RTO
   budget, the steady state after recovery) or any other step, in the step's own words, which
   for an assert include the measured and the expected values;
3. a job the drill paused did not recover (it is still paused, failed again, timed out...);
4. the runbook pauses jobs but paused none: a drill that injected no fault proved nothing.

Otherwise it **passed**. It is not the exit code: a drill whose RTO assert says
``on_failure: continue`` still fails, and the exit code still counts jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.ledger import RECOVERED, EventKind, JobRecord
from engine.percentiles import pause_outages
from engine.report.document import (
    DrillBudget,
    DrillCheck,
    DrillReport,
    DrillVerdict,
    PausedJob,
)
from engine.run.result import RunResult, StepStatus
from engine.runbook import Runbook
from engine.runbook.evaluation import evaluate
from engine.runbook.expressions import (
    Binary,
    Expression,
    ExpressionError,
    Literal,
    Name,
    Node,
    Scope,
    is_number,
    unparse,
)
from engine.runbook.model import PAUSE_ACTION

ASSERT_ACTION = "assert"
_PAUSED_KINDS = frozenset({EventKind.PAUSE_ACKNOWLEDGED, EventKind.PAUSE_RECONCILED})


def build_drill(result: RunResult) -> DrillReport | None:
    """The drill section of a run's report, or None for a run that is no drill (or a plan)."""
    runbook = result.runbook
    if result.plan or not runbook.drill:
        return None
    paused = [
        _paused(target.target.label, record)
        for target in result.targets
        for record in target.jobs
        if record.paused_at is not None or any(e.kind in _PAUSED_KINDS for e in record.events)
    ]
    checks = [
        DrillCheck(
            project=target.target.label, step=step.step_id, status=step.status, message=step.message
        )
        for target in result.targets
        for step in target.steps
        if step.action == ASSERT_ACTION
    ]
    failures = [
        (target.target.label, step.step_id, step.message)
        for target in result.targets
        for step in target.steps
        if step.status is StepStatus.FAILED
    ]
    budget = _budget(runbook, result, checks)
    pauses = any(step.action == PAUSE_ACTION for step in runbook.steps)
    return judge(
        paused=paused,
        checks=checks,
        failures=failures,
        budget=budget,
        interrupted=result.interrupted,
        pauses=pauses,
    )


def judge(
    *,
    paused: Sequence[PausedJob],
    checks: Sequence[DrillCheck],
    failures: Sequence[tuple[str, str, str | None]],
    budget: DrillBudget | None,
    interrupted: bool,
    pauses: bool,
) -> DrillReport:
    """The verdict (the module's rule) over what the drill did; ``failures`` are the failed
    steps as (project, step id, message), in run order."""
    p50, p95, worst = pause_outages(
        ((j.disposition, j.pause_to_recovery_s) for j in paused), (50, 95, 100)
    )
    unrecovered = [j for j in paused if j.disposition not in RECOVERED]
    why = _failed_why(interrupted, failures, unrecovered, len(paused), pauses)
    if failures and budget is not None and failures[0][1] == budget.step:
        # The RTO budget broke first: measured against expected, in the drill's own figures.
        where = _where(failures, budget.step)
        if p95 is None and paused:
            why = (
                f"pause-to-recovery p95 not reached: {len(unrecovered)} of {len(paused)} paused "
                f"job(s) did not recover, budget {_s(budget.budget_s)} (step '{budget.step}' "
                f"failed in {where})"
            )
        elif p95 is not None and p95 > budget.budget_s:
            why = (
                f"pause-to-recovery p95 {_s(p95)} > budget {_s(budget.budget_s)} "
                f"(step '{budget.step}' failed in {where})"
            )
    return DrillReport(
        verdict=DrillVerdict.PASSED if why is None else DrillVerdict.FAILED,
        why=why or _passed_why(paused, p95, budget),
        paused=list(paused),
        rto_p50_s=p50,
        rto_p95_s=p95,
        rto_max_s=worst,
        budget=budget,
        checks=list(checks),
    )


def merge_drills(drills: Sequence[DrillReport | None]) -> DrillReport | None:
    """The drill of a merged report: the shards' paused jobs and checks together, judged again
    (any shard's failure fails it); None when no shard was a drill."""
    present = [d for d in drills if d is not None]
    if not present:
        return None
    failed = [d for d in present if not d.passed]
    paused = [job for d in present for job in d.paused]
    budget = next((d.budget for d in present if d.budget is not None), None)
    if budget is not None:
        held = all(d.budget is None or d.budget.held for d in present)
        budget = DrillBudget(
            step=budget.step,
            that=budget.that,
            measured=budget.measured,
            budget_s=budget.budget_s,
            held=held,
        )
    merged = judge(
        paused=paused,
        checks=[check for d in present for check in d.checks],
        failures=[],
        budget=budget,
        interrupted=False,
        pauses=False,
    )
    if failed:
        return DrillReport(
            verdict=DrillVerdict.FAILED,
            why=failed[0].why,
            paused=merged.paused,
            rto_p50_s=merged.rto_p50_s,
            rto_p95_s=merged.rto_p95_s,
            rto_max_s=merged.rto_max_s,
            budget=merged.budget,
            checks=merged.checks,
        )
    return merged


def _paused(project: str, record: JobRecord) -> PausedJob:
    resumed, ttr = record.retry_acknowledged_at, record.time_to_recover_s
    since = record.pause_to_recovery_s
    return PausedJob(
        project=project,
        id=record.job_id,
        name=record.name,
        disposition=record.disposition,
        paused_t=_t(record.paused_at),
        resumed_t=_t(resumed),
        recovered_t=None if since is None or resumed is None or ttr is None else _t(resumed + ttr),
        time_to_recover_s=ttr if since is not None else None,
        pause_to_recovery_s=since,
    )


def _t(seconds: float | None) -> float | None:
    """A run-relative time as events write it (to the millisecond)."""
    return None if seconds is None else round(seconds, 3)


def _failed_why(
    interrupted: bool,
    failures: Sequence[tuple[str, str, str | None]],
    unrecovered: Sequence[PausedJob],
    paused: int,
    pauses: bool,
) -> str | None:
    if interrupted:
        return "the run was interrupted before the drill finished"
    if failures:
        _, step, message = failures[0]
        return f"step '{step}' failed in {_where(failures, step)}: {message or 'no message'}"
    if unrecovered:
        first = unrecovered[0]
        return (
            f"{len(unrecovered)} of {paused} paused job(s) did not recover "
            f"({first.project}: {first.name or first.id} {first.disposition})"
        )
    if pauses and not paused:
        return "no job was paused: the drill injected no fault"
    return None


def _where(failures: Sequence[tuple[str, str, str | None]], step: str) -> str:
    """The project a step failed in, or how many."""
    projects = list(dict.fromkeys(p for p, s, _ in failures if s == step))
    return projects[0] if len(projects) == 1 else f"{len(projects)} projects"


def _passed_why(paused: Sequence[PausedJob], p95: float | None, budget: DrillBudget | None) -> str:
    if not paused:
        return "every check held"
    said = f", pause-to-recovery p95 {_s(p95)}" if p95 is not None else ""
    within = f" within the budget {_s(budget.budget_s)}" if budget is not None and said else ""
    return f"all {len(paused)} paused job(s) recovered{said}{within}; every check held"


def _s(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"


def _budget(
    runbook: Runbook, result: RunResult, checks: Iterable[DrillCheck]
) -> DrillBudget | None:
    """The first ``assert`` that compares a step's RTO output with a budget its params or a
    literal give (``steps.v.drill_rto_p95_s <= params.rto_budget``), or None."""
    scope = Scope(params=dict(result.params), target={}, steps={}, env={})
    ended = list(checks)
    for step in runbook.steps:
        that = step.with_.get("that") if step.action == ASSERT_ACTION else None
        if not isinstance(that, Expression) or not that.whole:
            continue
        node = that.parts[0]
        assert not isinstance(node, str)
        found = _rto_comparison(node, that, scope)
        if found is None:
            continue
        measured, budget_s = found
        return DrillBudget(
            step=step.id,
            that=that.text,
            measured=measured,
            budget_s=budget_s,
            held=all(c.status is not StepStatus.FAILED for c in ended if c.step == step.id),
        )
    return None


def _rto_comparison(node: Node, that: Expression, scope: Scope) -> tuple[str, float] | None:
    """(the RTO output's name, the budget) of ``rto <= budget`` or ``budget >= rto``."""
    if not isinstance(node, Binary) or node.op not in ("<", "<=", ">", ">="):
        return None
    for rto, other in ((node.left, node.right), (node.right, node.left)):
        if not (isinstance(rto, Name) and rto.parts[0] == "steps" and "rto" in rto.parts[-1]):
            continue
        if not isinstance(other, Name | Literal):
            continue
        try:
            value = evaluate(
                Expression(
                    text=unparse(other), location=that.location, static_type="any", parts=(other,)
                ),
                scope,
            )
        except ExpressionError:
            return None
        if is_number(value):
            return rto.dotted, float(value)
    return None
