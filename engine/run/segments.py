"""A runbook's steps cut where every target must wait for the others: the run's segments.

    Steps          some steps every target runs on its own, in order
    Gate           an approval: every target stops; one decision lets them all go on
    BeforeChanges  the point before the first change: every target has selected and none has
                   changed anything; the run shows what is about to change and checks
                   max_jobs_total (only when it has to, see ``segments``)

Between two such points targets do not wait for each other: a target whose selection is done
sends its first change while the others still list, which keeps the API's budget busy instead
of queueing every target's first change at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.actions.registry import REGISTRY
from engine.runbook import Step

# What the report calls the BeforeChanges check when it stops a target (a step id of its own).
GUARD_ID = "max_jobs_total"
GUARD_ACTION = "guard"


@dataclass(frozen=True, slots=True)
class Steps:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Gate:
    step: Step


@dataclass(frozen=True, slots=True)
class BeforeChanges:
    first: Step  # the first step that changes something, or the first gate


Segment = Steps | Gate | BeforeChanges


def is_gate(step: Step) -> bool:
    return REGISTRY[step.action].gate


def changes(step: Step) -> bool:
    """A mutating step, or an approval to change (where the run stops before any change)."""
    action = REGISTRY[step.action]
    return action.gate or action.mutating


def first_change(steps: Sequence[Step]) -> int:
    """The index of the first step that changes something (len(steps) when none does)."""
    return next((i for i, step in enumerate(steps) if changes(step)), len(steps))


def following(steps: Sequence[Step], step: Step) -> tuple[Step, ...]:
    """The steps after ``step``."""
    index = next(i for i, candidate in enumerate(steps) if candidate is step)
    return tuple(steps[index + 1 :])


def segments(steps: Sequence[Step], *, before_changes: bool) -> list[Segment]:
    """The steps cut at every gate and, if ``before_changes``, before the first change.

    The caller asks for the cut before the first change only when something needs every
    target's selection at once (max_jobs_total, or a display of what is about to change); a
    plan changes nothing and needs neither. A gate is a cut whatever the caller asks.
    """
    cut: list[Segment] = []
    pending: list[Step] = []
    guarded = not before_changes

    def flush() -> None:
        if pending:
            cut.append(Steps(tuple(pending)))
            pending.clear()

    for step in steps:
        if not guarded and changes(step):
            flush()
            cut.append(BeforeChanges(step))
            guarded = True
        if is_gate(step):
            flush()
            cut.append(Gate(step))
        else:
            pending.append(step)
    flush()
    return cut
