"""How a run reaches its targets: the transport stack, credentials and one client per target.

    transport  ->  StopGate (with stop conditions)  ->  FairTransport (concurrency caps, in
               turn)  ->  RateLimitedTransport (pace)  ->  CountingTransport (the report's API
               calls by route)  ->  DrsClient per target

The stop gate is next to the wire: a mutating request that waited for its turn while the run's
stop tripped is never sent (``engine.run.stop``).

A request holds a concurrency slot only while it is on the wire, not while it waits for its turn
at the endpoint's pace (a slow endpoint must not hold every slot). IAM requests go straight to
the transport: they are neither counted as DRS calls nor paced with them. The executor gets the
clients ready-made (``Wired.clients``) and never sees a transport.
"""

from __future__ import annotations

import functools
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
from engine.api.ratelimit import RateLimitedTransport
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


def route_of(request: HttpRequest) -> str:
    return _route(request.method, request.url)


@functools.lru_cache(maxsize=4096)  # a run sends a handful of URLs per project, over and over
def _route(method: str, url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    if len(parts) >= 2 and parts[0] == "v3" and parts[1] != "auth":
        parts[1] = "{project_id}"
    return f"{method} /{'/'.join(parts)}"


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
    """A client per target over one transport stack, shared by every target of the run;
    ``telemetry`` traces every request they send."""
    limiter = FairLimiter(runbook.concurrency, runbook.concurrency_per_target)
    wire_side: Transport = transport if stop is None else StopGate(transport, stop)
    counter = CountingTransport(
        RateLimitedTransport(FairTransport(wire_side, limiter), runbook.rate_limit_per_s)
    )
    language = Language(runbook.language)
    clients = {
        target: DrsClient(
            transport=counter,
            endpoint=connection.endpoint,
            project_id=target.project_id,
            auth=connection.auth,
            language=language,
            resilience=resilience,
            telemetry=telemetry,
        )
        for target, connection in connections.items()
    }
    return Wired(
        clients=clients,
        endpoints={target: c.endpoint for target, c in connections.items()},
        counter=counter,
        limiter=limiter,
        resilience=resilience,
    )


def emulator_connections(
    runbook: Runbook, login: EmulatorLogin, transport: Transport
) -> dict[Target, Connection]:
    """Every target through the emulator, authenticated as its demo user (IAM password)."""
    return {
        target: Connection(
            endpoint=login.url,
            auth=IamPasswordAuth(
                transport=transport,
                iam_endpoint=login.url,
                user=login.user,
                password=login.password,
                domain=login.domain,
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
    transport: Transport,
    resilience: Resilience,
) -> dict[Target, Connection]:
    """Real endpoints (or one ``endpoint`` for all), with credentials resolved per target."""
    connections: dict[Target, Connection] = {}
    for target in runbook.targets:
        base = endpoint or target.endpoint or drs_endpoint(target.region or "")
        try:
            auth = resolve_credentials(
                explicit=credentials,
                env=os.environ,
                project_id=target.project_id,
                region=target.region,
                iam_endpoint=endpoint or (None if target.region else base),
                transport=transport,
                resilience=resilience,
            )
        except UsageError as exc:
            raise UsageError(
                f"{exc} (or use --emulator to run against the embedded emulator)"
            ) from exc
        connections[target] = Connection(endpoint=base.rstrip("/"), auth=auth)
    logger.info("credentials: %s", describe_source(explicit=credentials, env=os.environ))
    return connections
