"""One pure-ASGI middleware for request metrics, the server span, the request id and the access line.

Pure ASGI (no BaseHTTPMiddleware): the response passes straight through `send`, so streaming and
background tasks behave, and the per-request cost is a few dict lookups and lock-protected adds.

- `route` is the matched route's template (`scope["route"].path`, set by Starlette's router on
  the scope we share) or `<unmatched>`: unknown paths never create series.
- The clock stops when the application returns, i.e. after the last body chunk was sent; every
  request is counted exactly once, in `finally`. An exception is counted as a 500 and re-raised.
- A path in both exclusion lists (by default `/metrics` and `/health/live`) passes straight through:
  no metrics, span, access line or request id — a kubelet's probe costs nothing here.
- Paths in `metrics_exclude_paths` are not measured; paths in `trace_exclude_paths` make no span
  and run with OpenTelemetry instrumentation suppressed, so the database and Redis calls beneath a
  readiness probe make no orphan spans either; they also write no access line.
- The server span is started here, named `METHOD /route/template` once routing is known, with W3C
  trace context extracted from the request; its trace id becomes the duration's exemplar.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import REQUEST, RequestContext, write_access_line
from app.metrics import KNOWN_METHODS, UNMATCHED, HttpMetrics

_REQUEST_ID_HEADER = b"x-request-id"
_MAX_REQUEST_ID = 128
_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and all(c in _ID_CHARS for c in value)


class _HeaderGetter:
    """OpenTelemetry Getter over ASGI's raw header list (only used when a trace header is present)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        k = key.encode("latin-1")
        values = [v.decode("latin-1") for n, v in carrier if n == k]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [n.decode("latin-1") for n, _ in carrier]


