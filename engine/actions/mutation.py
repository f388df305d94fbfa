"""What the mutating batch actions (retry, pause) share: batching, the "nothing was applied"
answers, and watching status to learn whether an unanswered request took effect."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from engine.actions.context import ActionContext
from engine.api.types import ERR_OPERATION_RUNNING, ERR_TOO_FREQUENT
from engine.errors import DrsApiError, TransportError

logger = logging.getLogger(__name__)

# How often status is polled while an unknown outcome is reconciled.
RECONCILE_POLL_S = 3.0


def batches(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def not_applied_try_later(exc: DrsApiError) -> bool:
    """Throttled or busy: the gateway or the service refused the request before applying it."""
    return exc.http_status == 429 or exc.error_code in {ERR_TOO_FREQUENT, ERR_OPERATION_RUNNING}


async def watch_status(
    ctx: ActionContext,
    job_ids: Sequence[str],
    *,
    took_effect: Callable[[str], bool],
    on_effect: Callable[[str, str], None],
    grace_s: float,
) -> dict[str, str | None]:
    """Poll the jobs' status for up to ``grace_s`` until each shows the change took effect.

    The service may show the old status for a moment after accepting a request, so one look is
    not enough. ``on_effect(job_id, status)`` is called for each job that moved; the rest are
    returned with their last status seen (None if status never answered for them).
    """
    last: dict[str, str] = {}
    pending = list(job_ids)
    deadline = ctx.now() + grace_s
    while pending:
        try:
            last.update((r.id, r.status) for r in await ctx.api.batch_status(pending))
        except (DrsApiError, TransportError) as exc:
            logger.warning("status query while reconciling failed: %s", exc)
        for job_id in [j for j in pending if last.get(j) and took_effect(last[j])]:
            pending.remove(job_id)
            on_effect(job_id, last[job_id])
        if not pending or ctx.now() >= deadline:
            break
        await ctx.sleep(min(RECONCILE_POLL_S, max(0.0, deadline - ctx.now())))
    return {job_id: last.get(job_id) for job_id in pending}
