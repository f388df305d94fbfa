"""How a run reaches its targets: the transport stack, credentials and one client per target.

    transport  ->  StopGate (with stop conditions)  ->  FairTransport (concurrency caps, in
    turn)  ->  CountingTransport (the report's API calls by route)  ->  RateLimitedTransport
    per account and endpoint (the pace of each API's budget)  ->  DrsClient per target

The stop gate is next to the wire: a mutating request that waited for its turn while the run's
stop tripped is never sent (``engine.run.stop``).

A request holds a concurrency slot only while it is on the wire, not while it waits for its turn
at the endpoint's pace (a slow endpoint must not hold every slot). IAM requests go straight to
the transport: they are neither counted as DRS calls nor paced with them. The executor gets the
clients ready-made (``Wired.clients``) and never sees a transport.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.api.auth import Auth, IamPasswordAuth
from engine.api.client import DrsClient
from engine.api.credentials import CredentialSettings, describe_source, resolve_credentials
from engine.api.endpoints import drs_endpoint
from engine.api.protocol import DrsApi
from engine.api.ratelimit import RateBudgets, RateLimitedTransport, route_of
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse, Transport
from engine.api.types import Language
from engine.errors import UsageError
from engine.run.limits import FairLimiter, FairTransport
from engine.run.stop import StopGate, StopSignal
from engine.runbook import Runbook, Target

if TYPE_CHECKING:
    from engine.telemetry import Telemetry

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """How to reach one target: its DRS base URL and its credentials."""

    endpoint: str
    auth: Auth


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorLogin:
    """The demo user of an emulator a run started for itself."""

    url: str
    user: str
    password: str
    domain: str


class CountingTransport:
    """Counts requests by ``METHOD /route`` (project ids folded into ``{project_id}``)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.calls[route_of(request)] += 1
        return await self._inner.send(request)


@dataclass(frozen=True, slots=True, kw_only=True)
class Wired:
    """A run's clients and the figures its report takes from the wire."""

    clients: Mapping[Target, DrsApi]
    endpoints: Mapping[Target, str]
    counter: CountingTransport
    limiter: FairLimiter
    resilience: Resilience

    @property
    def api_calls(self) -> dict[str, int]:
        return dict(self.counter.calls)


def wire(
    runbook: Runbook,
    connections: Mapping[Target, Connection],
    transport: Transport,
    resilience: Resilience,
    telemetry: Telemetry | None = None,
    stop: StopSignal | None = None,
) -> Wired:
    """A client per target over one transport stack, shared by every target of the run; each
    target's requests are paced on its budgets (its account and region, per API);
    ``telemetry`` traces every request they send."""
    limiter = FairLimiter(runbook.concurrency, runbook.concurrency_per_target)
    wire_side: Transport = transport if stop is None else StopGate(transport, stop)
    counter = CountingTransport(FairTransport(wire_side, limiter))
    budgets = RateBudgets()
    paced: dict[str, RateLimitedTransport] = {}
    language = Language(runbook.language)
    clients: dict[Target, DrsApi] = {}
    for target, connection in connections.items():
        scope = budget_scope(target, connection.endpoint)
        if scope not in paced:
            paced[scope] = RateLimitedTransport(
                counter, rate_of(runbook, target), budgets=budgets, scope=scope
            )
        clients[target] = DrsClient(
            transport=paced[scope],
            endpoint=connection.endpoint,
            project_id=target.project_id,
            auth=connection.auth,
            language=language,
            resilience=resilience,
            telemetry=telemetry,
        )
    return Wired(
        clients=clients,
        endpoints={target: c.endpoint for target, c in connections.items()},
        counter=counter,
        limiter=limiter,
        resilience=resilience,
    )


def budget_scope(target: Target, endpoint: str) -> str:
    """What a target's rate budgets are keyed by besides the API: its account and the gateway
    it goes through, its DRS endpoint (one per region in the cloud, so account and region; one
    for every target given ``--endpoint``, which then share its budgets)."""
    return f"{target.account or '-'} {endpoint}"


def rate_of(runbook: Runbook, target: Target) -> float | None:
    """The configured rate of a target's budgets: its account's, else the runbook's."""
    account = runbook.accounts.get(target.account) if target.account else None
    if account is not None and account.rate_limit_per_s is not None:
        return account.rate_limit_per_s
    return runbook.rate_limit_per_s


def emulator_connections(
    runbook: Runbook, logins: Mapping[str | None, EmulatorLogin], transport: Transport
) -> dict[Target, Connection]:
    """Every target through the emulator, authenticated as its account's demo user (IAM
    password; ``logins[None]`` for a run without accounts)."""
    return {
        target: Connection(
            endpoint=logins[target.account].url,
            auth=IamPasswordAuth(
                transport=transport,
                iam_endpoint=logins[target.account].url,
                user=logins[target.account].user,
                password=logins[target.account].password,
                domain=logins[target.account].domain,
                project_id=target.project_id,
            ),
        )
        for target in runbook.targets
    }


def cloud_connections(
    runbook: Runbook,
    *,
    endpoint: str | None,
    credentials: CredentialSettings | None,
    accounts: Mapping[str, CredentialSettings],
    transport: Transport,
    resilience: Resilience,
) -> dict[Target, Connection]:
    """Real endpoints (or one ``endpoint`` for all), with credentials resolved per target: its
    account's from ``accounts`` (``engine.run.accounts.account_settings``; only those, never
    the environment's as a fallback), else the run's."""
    connections: dict[Target, Connection] = {}
    for target in runbook.targets:
        base = endpoint or target.endpoint or drs_endpoint(target.region or "")
        account = runbook.accounts[target.account] if target.account else None
        try:
            auth = resolve_credentials(
                explicit=credentials if account is None else accounts[account.name],
                env=os.environ if account is None else {},
                project_id=target.project_id,
                region=target.region,
                iam_endpoint=(account.iam_endpoint if account else None)
                or endpoint
                or (None if target.region else base),
                transport=transport,
                resilience=resilience,
            )
        except UsageError as exc:
            raise UsageError(
                f"{exc} (or use --emulator to run against the embedded emulator)"
            ) from exc
        connections[target] = Connection(endpoint=base.rstrip("/"), auth=auth)
    if any(target.account is None for target in runbook.targets):
        logger.info("credentials: %s", describe_source(explicit=credentials, env=os.environ))
    for name, account_credentials in accounts.items():
        logger.info("credentials of account %s: %s", name, account_credentials.origin)
    return connections