_GETTER = _HeaderGetter()
_now = time.perf_counter


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics | None,
        tracer: Any = None,
        metrics_exclude: Iterable[str] = ("/metrics", "/health/live"),
        trace_exclude: Iterable[str] = ("/metrics", "/health/live", "/health/ready"),
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.metrics_exclude = frozenset(metrics_exclude)
        self.trace_exclude = frozenset(trace_exclude)
        self.probes = self.metrics_exclude & self.trace_exclude if metrics is not None else self.trace_exclude
        self.access_log = access_log
        # request ids: a random per-process prefix and a counter, unique without a syscall per request
        self._id_prefix = os.urandom(8).hex().encode()
        self._ids = itertools.count()
        if tracer is not None:
            from opentelemetry import context as otel_context
            from opentelemetry import propagate, trace
            from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
            from opentelemetry.trace import SpanKind, Status, StatusCode

            self._ctx = otel_context
            self._extract = propagate.extract
            self._set_span = trace.set_span_in_context
            self._server = SpanKind.SERVER
            self._error = Status(StatusCode.ERROR)
            self._suppressed = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)
            self._trace_headers = frozenset(
                k.encode() for k in propagate.get_global_textmap().fields) or frozenset({b"traceparent"})
            from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, get_current_span

            from app.server_span import LeanSpans
            from app.telemetry import root_sampling_bound

            # an SDK tracer: server spans are lean (app/server_span.py); any other tracer is used as is
            sdk = all(hasattr(tracer, a) for a in ("sampler", "id_generator", "span_processor", "resource"))
            self._lean = LeanSpans(tracer, tracer.span_processor) if sdk else None
            self._bound = root_sampling_bound(tracer) if sdk else None
            self._trace_ids = tracer.id_generator if sdk else None
            self._unsampled = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
            self._span_context = SpanContext
            self._non_recording = NonRecordingSpan
            self._current_span = get_current_span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self.probes:
            # excluded from metrics, traces and the access log alike (liveness, /metrics): nothing to
            # measure, so no request id either; only keep instrumentation beneath it quiet
            if self.tracer is None:
                await self.app(scope, receive, send)
                return
            token = self._ctx.attach(self._suppressed)
            try:
                await self.app(scope, receive, send)
            finally:
                self._ctx.detach(token)
            return
        start = _now()
        method: str = scope["method"]
        if method not in KNOWN_METHODS:
            method = "OTHER"
        request_id: bytes | None = None
        content_length = 0
        traced_request = False
        tracer = self.tracer
        trace_headers = self._trace_headers if tracer is not None else ()
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_HEADER:
                if _valid_request_id(value):
                    request_id = value
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    pass
            elif name in trace_headers:
                traced_request = True
        if request_id is None:
            request_id = b"%s%08x" % (self._id_prefix, next(self._ids))
        ctx = RequestContext(request_id.decode("latin-1"))
        ctx_token = REQUEST.set(ctx)

        measured = self.metrics is not None and path not in self.metrics_exclude
        quiet = path in self.trace_exclude
        span = None
        otel_token = None
        if tracer is not None:
            if quiet:
                otel_token = self._ctx.attach(self._suppressed)
            else:
                parent = self._extract(scope["headers"], getter=_GETTER) if traced_request else None
                attributes = {"http.request.method": method, "url.path": path}
                lean = self._lean
                if lean is None:
                    span = tracer.start_span(method, context=parent, kind=self._server, attributes=attributes)
                elif parent is None and self._bound is not None:
                    # a new root under a ratio sampler: the dropped ones cost one random draw
                    trace_id = self._trace_ids.generate_trace_id()
                    if trace_id & 0xFFFFFFFFFFFFFFFF >= self._bound:
                        span = self._non_recording(self._span_context(
                            trace_id, self._trace_ids.generate_span_id(), False, self._unsampled))
                    else:
                        span = lean.start(method, None, None, attributes, trace_id)
                else:
                    remote = self._current_span(parent).get_span_context() if parent is not None else None
                    span = lean.start(method, parent, remote, attributes)
                otel_token = self._ctx.attach(self._set_span(span, parent))

        status = 0
        response_size = 0
        if measured:
            self.metrics.started(method)  # type: ignore[union-attr]

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_size
            if message["type"] == "http.response.body":
                response_size += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_HEADER, request_id)]
            await send(message)

        failed: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            status = 500
            failed = exc
            raise
        finally:
            duration = _now() - start
            if status == 0:
                status = 499  # cancelled before a response started (client gone, server stopping)
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or UNMATCHED
            exemplar = None
            if span is not None and span.is_recording():
                span.update_name(f"{method} {route}")
                span.set_attributes({"http.route": route, "http.response.status_code": status})
                if failed is not None:
                    span.record_exception(failed)
                if status >= 500:
                    span.set_status(self._error)
                sc = span.get_span_context()
                if sc.trace_flags.sampled:
                    exemplar = {"trace_id": format(sc.trace_id, "032x"), "span_id": format(sc.span_id, "016x")}
            if measured:
                self.metrics.observe(method, route, status, duration, content_length,  # type: ignore[union-attr]
                                     response_size, exemplar)
            if self.access_log and not quiet:
                write_access_line(method, route, path, status, duration)
            if span is not None:
                span.end()
            if otel_token is not None:
                self._ctx.detach(otel_token)
            REQUEST.reset(ctx_token)


def instrument_app(app: Any, settings: Any, registry: Any, health_collector: Any) -> None:
    """Wire request metrics, event metrics, tracing and the exposition registry into `app`."""
    from app.events import EventMetrics
    from app.exposition import Renderer
    from app.metrics import exposition_registry
    from app.request_stats import make_http_metrics
    from app.telemetry import register_span_counters, setup_tracing

    http = make_http_metrics(registry)
    app.state.http_metrics = http
    app.state.event_metrics = EventMetrics(registry, settings.organization_label_cap)
    register_span_counters(registry)
    app.state.exposition_registry = exposition_registry(registry, health_collector, http)
    app.state.renderer = Renderer(settings.metrics_render)
    tracer = setup_tracing(settings.otel_enabled, settings.otel_export_process)
    app.add_middleware(TelemetryMiddleware, metrics=http, tracer=tracer,
                       metrics_exclude=settings.metrics_exclude_paths, trace_exclude=settings.trace_exclude_paths,
                       access_log=settings.access_log)
