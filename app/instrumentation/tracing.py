"""OpenTelemetry tracing, configured from the standard `OTEL_*` environment variables.

No endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SDK_DISABLED=true`
or `TELLTALE_OTEL_ENABLED=false`: no provider, no exporter, no instrumentation, and the middleware
makes no span at all. Otherwise one process-wide TracerProvider (resource from `OTEL_SERVICE_NAME`
and `OTEL_RESOURCE_ATTRIBUTES`, sampler from `OTEL_TRACES_SAMPLER`/`_ARG`), a batching
processor with a bounded queue (`app/span_queue.py`, `OTEL_BSP_*`) feeding the OTLP/HTTP exporter on a
background thread, and asyncpg, redis and httpx instrumented. A collector that is down or slow costs
spans, never requests: spans that do not fit the queue or fail to export are counted in
`telltale_otel_spans_dropped_total{reason}`.

Health probes run under `wrap_probe`: inside a traced request each check gets one child span
(`check <name>`) carrying its status; outside one (a readiness probe, the background publisher)
instrumentation is suppressed so the database and Redis calls make no orphan spans.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from telltale.app import __version__
from telltale.app.instrumentation import _compat
from telltale.checks.base import Check, Result, Status
from telltale.config.redact import redact_url

log = logging.getLogger("telltale.telemetry")


class _SpanCounts:
    """Process-wide span counters as plain integers: each is only ever written by one thread (queue_full
    by the event loop, the others by the export thread), and no lock is held across a fork of the
    /metrics renderer (app/exposition.py)."""

    def __init__(self) -> None:
        self.queue_full = 0
        self.export_failed = 0
        self.exported = 0


SPAN_COUNTS = _SpanCounts()


class _SpanCounters:
    """Puts the process-wide span counters in an app's registry."""

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        dropped = CounterMetricFamily(
            "telltale_otel_spans_dropped", "Spans lost before reaching the collector", labels=["reason"]
        )
        exported = CounterMetricFamily("telltale_otel_spans_exported", "Spans accepted by the collector", labels=[])
        return dropped, exported

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so a second registration of these names is refused."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        dropped, exported = self._families()
        dropped.add_metric(["queue_full"], SPAN_COUNTS.queue_full)
        dropped.add_metric(["export_failed"], SPAN_COUNTS.export_failed)
        exported.add_metric([], SPAN_COUNTS.exported)
        return dropped, exported


def register_span_counters(registry: CollectorRegistry) -> None:
    registry.register(_SpanCounters())  # type: ignore[arg-type]


_provider: Any = None
_tracer: Any = None
_queue: Any = None  # the provider's SpanQueue


def _count_queue_full() -> None:
    SPAN_COUNTS.queue_full += 1


def root_sampling_bound(tracer: Any) -> int | None:
    """The TraceIdRatioBased bound that decides new root spans, when that is the configured sampler
    (`traceidratio` or `parentbased_traceidratio`); None for any other sampler. The middleware draws a
    new root's trace id itself and skips all span work for the requests this bound drops."""
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = getattr(tracer, "sampler", None)
    if isinstance(sampler, ParentBased):
        delegates = _compat.parent_based_delegates(sampler)
        sampler = delegates["root"] if delegates is not None else None
    if isinstance(sampler, TraceIdRatioBased):
        return sampler.bound
    return None


