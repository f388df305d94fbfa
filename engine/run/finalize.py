"""The end of a target's run: intermediate dispositions become final ones, with the reason.

Every job ends in the report with a final disposition: a job still ``selected`` or
``retry_accepted`` when the run ends was not retried or not verified (and says why), a job
whose last event is a request sent and never answered ends with that mutation's unknown
disposition, and an interrupted run's unfinished jobs are ``cancelled``. What each mutation
calls its events comes from the ledger (``MUTATIONS``), so a new one needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.actions.budget import ErrorBudget
from engine.ledger import MUTATIONS, REJECTED_KINDS, SENT_KINDS, Disposition, JobBook

_UNANSWERED = {m.sent: m for m in MUTATIONS}


def finalize(
    jobs: JobBook, failure: str | None, *, mutating: bool, cancelled: bool = False
) -> None:
    """Turn intermediate dispositions into final ones, with the reason."""
    because = f" ({failure})" if failure else ""
    for record in jobs:
        if record.disposition not in {Disposition.SELECTED, Disposition.RETRY_ACCEPTED}:
            continue
        last = record.events[-1].kind if record.events else None
        mutation = _UNANSWERED.get(last) if last is not None else None
        if mutation is not None:
            record.disposition = mutation.unanswered
            record.reason = f"{mutation.verb} sent, no answer recorded{because}"
        elif cancelled:
            was_retried = record.disposition is Disposition.RETRY_ACCEPTED
            record.disposition = Disposition.CANCELLED
            record.reason = (
                "retry accepted, verification interrupted" if was_retried else "not retried"
            ) + because
        elif record.disposition is Disposition.RETRY_ACCEPTED:
            record.disposition = Disposition.NOT_VERIFIED
            record.reason = f"retry accepted but not verified{because}"
        elif mutating:
            record.disposition = Disposition.NOT_RETRIED
            record.reason = f"selected but not retried{because}"


def restore_budget(budget: ErrorBudget, books: Iterable[JobBook]) -> None:
    """The error budget as an interrupted run had spent it, from the jobs' timelines."""
    for jobs in books:
        for record in jobs:
            kinds = {event.kind for event in record.events}
            if kinds & SENT_KINDS:
                budget.attempt(1)
            budget.fail(sum(1 for e in record.events if e.kind in REJECTED_KINDS))
            if record.disposition is Disposition.FAILED_AGAIN:
                budget.fail()
