"""What the emulator has seen, for ``GET /_emulator/stats`` and ``GET /_emulator/requests``.

Totals (``RequestStats``, keys unchanged since the emulator had one account): ``requests`` counts
every arrival by route (faulted ones too); ``mutating_requests`` the batch-retry-task and
batch-pause-task arrivals not dropped by an injected reset; ``retry_requests_per_job`` /
``pause_requests_per_job`` the job ids of requests that reached the service; ``throttled`` the
429s; ``faults`` each injected fault; ``peak_rate_per_s`` the most requests admitted in any
one-second window of the fleet clock, per route (``peak_rate_per_s_all`` over every route);
``responses_by_code`` every DRS/APIGW error code emitted.

Per account (``accounts.<name>``, every account listed, from zero): a request is the account's
once its credentials were accepted as that account's (a token it was issued, a signature with
its AK), whatever came next; a request refused before (bad credentials, an injected reset or
500) is no account's. ``requests``, ``requests_by_route``, ``mutating_requests`` (its
batch-retry-task and batch-pause-task requests), ``throttled`` (its 429s: the throttle counts
per account per route), ``refused_other_account`` (its credentials on another account's
project: 403 ``DRS.M00102``) and ``peak_rate_per_s`` (per route, admitted requests).

The mutating log (``MutatingRequest``) holds every arrival of batch-retry-task and
batch-pause-task, resets and throttled ones too, stamped on arrival with the fleet clock
(``at``, monotonic) and the emulator's wall clock (``at_wall``, epoch seconds; a test in
another process compares against this one), with the project's owning account, the account
whose credentials were accepted (``caller``, null if none were) and the HTTP status answered
(null when the connection was dropped unanswered).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.emulator.faults import FAULT_KINDS
from engine.emulator.throttle import Clock, RateMeter


@dataclass(slots=True, kw_only=True)
class MutatingRequest:
    """One arrival of a mutating route; ``caller`` and ``status`` are filled in as it passes."""

    at: float  # fleet clock (monotonic) on arrival
    at_wall: float  # the emulator's wall clock on arrival, epoch seconds
    route: str
    project_id: str
    account: str | None  # the account owning the path's project; None: no such project
    caller: str | None = None  # whose credentials were accepted; None: none (yet)
    status: int | None = None  # the HTTP status answered; None: dropped unanswered

    def to_wire(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "at_wall": self.at_wall,
            "route": self.route,
            "project_id": self.project_id,
            "account": self.account,
            "caller": self.caller,
            "status": self.status,
        }


class AccountStats:
    """One account's requests (see the module docstring)."""

    def __init__(self, meter: RateMeter, mutating_routes: frozenset[str]) -> None:
        self.requests_by_route: Counter[str] = Counter()
        self.throttled = 0
        self.refused_other_account = 0
        self.meter = meter
        self._mutating_routes = mutating_routes

    def to_wire(self) -> dict[str, Any]:
        by_route = self.requests_by_route
        return {
            "requests": by_route.total(),
            "requests_by_route": dict(by_route),
            "mutating_requests": sum(by_route[r] for r in self._mutating_routes),
            "throttled": self.throttled,
            "refused_other_account": self.refused_other_account,
            "peak_rate_per_s": dict(self.meter.peak),
        }


class RequestStats:
    """The emulator's counters, totals and per account (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        *,
        accounts: Iterable[str] = (),
        mutating_routes: frozenset[str] = frozenset(),
    ) -> None:
        self.requests: Counter[str] = Counter()
        self.mutating_requests = 0
        self.retry_requests_per_job: Counter[str] = Counter()
        self.pause_requests_per_job: Counter[str] = Counter()
        self.throttled = 0
        self.faults: Counter[str] = Counter()
        self.responses_by_code: Counter[str] = Counter()
        self.meter = RateMeter(clock)
        self.mutating_log: list[MutatingRequest] = []
        self.accounts = {name: AccountStats(RateMeter(clock), mutating_routes) for name in accounts}

    def mutating_since(
        self,
        *,
        since: float | None = None,
        since_wall: float | None = None,
        account: str | None = None,
    ) -> Iterator[MutatingRequest]:
        """The logged mutating arrivals strictly after ``since`` (fleet clock) and/or
        ``since_wall`` (wall clock), of projects owned by ``account`` if given."""
        for entry in self.mutating_log:
            if since is not None and entry.at <= since:
                continue
            if since_wall is not None and entry.at_wall <= since_wall:
                continue
            if account is not None and entry.account != account:
                continue
            yield entry

    def to_wire(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "mutating_requests": self.mutating_requests,
            "retry_requests_per_job": dict(self.retry_requests_per_job),
            "pause_requests_per_job": dict(self.pause_requests_per_job),
            "throttled": self.throttled,
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
            "peak_rate_per_s": dict(self.meter.peak),
            "peak_rate_per_s_all": self.meter.peak_all,
            "responses_by_code": dict(self.responses_by_code),
            "accounts": {name: stats.to_wire() for name, stats in self.accounts.items()},
        }
