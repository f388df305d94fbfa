"""Polling jobs' status until each is resolved or a deadline passes: the one poll loop of a run.

``drs.verify_status`` waits with it for jobs to run again; the mutating actions wait with it to
learn whether a request whose answer was lost took effect. It is not a retry loop (a failed
query is logged and the next poll asks again) and not a rate limit: its waits only say how
often this loop asks, the run's limiter and rate limit decide when a request leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.actions.context import ActionContext
from engine.api.types import StatusResult
from engine.errors import DrsApiError, TransportError

logger = logging.getLogger(__name__)

# The least time one status query is given, even at the deadline.
MIN_QUERY_S = 1.0
# A wait inside a step ends this long (at most) before the step's deadline, so the step can
# still return its results in time.
DEADLINE_RESERVE_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pace:
    """The wait between two polls: ``first``, doubled after each poll in which no job changed
    status up to ``longest``, back to ``first`` as soon as one does, and never shorter than the
    last query took to answer (up to ``longest``): a loaded service, or the run's own requests
    queued behind its concurrency cap, must not make every target poll back to back."""

    first: float
    longest: float

    @classmethod
    def fixed(cls, seconds: float) -> Pace:
        return cls(first=seconds, longest=seconds)

    def next(self, wait: float, *, changed: bool, took: float) -> float:
        wait = self.first if changed else min(wait * 2, self.longest)
        return max(wait, min(took, self.longest))


# Queueing under this much is jitter, not a line of polls.
QUEUE_SLACK_S = 0.05


@dataclass(slots=True)
class Backlog:
    """The time this loop's queries stood in line, moved to the wait between its polls.

    When the run's targets together poll faster than the API's budget grants (50 targets every
    2 s want 25 requests/s; the gateway grants 20), every query queues at the budget, and a
    queued poll holds up the requests behind it: another target's first change, another's last
    poll before its deadline. A query that took longer than this loop's quickest answer so far
    queued for the difference; that difference (less ``QUEUE_SLACK_S``) is added to the next
    waits, so the polls' demand settles at what the budget grants and the line stays short.
    The extra shrinks by a quarter after each query that did not queue, and is never more than
    the pace's own wait (a stall of the service does not stretch the polls for long).

    It reads only the time each query took, not the budget: it works for any rate limit, any
    concurrency cap, and any layout of either. It is not a rate limit (the run's limiter and
    rate limit still decide when a request leaves).
    """

    quickest: float | None = None
    extra: float = 0.0

    def after(self, took: float, wait: float) -> float:
        """The extra wait after a query that took ``took``, with the pace's ``wait`` next."""
        if self.quickest is None or took < self.quickest:
            self.quickest = took
        queued = took - self.quickest
        if queued > QUEUE_SLACK_S:
            self.extra = min(wait, self.extra + queued - QUEUE_SLACK_S)
        else:
            self.extra *= 0.75
        return self.extra


def wait_deadline(ctx: ActionContext, seconds: float | None) -> float:
    """When a wait of ``seconds`` (None: as long as the step allows) must end: by the step's
    deadline, less a reserve for the step to return its results (a quarter of what is left,
    at most DEADLINE_RESERVE_S)."""
    now = ctx.now()
    if ctx.deadline is None:
        return now + (seconds if seconds is not None else 0.0)
    left = max(0.0, ctx.deadline - now)
    bound = now + left - min(DEADLINE_RESERVE_S, left / 4)
    return bound if seconds is None else min(now + seconds, bound)


def query_deadline(ctx: ActionContext, deadline: float) -> float:
    """Seconds one query of a poll may take: up to the deadline, but at least MIN_QUERY_S."""
    return max(deadline - ctx.now(), MIN_QUERY_S)


async def poll_until(
    ctx: ActionContext,
    job_ids: Sequence[str],
    *,
    resolved: Callable[[StatusResult], bool],
    deadline: float,
    pace: Pace,
    purpose: str,
    known: Mapping[str, str | None] | None = None,
    each_round: Callable[[Mapping[str, StatusResult], float], Awaitable[bool]] | None = None,
) -> dict[str, str | None]:
    """Ask batch-status for the unresolved jobs until none is left or ``deadline`` passes.

    ``resolved(answer)`` books one status answer and says whether the job needs no more polls.
    ``known`` are the statuses seen before the first poll (whether the first answer is a
    change). ``each_round(answers, deadline)``, when given, runs after each round's status
    answers and before they are booked (to ask more about the jobs: their replication delay),
    and says whether it saw a change that resets the pace; it must not outlast the deadline
    (``query_deadline`` bounds it). Returns the jobs still unresolved, with the last status seen
    of each (None if no answer ever named it). Each round's changes are handed to the journal.
    """
    pending = dict.fromkeys(job_ids)
    last: dict[str, str | None] = dict(known or {})
    wait = pace.first
    backlog = Backlog()
    while pending:
        asked_at = ctx.now()
        try:
            # No query may outlast the deadline: a server that drips its answer would keep
            # the loop past it, by as much as the request's own deadline.
            async with asyncio.timeout(query_deadline(ctx, deadline)):
                answers = {r.id: r for r in await ctx.api.batch_status(list(pending))}
        except (DrsApiError, TransportError, TimeoutError) as exc:
            # One failed poll is not a verdict on the jobs: ask again at the next poll.
            why = str(exc) or "no answer by the deadline"
            logger.warning("batch-status failed while %s, polling on: %s", purpose, why)
            answers = {}
        changed = False
        if each_round is not None and answers:
            changed = await each_round(answers, deadline)
        for job_id in list(pending):
            answer = answers.get(job_id)
            if answer is None:
                continue
            changed = changed or answer.status != last.get(job_id)
            last[job_id] = answer.status
            if resolved(answer):
                del pending[job_id]
        ctx.jobs.checkpoint()
        remaining = deadline - ctx.now()
        if not pending or remaining <= 0:
            break
        took = ctx.now() - asked_at
        wait = pace.next(wait, changed=changed, took=took)
        await ctx.sleep(min(wait + backlog.after(took, wait), remaining))
    return {job_id: last.get(job_id) for job_id in pending}
