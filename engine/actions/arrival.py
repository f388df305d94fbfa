"""Did an unanswered request arrive? The evidence the API gives beyond a job's status.

A job that failed again within a second of a retry shows the same status as one the retry
never reached, so its status alone proves nothing. ``arrival`` reads what else there is — a
status other than the one before the send, ``job_action.current_action``, batch-detail's
``update_time`` / ``actual_start_time`` on the server's clock — and says, per job, whether the
request arrived, did not, or cannot be told (docs/execution.md, "Did the retry arrive?").
``engine.actions.mutation`` re-sends only what did not arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.actions.context import ActionContext
from engine.api.client import JobDetail, chunks
from engine.api.types import MAX_IDS_PER_NAME_FILTER
from engine.errors import DrsApiError, TransportError
from engine.ledger import EventKind, JobRecord, MutationEvents

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the evidence says of an unanswered request: arrived (True), did not (False), or
    cannot tell (None); ``why`` says which evidence, for the job's reason."""

    arrived: bool | None
    why: str


# How far apart two clocks may read the same instant and still be taken to agree: the Date
# header's one-second resolution and the time the answer took.
SKEW_TOLERANCE_S = 2.0


async def arrival(
    ctx: ActionContext,
    events: MutationEvents,
    current_action: str | None,
    job_ids: Sequence[str],
    statuses: Mapping[str, str | None],
) -> dict[str, Arrival]:
    """For jobs whose status after the grace says the change did not take: did the request
    arrive all the same? From what batch-detail tells beyond the status: ``update_time`` (when
    the job last changed) against the time the intent was recorded, on the server's clock as
    its ``Date`` header sets it; and a status other than the one before the send. Only a job
    unchanged since before the send counts as not arrived; no evidence is ``None``."""
    if not job_ids:
        return {}
    acting = await _current_actions(ctx, job_ids)
    try:
        details = {d.id: d for d in await ctx.api.batch_detail(list(job_ids))}
    except (DrsApiError, TransportError) as exc:
        return {j: Arrival(None, f"not re-sent: batch-detail failed ({exc})") for j in job_ids}
    wall_now, now = time.time(), ctx.now()
    found: dict[str, Arrival] = {}
    sent = events.sent
    for job_id in job_ids:
        record = ctx.jobs.ensure(job_id)
        sent_t = sent_at(record, sent)
        before = next(
            (e.status for e in reversed(record.events) if e.t <= sent_t and e.status), None
        )
        status, detail = statuses.get(job_id), details.get(job_id)
        if before is not None and status is not None and status != before:
            found[job_id] = Arrival(
                True,
                f"the status went from {before} to {status} (this request's doing, or the "
                "service's own retry)",
            )
        elif current_action and acting.get(job_id) == current_action:
            found[job_id] = Arrival(
                True, f"its job_action.current_action is {current_action}: under way"
            )
        elif detail is None:
            found[job_id] = Arrival(None, "not re-sent: batch-detail gave nothing for it")
        else:
            found[job_id] = _by_times(detail, wall_now - (now - sent_t), events.verb)
    return found


def _by_times(detail: JobDetail, intent: float, verb: str) -> Arrival:
    """What batch-detail's times say of a request whose intent was journaled at ``intent``
    (epoch seconds, our clock). ``update_time`` decides both ways; ``actual_start_time`` only
    that it arrived (whether a retry resets it is not documented). Without the server's Date
    there is no telling its clock from ours: no evidence, either way."""
    if detail.clock_skew_s is None:
        return Arrival(None, "not re-sent: no Date header to set the server's clock against ours")
    skew = detail.clock_skew_s
    if detail.updated_at is not None:
        changed = detail.updated_at - skew  # on our clock
        if changed >= intent - SKEW_TOLERANCE_S:
            return Arrival(
                True,
                f"update_time {_iso(changed)} is after the {verb} was sent, so it arrived and "
                "the job failed again (or the service retried it itself)",
            )
        return Arrival(False, f"update_time {_iso(changed)} is before the {verb} was sent")
    if detail.started_at is not None and detail.started_at - skew >= intent - SKEW_TOLERANCE_S:
        started = _iso(detail.started_at - skew)
        return Arrival(True, f"actual_start_time {started} is after the {verb} was sent")
    shown = "no update_time" if detail.update_time is None else repr(detail.update_time)
    return Arrival(None, f"not re-sent: {shown} tells no instant (no time zone given)")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


async def _current_actions(ctx: ActionContext, job_ids: Sequence[str]) -> dict[str, str]:
    """What ``job_action.current_action`` the listing shows for each job (the ``name`` filter
    takes up to 100 ids); best effort: a listing that fails tells nothing."""
    by_use: dict[str, list[str]] = {}
    for job_id in job_ids:
        use = ctx.jobs.ensure(job_id).db_use_type or "migration"
        by_use.setdefault(use, []).append(job_id)
    found: dict[str, str] = {}
    for use, ids in by_use.items():
        for chunk in chunks(ids, MAX_IDS_PER_NAME_FILTER):
            try:
                listing = await ctx.api.list_jobs(db_use_type=use, name=",".join(chunk))
            except (DrsApiError, TransportError) as exc:
                logger.info(
                    "could not list %d job(s) for their current action: %s", len(chunk), exc
                )
                continue
            wanted = set(chunk)
            for job in listing.jobs:
                for one in (job, *job.children):
                    if one.id in wanted and one.job_action.current_action:
                        found[one.id] = one.job_action.current_action
    return found


def sent_at(record: JobRecord, sent: EventKind) -> float:
    return next(e.t for e in reversed(record.events) if e.kind is sent)
