"""Retrying transient failures: the one retry loop of every DRS and IAM request.

``Resilience.call`` sends a request (through a caller's ``send`` function, so every attempt is
authenticated and signed afresh), looks at what came back and decides whether to try again:

    answer                                        read (replayable)   write (not replayable)
    429 (APIGW.0308), DRS.M01503 too frequent     retry               retry (refused, not applied)
    DRS.M01504 another operation running          retry               retry (refused, not applied)
    500 / 502 / 503 / 504 (DRS.M00004 ...)        retry               raise: outcome unknown
    TransportError (reset, timeout, refused)      retry               raise: outcome unknown

A write that may have been applied is never re-sent: the caller reconciles by querying status.
Waits use exponential backoff with full jitter, ``uniform(0, min(cap, base * 2**retry))``; a
``Retry-After`` header (in seconds) wins when it asks for longer. After ``max_attempts`` sends the
last answer is returned (the caller turns it into ``DrsApiError``) or the last ``TransportError``
is raised. This is not a rate limiter (``ratelimit.TokenBucket`` paces requests before they are
sent) and not token renewal (``DrsClient._post`` refreshes after a 401 and replays once).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.api.transport import HttpResponse, error_fields
from engine.api.types import ERR_OPERATION_RUNNING, ERR_SERVICE_ABNORMAL, ERR_TOO_FREQUENT
from engine.errors import TransportError

if TYPE_CHECKING:
    from engine.telemetry import Telemetry

logger = logging.getLogger(__name__)

RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
# A Retry-After beyond this is clipped: a runbook step has its own deadline to keep.
MAX_RETRY_AFTER_S = 60.0

Sleep = Callable[[float], Awaitable[None]]
Uniform = Callable[[float, float], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to wait; ``max_attempts`` counts the first send."""

    base_s: float = 0.5
    cap_s: float = 20.0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError(f"base_s and cap_s must be >= 0, got {self.base_s}, {self.cap_s}")

    def ceiling(self, retry: int) -> float:
        """The upper bound of the jittered wait before retry number ``retry`` (0-based)."""
        return min(self.cap_s, self.base_s * 2.0**retry)


@dataclass(slots=True)
class ResilienceStats:
    """Counters for reports; one object may be shared by every client of a run."""

    sends: int = 0  # requests put on the wire, first attempts and retries
    retries: int = 0  # re-sends after a transient failure
    throttled: int = 0  # answers 429 or DRS.M01503 (the service asked us to slow down)
    busy: int = 0  # answers DRS.M01504 (another operation is running on the task)
    server_errors: int = 0  # answers 500/502/503/504
    transport_errors: int = 0  # sends that got no answer
    gave_up: int = 0  # calls that still failed transiently after the last allowed attempt
    waited_s: float = 0.0  # total backoff time

    def as_dict(self) -> dict[str, int | float]:
        return {
            "sends": self.sends,
            "retries": self.retries,
            "throttled": self.throttled,
            "busy": self.busy,
            "server_errors": self.server_errors,
            "transport_errors": self.transport_errors,
            "gave_up": self.gave_up,
            "waited_s": round(self.waited_s, 3),
        }


class Resilience:
    """The retry loop; ``sleep`` and ``uniform`` are injectable so tests run on virtual time.
    ``telemetry`` counts retries and throttled answers as they happen (``engine.telemetry``)."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        stats: ResilienceStats | None = None,
        sleep: Sleep = asyncio.sleep,
        uniform: Uniform = random.uniform,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.stats = stats if stats is not None else ResilienceStats()
        self._sleep = sleep
        self._uniform = uniform
        self._telemetry = telemetry

    def __repr__(self) -> str:
        return f"Resilience({self.policy!r}, stats={self.stats!r})"

    async def call(
        self,
        operation: str,
        send: Callable[[], Awaitable[HttpResponse]],
        *,
        replayable: bool,
    ) -> HttpResponse:
        """Send until an answer is final; return it (any status) or raise ``TransportError``.

        ``replayable`` says the request may be re-sent when its outcome is unknown (a read, or
        an IAM token request). Every request may be re-sent after the service refused it.
        """
        retry = 0
        while True:
            self.stats.sends += 1
            retry_after: float | None = None
            answered: HttpResponse | None = None
            try:
                response = await send()
            except TransportError as exc:
                self.stats.transport_errors += 1
                if not replayable:
                    raise  # the write may have been applied: the caller reconciles by status
                if not self._may_retry(retry):
                    self.stats.gave_up += 1
                    raise
                cause = str(exc)
            else:
                transient = self._transient_cause(operation, response, replayable)
                if transient is None:
                    return response
                if not self._may_retry(retry):
                    self.stats.gave_up += 1
                    return response
                cause, answered = transient, response
                retry_after = _retry_after_s(response)
            delay = self._delay(retry, retry_after)
            retry += 1
            self.stats.retries += 1
            self.stats.waited_s += delay
            if self._telemetry is not None:
                self._telemetry.retried(operation)
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "%s: %s; retry %d of %d in %.2f s",
                    operation,
                    cause,
                    retry,
                    self.policy.max_attempts - 1,
                    delay,
                    extra=_answer_fields(answered),
                )
            await self._sleep(delay)

    def backoff(self, retry: int) -> float:
        """Full jitter: a uniform wait between 0 and the policy's ceiling for ``retry``."""
        return self._uniform(0.0, self.policy.ceiling(retry))

    def _delay(self, retry: int, retry_after: float | None) -> float:
        jittered = self.backoff(retry)
        return jittered if retry_after is None else max(jittered, retry_after)

    def _may_retry(self, retry: int) -> bool:
        return retry + 1 < self.policy.max_attempts

    def _transient_cause(
        self, operation: str, response: HttpResponse, replayable: bool
    ) -> str | None:
        """Why ``response`` may be retried (for the log), or None if it is final."""
        status = response.status
        if response.ok and status != 202:  # DRS.M01504 comes as a 202 with an error body
            return None
        code = error_fields(response)[0]
        rid = f", request id {response.request_id}" if response.request_id else ""
        cause = f"HTTP {status} {code}{rid}"
        if status == 429 or code == ERR_TOO_FREQUENT:
            self.stats.throttled += 1
            if self._telemetry is not None:
                self._telemetry.throttled(operation)
            return cause
        if code == ERR_OPERATION_RUNNING:
            self.stats.busy += 1
            return cause
        if status in RETRYABLE_SERVER_STATUSES or code == ERR_SERVICE_ABNORMAL:
            # DRS.M00004 is transient whether it comes as a 500 (OTC) or a 422 (Huawei).
            self.stats.server_errors += 1
            return cause if replayable else None
        return None


def _answer_fields(response: HttpResponse | None) -> dict[str, object]:
    """A retried answer's request id and status, as a log record's fields (``engine.logs``)."""
    if response is None:
        return {}
    return {"request_id": response.request_id, "status": response.status}


def _retry_after_s(response: HttpResponse) -> float | None:
    """``Retry-After`` in seconds (clipped to ``MAX_RETRY_AFTER_S``); an HTTP date is ignored."""
    raw = response.header("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