def tracing_requested(enabled: bool = True) -> bool:
    if not enabled or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup_tracing(enabled: bool = True, export_in_child: bool = True) -> Any:
    """The process's tracer, configured once from the environment; None when tracing is off."""
    global _provider, _tracer, _queue
    if not tracing_requested(enabled):
        return None
    if _tracer is not None:
        return _tracer
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from telltale.app.instrumentation.span_queue import SpanQueue

    class CountingExporter(SpanExporter):
        def __init__(self, inner: SpanExporter) -> None:
            self.inner = inner

        def export(self, spans: Any) -> SpanExportResult:
            try:
                result = self.inner.export(spans)
            except Exception:  # never let the export thread die
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                SPAN_COUNTS.exported += len(spans)
            else:
                SPAN_COUNTS.export_failed += len(spans)
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return self.inner.force_flush(timeout_millis)

    attrs: dict[str, str] = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs["service.name"] = "telltale"
    provider = TracerProvider(resource=Resource.create(attrs))
    if export_in_child:
        from telltale.app.instrumentation.span_export import ChildProcessExporter

        exporter: SpanExporter = ChildProcessExporter()
    else:
        exporter = OTLPSpanExporter()
    queue = SpanQueue(CountingExporter(exporter), on_drop=_count_queue_full)
    provider.add_span_processor(queue)
    trace.set_tracer_provider(provider)
    _provider, _queue = provider, queue
    _instrument(provider)
    _tracer = provider.get_tracer("telltale", __version__)
    gone = _compat.missing()
    if gone:  # still correct, through the public API and the SDK's own span path
        log.warning("OpenTelemetry internals changed, tracing takes the slower path", extra={"missing": gone})
    log.info(
        "tracing on",
        extra={
            "endpoint": os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        },
    )
    return _tracer


def redact_client_span_url(span: Any, request: Any) -> None:
    """httpx's spans carry the full URL and strip only cloud signature parameters: an `access_token=` or
    `api_key=` of an HTTP dependency would reach the trace backend. Rewritten, redacted, before export."""
    if span is None or not span.is_recording():
        return
    url = redact_url(request.url)
    span.set_attribute("url.full", url)
    if span.attributes and "http.url" in span.attributes:  # the old semantic conventions' name
        span.set_attribute("http.url", url)


async def _redact_client_span_url_async(span: Any, request: Any) -> None:
    redact_client_span_url(span, request)


_URL_HOOKS = {"request_hook": redact_client_span_url, "async_request_hook": _redact_client_span_url_async}


def _instrument(provider: Any) -> None:
    for module, name in (
        ("opentelemetry.instrumentation.asyncpg", "AsyncPGInstrumentor"),
        ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
        ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    ):
        try:
            instrumentor = getattr(__import__(module, fromlist=[name]), name)()
            if not instrumentor.is_instrumented_by_opentelemetry:
                hooks = _URL_HOOKS if name == "HTTPXClientInstrumentor" else {}
                instrumentor.instrument(tracer_provider=provider, **hooks)
        except Exception as exc:  # a missing optional instrumentation must not stop the service
            log.warning("instrumentation unavailable", extra={"instrumentation": module, "error": str(exc)})


def force_flush(timeout_millis: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# --- health-check spans -------------------------------------------------------------------------
# The runner probes in a task of its own and reports the result from another, so the span waits here,
# by check name, for its status (a runner never runs the same check twice at once: single flight).
_pending: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def wrap_probe(check: Check) -> AsyncIterator[None]:
    """CheckRunner `wrap`: a child span per check inside a traced request, suppression outside one."""
    if _tracer is None:
        yield
        return
    from opentelemetry import context, trace

    parent = trace.get_current_span()
    if not parent.is_recording():
        token = context.attach(_compat.suppressed_context())
        try:
            yield
        finally:
            context.detach(token)
        return
    span = _tracer.start_span(
        f"check {check.name}",
        attributes={"telltale.check.name": check.name, "telltale.check.component": check.component},
    )
    token = context.attach(trace.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        span.record_exception(exc)
        raise
    finally:
        context.detach(token)
        old = _pending.pop(check.name, None)
        if old is not None:  # a result that never came (the run was cancelled): close it anyway
            old.end()
        _pending[check.name] = span  # ended by on_probe_result, which knows the check's status


def on_probe_result(result: Result) -> None:
    """CheckRunner `on_result`: the check's status on its span, then end it."""
    span = _pending.pop(result.name, None)
    if span is None:
        return
    from opentelemetry.trace import Status as OtelStatus
    from opentelemetry.trace import StatusCode

    span.set_attribute("telltale.check.status", result.status.value)
    span.set_attribute("telltale.check.latency_seconds", result.latency_seconds)
    if result.status is Status.UNHEALTHY:
        span.set_status(OtelStatus(StatusCode.ERROR, (result.error or result.message)[:200]))
    span.end()


def shutdown() -> None:
    """At the end of the app's lifespan: flush pending spans; mark this worker's live gauges dead."""
    force_flush(2000)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
