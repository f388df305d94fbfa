"""A run's traces and metrics through OpenTelemetry: the one place the engine speaks to it.

Optional (the ``otel`` extra: ``pip install '.[otel]'`` in a checkout) and off unless asked
for: ``from_env`` gives a ``Telemetry`` only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not ``true``), and a
Python caller may pass its own providers (``Telemetry(tracer_provider=..., meter_provider=...)``,
how the tests read spans in memory). Otherwise the engine holds ``None`` where a ``Telemetry``
would be, checks it before each span or count, and imports nothing of ``opentelemetry``: this
module imports it only in ``Telemetry.__init__`` and ``from_env``.

Spans (docs/observability.md lists every attribute)::

    runbook.run                         one per run (or plan): runbook, run id, exit code, verdict
      runbook.target                    one per target: label, region, project id
        runbook.step                    one per step run in the target: id, action, status
          POST /v3/{project_id}/jobs    one per request sent (each retry its own): route
                                        template, status code, DRS error code, request id

Parents follow ``contextvars``, so the asyncio tasks a step starts (chunks sent together) put
their calls under it. Metrics: ``runbook.requests``, ``runbook.throttled``, ``runbook.retries``,
``runbook.jobs`` (by disposition, at the end) and the ``runbook.time_to_recover`` histogram.

Not an exporter of secrets: no header, no URL (the route template stands for it: project ids
folded, no query), no request body is ever an attribute. Not a hang either: ``close`` flushes
within ``FLUSH_BOUND_S`` and the run goes on without its telemetry if the collector is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import Span, TracerProvider

    from engine.api.transport import HttpResponse
    from engine.report.document import Report

logger = logging.getLogger(__name__)

SERVICE_NAME = "drs-runbook"
SCOPE = "engine"  # the instrumentation scope every span and instrument is made under
# Any of these turns telemetry on from the environment; the exporters read them (and the rest
# of the OTEL_* variables: headers, timeouts) themselves.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
METRICS_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
# How long the end of a run waits for the collector to take its spans and metrics.
FLUSH_BOUND_S = 5.0


def enabled_by(env: Mapping[str, str]) -> bool:
    """Whether ``env`` asks for telemetry: an OTLP endpoint set, the SDK not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


def from_env(env: Mapping[str, str]) -> Telemetry | None:
    """The run's telemetry as ``env`` configures it (OTLP over HTTP), or None: not asked for,
    or asked for without the ``[otel]`` extra installed (said as a warning)."""
    if not enabled_by(env):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        # drs-runbook is on no public index: the extra comes from where the engine came from
        logger.warning(
            "%s is set but the [otel] extra is not installed (no %s), so the run goes on "
            "without telemetry; install the otel extra from where drs-runbook was installed "
            "(pip install '<your source>[otel]', such as '.[otel]' in a checkout) or pip "
            "install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http",
            next(name for name in ENDPOINT_VARIABLES if env.get(name)),
            exc.name,
        )
        return None
    service = resource()
    # shutdown_on_exit=False: ``close`` shuts them down within its bound; the SDK's own exit
    # hook would wait up to 30 s for a collector that is down.
    tracer_provider = TracerProvider(resource=service, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    readers = (
        [PeriodicExportingMetricReader(OTLPMetricExporter())]
        if any(env.get(name) for name in METRICS_VARIABLES)
        else []
    )
    meter_provider = MeterProvider(resource=service, metric_readers=readers, shutdown_on_exit=False)
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, owned=True)


def resource() -> Resource:
    """``service.name`` drs-runbook and ``service.version``, over what ``OTEL_RESOURCE_ATTRIBUTES``
    adds; for a caller that makes its own providers."""
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})


