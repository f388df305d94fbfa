"""Lint: warnings about valid runbooks that are risky to run as written.

A warning never stops a run; ``runbook validate`` shows them after the errors. Each one points
at the step it is about.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import Diagnostic
from engine.rules import Level, Rule
from engine.runbook.model import Runbook, Step

VERIFY_ACTION = "drs.verify_status"
SELECT_ACTION = "drs.select_jobs"
_NARROWING = ("statuses", "name", "engine_type")


def lint(runbook: Runbook, catalog_mutating: Mapping[str, bool]) -> list[Diagnostic]:
    """Every warning about ``runbook``; ``catalog_mutating`` says which actions change jobs."""
    found: list[Diagnostic] = []
    mutating = [s for s in runbook.steps if catalog_mutating.get(s.action, False)]
    for index, step in enumerate(runbook.steps):
        if step in mutating and not any(s.action == VERIFY_ACTION for s in runbook.steps[index:]):
            found.append(
                _warning(
                    Rule.UNVERIFIED_MUTATION,
                    step,
                    "changes jobs, but no later drs.verify_status step checks that they recover",
                    "add a drs.verify_status step after it",
                )
            )
        if step.action == VERIFY_ACTION and step.timeout_s is None:
            found.append(
                _warning(
                    Rule.VERIFY_WITHOUT_TIMEOUT,
                    step,
                    "no explicit timeout: verification waits up to the default 600s",
                    "set timeout: to how long recovery may take, such as 10m",
                )
            )
        if step.action == SELECT_ACTION and not any(k in step.with_ for k in _NARROWING):
            found.append(
                _warning(
                    Rule.UNNARROWED_SELECTION,
                    step,
                    "no statuses, name or engine_type: selects every failed or paused job",
                    "narrow the selection, such as name: orders-*",
                )
            )
    if mutating and runbook.max_jobs is None:
        found.append(
            _warning(
                Rule.NO_MAX_JOBS,
                mutating[0],
                "changes jobs, but the runbook sets no max_jobs",
                "set max_jobs: at the top level to cap how many jobs one run may act on",
            )
        )
    return sorted(found, key=lambda d: (d.location.line, d.location.col, d.message))


def _warning(rule: Rule, step: Step, detail: str, hint: str) -> Diagnostic:
    assert rule.level == Level.WARNING, f"{rule} is not a lint rule"
    return Diagnostic(
        location=step.location,
        message=f"step '{step.id}' ({step.action}): {detail}",
        rule=rule,
        hint=hint,
    )