class Telemetry:
    """Spans and instruments of one run (or of many: the instruments are cumulative).

    ``tracer_provider`` / ``meter_provider``: either may be left out (no spans, or no metrics).
    ``owned``: the providers were made for the run (``from_env``) and ``close`` shuts them
    down; a caller's own are only flushed.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        owned: bool = False,
    ) -> None:
        from opentelemetry import metrics, trace

        from engine.api.transport import error_fields

        self._trace = trace
        self._error_fields = error_fields
        self._providers: tuple[Any, ...] = tuple(
            p for p in (tracer_provider, meter_provider) if p is not None
        )
        self._owned = owned
        self._tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer(
            SCOPE, __version__
        )
        meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter(SCOPE, __version__)
        self._requests = meter.create_counter(
            "runbook.requests", unit="{request}", description="DRS requests sent, retries included"
        )
        self._throttled = meter.create_counter(
            "runbook.throttled",
            unit="{answer}",
            description="answers asking to slow down: 429 (APIGW.0308) or DRS.M01503",
        )
        self._retries = meter.create_counter(
            "runbook.retries",
            unit="{request}",
            description="requests sent again after a transient failure",
        )
        self._jobs = meter.create_counter(
            "runbook.jobs", unit="{job}", description="jobs by their final disposition"
        )
        self._time_to_recover = meter.create_histogram(
            "runbook.time_to_recover",
            unit="s",
            description="from a job's retry (or resume) to its being seen healthy",
        )

    # ------------------------------------------------------------------------- spans

    @contextlib.contextmanager
    def run_span(self, *, runbook: str, run_id: str, plan: bool) -> Iterator[Span]:
        """The run's span, current within the block: what the executor starts is under it."""
        attributes: dict[str, str | bool] = {
            "runbook.name": runbook,
            "runbook.run_id": run_id,
            "runbook.plan": plan,
        }
        with self._tracer.start_as_current_span("runbook.run", attributes=attributes) as span:
            yield span

    def run_finished(self, span: Span, report: Report) -> None:
        """The run's outcome on its span; its jobs by disposition and times to recover."""
        span.set_attribute("runbook.exit_code", report.exit_code)
        span.set_attribute("runbook.verdict", report.verdict.value)  # as a notification's
        if report.drill is not None:
            span.set_attribute("runbook.drill.verdict", report.drill.verdict.value)
        span.set_attribute("runbook.jobs", report.totals.jobs)
        if report.exit_code != 0:
            span.set_status(self._trace.StatusCode.ERROR, f"exit code {report.exit_code}")
        dispositions: Counter[str] = Counter()
        for _, job in report.jobs():
            dispositions[job.disposition.value] += 1
            if job.time_to_recover_s is not None:
                self._time_to_recover.record(
                    job.time_to_recover_s, {"runbook.name": report.runbook.name}
                )
        for disposition, count in dispositions.items():
            self._jobs.add(
                count, {"runbook.name": report.runbook.name, "runbook.disposition": disposition}
            )

    def target_span(self, *, label: str, project_id: str, region: str | None) -> Span:
        """A target's span, started under the current one (the run's) and not made current:
        it spans the run's segments, each a task of its own; end it with ``target_finished``."""
        attributes = {"runbook.target": label, "runbook.project_id": project_id}
        if region:
            attributes["cloud.region"] = region
        return self._tracer.start_span("runbook.target", attributes=attributes)

    def target_finished(self, span: Span, *, failure: str | None) -> None:
        if failure is not None:
            span.set_status(self._trace.StatusCode.ERROR, failure)
        span.end()

    @contextlib.contextmanager
    def step_span(self, parent: Span, *, step_id: str, action: str) -> Iterator[Span]:
        """A step's span under its target's, current within the block (its calls go under it)."""
        attributes = {"runbook.step.id": step_id, "runbook.step.action": action}
        context = self._trace.set_span_in_context(parent)
        with self._tracer.start_as_current_span(
            "runbook.step", context=context, attributes=attributes
        ) as span:
            yield span

    def step_finished(self, span: Span, *, status: str, attempts: int, message: str | None) -> None:
        """What became of the step (``message`` is the outcome's, redacted already)."""
        span.set_attribute("runbook.step.status", status)
        span.set_attribute("runbook.step.attempts", attempts)
        if status == "failed":
            span.set_status(self._trace.StatusCode.ERROR, message or "failed")

    def step_recorded(
        self,
        parent: Span,
        *,
        step_id: str,
        action: str,
        status: str,
        duration_s: float,
        message: str | None,
    ) -> None:
        """A step decided for every target at once (an approval): its span, after the fact,
        from when it was asked to now."""
        end = time.time_ns()
        span = self._tracer.start_span(
            "runbook.step",
            context=self._trace.set_span_in_context(parent),
            attributes={"runbook.step.id": step_id, "runbook.step.action": action},
            start_time=end - int(duration_s * 1e9),
        )
        self.step_finished(span, status=status, attempts=1, message=message)
        span.end(end_time=end)

    async def api_call(
        self,
        *,
        operation: str,
        method: str,
        route: str,
        resend_count: int,
        send: Callable[[], Awaitable[HttpResponse]],
    ) -> HttpResponse:
        """``send()`` inside a client span named ``METHOD route``; counts the request.

        ``route`` is the template (``/v3/{project_id}/jobs``), never the URL; ``resend_count``
        is 0 for a first send, n for the n-th retry."""
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.template": route,
            "drs.operation": operation,
        }
        if resend_count:
            attributes["http.request.resend_count"] = resend_count
        with self._tracer.start_as_current_span(
            f"{method} {route}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,  # a TransportError's text names the host: kept short below
            set_status_on_exception=False,
        ) as span:
            try:
                response = await send()
            except BaseException as exc:
                # No answer (a TransportError), or cancelled with the step.
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(self._trace.StatusCode.ERROR, type(exc).__name__)
                self._requests.add(1, {"url.template": route, "http.status_class": "none"})
                raise
            status = response.status
            span.set_attribute("http.response.status_code", status)
            if (request_id := response.request_id) is not None:
                span.set_attribute("drs.request_id", request_id)
            # DRS.M01504 comes as a 202 with an error body; an ordinary 202 has no error code.
            code = self._error_fields(response)[0] if not response.ok or status == 202 else None
            if code is not None and not (response.ok and code.startswith("HTTP_")):
                span.set_attribute("drs.error_code", code)
                span.set_attribute("error.type", code)
                span.set_status(self._trace.StatusCode.ERROR, f"HTTP {status} {code}")
            self._requests.add(
                1, {"url.template": route, "http.status_class": f"{status // 100}xx"}
            )
            return response

    # ------------------------------------------------------------------------- counts

    def throttled(self, operation: str) -> None:
        self._throttled.add(1, {"drs.operation": operation})

    def retried(self, operation: str) -> None:
        self._retries.add(1, {"drs.operation": operation})

    # ------------------------------------------------------------------------- the end

    async def close(self) -> None:
        """Flush the run's spans and metrics (shut down providers made for it) within
        ``FLUSH_BOUND_S``; past it, say so and let the run end without them.

        The SDK flushes by blocking (its exporters are threads of their own): that call goes to
        a daemon thread, so a collector that never answers holds neither the event loop nor
        the process's exit."""
        if not self._providers:
            return
        loop = asyncio.get_running_loop()
        flushed: asyncio.Future[None] = loop.create_future()
        owned = self._owned
        providers = self._providers

        def flush() -> None:
            try:
                for provider in providers:
                    if owned:
                        provider.shutdown()
                    else:
                        provider.force_flush()
            except Exception:  # the SDK's failure must not become the run's
                logger.warning("telemetry: flushing failed", exc_info=True)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(_settle, flushed)

        # In the run's context, so what the SDK logs while it flushes names the run.
        in_context = contextvars.copy_context()
        threading.Thread(
            target=in_context.run, args=(flush,), name="runbook-telemetry-flush", daemon=True
        ).start()
        try:
            async with asyncio.timeout(FLUSH_BOUND_S):
                await flushed
        except TimeoutError:
            logger.warning(
                "telemetry: the collector did not take the run's spans and metrics within "
                "%gs; the run ends without them",
                FLUSH_BOUND_S,
            )


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled by the bound meanwhile
        future.set_result(None)
