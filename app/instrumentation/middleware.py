"""One pure-ASGI middleware for request metrics, the server span, the request id and the access line.

Pure ASGI (no BaseHTTPMiddleware): the response passes straight through `send`, so streaming and
background tasks behave. Per request it adds one to a started count, appends one tuple of
observations (folded into the totals in batches, `app/request_stats.py`), sets the request-id context
and returns the `X-Request-ID` header; the `send` wrapper is a plain function handing back `send`'s
awaitable, so it adds no coroutine frame per message.

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

import functools
import itertools
import os
import random
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from telltale.app.instrumentation.http_metrics import KNOWN_METHODS, UNMATCHED, HttpMetrics
from telltale.app.instrumentation.logs import REQUEST, RequestContext, write_access_line
from telltale.app.instrumentation.server_span import LeanServerSpan, UnsampledRootSpan

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
        self._started = metrics.started if metrics is not None else None
        self._start_counts: dict[str, int] | None = getattr(metrics, "started_counts", None)
        # lean metrics (one process): the observation is appended here directly and folded in batches
        self._pending: list | None = getattr(metrics, "pending", None)
        self._flush_at: int = getattr(metrics, "FLUSH_AT", 0)
        self._observe = metrics.observe if metrics is not None else None
        self.tracer = tracer
        self.metrics_exclude = frozenset(metrics_exclude)
        self.trace_exclude = frozenset(trace_exclude)
        self.probes = self.metrics_exclude & self.trace_exclude if metrics is not None else self.trace_exclude
        self.access_log = access_log
        # request ids: 24 hex digits, a random per-process prefix (top bit set, so the width is fixed) and a
        # counter; unique without a syscall per request, formatted in one step
        self._ids = itertools.count((int.from_bytes(os.urandom(8)) | 1 << 63) << 32)
        if tracer is not None:
            from opentelemetry import context as otel_context
            from opentelemetry import propagate, trace
            from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation import _SPAN_KEY
            from telltale.app.instrumentation.tracing import runtime_context_var

            self._extract = propagate.extract
            self._set_span = trace.set_span_in_context
            var = runtime_context_var()
            # attach and detach: the runtime ContextVar's own set and reset where it is the default one
            self._attach = var.set if var is not None else otel_context.attach
            self._detach = var.reset if var is not None else otel_context.detach
            self._current_context = var.get if var is not None else None
            self._context_type = Context
            self._span_key = _SPAN_KEY
            self._server = SpanKind.SERVER
            self._error = Status(StatusCode.ERROR)
            self._suppressed = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)
            self._trace_headers = frozenset(k.encode() for k in propagate.get_global_textmap().fields) or frozenset(
                {b"traceparent"}
            )
            from opentelemetry.trace import get_current_span
            from telltale.app.instrumentation.server_span import LeanSpans
            from telltale.app.instrumentation.tracing import root_sampling_bound

            # an SDK tracer: server spans are lean (app/server_span.py); any other tracer is used as is
            sdk = all(hasattr(tracer, a) for a in ("sampler", "id_generator", "span_processor", "resource"))
            self._lean = LeanSpans(tracer, tracer.span_processor) if sdk else None
            self._bound = root_sampling_bound(tracer) if sdk else None
            self._new_trace_id = _trace_id_source(tracer.id_generator) if sdk else None
            self._new_span_id = tracer.id_generator.generate_span_id if sdk else None
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
            token = self._attach(self._suppressed)
            try:
                await self.app(scope, receive, send)
            finally:
                self._detach(token)
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
            request_id = b"%x" % next(self._ids)
        ctx_token = REQUEST.set(RequestContext(request_id))

        measured = self._observe is not None and path not in self.metrics_exclude
        quiet = path in self.trace_exclude
        span: Any = None
        otel_token = None
        if tracer is not None:
            if quiet:
                otel_token = self._attach(self._suppressed)
            else:
                span, otel_token = self._start_span(scope, method, path, traced_request)

        status = 0
        response_size = 0
        if measured:
            counts = self._start_counts
            if counts is not None:
                counts[method] += 1
            else:
                self._started(method)  # type: ignore[misc]

        def send_wrapper(message: Message) -> Awaitable[None]:
            # a plain function handing back `send`'s awaitable: no coroutine frame of its own per message
            nonlocal status, response_size
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_HEADER, request_id)]
            elif kind == "http.response.body":
                response_size += len(message.get("body", b""))
            return send(message)

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
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            sampled = None
            if span is not None and type(span) is not UnsampledRootSpan:
                sampled = self._end_span(span, method, route, status, failed)
            if measured:
                pending = self._pending
                if pending is not None:
                    pending.append(
                        (
                            method,
                            route,
                            status,
                            duration,
                            content_length,
                            response_size,
                            (sampled, time.time()) if sampled is not None else None,
                        )
                    )
                    if len(pending) >= self._flush_at:
                        self.metrics.flush()  # type: ignore[union-attr]
                else:
                    self._observe(
                        method,
                        route,
                        status,
                        duration,
                        content_length,  # type: ignore[misc]
                        response_size,
                        sampled,
                    )
            if self.access_log and not quiet:
                write_access_line(method, route, path, status, duration)
            if otel_token is not None:
                self._detach(otel_token)
            REQUEST.reset(ctx_token)

    def _start_span(self, scope: Scope, method: str, path: str, traced_request: bool) -> tuple[Any, Any]:
        """The request's server span (or the unsampled stand-in that carries its trace context), attached."""
        parent = self._extract(scope["headers"], getter=_GETTER) if traced_request else None
        lean = self._lean
        if lean is None:
            span = self.tracer.start_span(
                method, context=parent, kind=self._server, attributes={"http.request.method": method, "url.path": path}
            )
        elif parent is None and self._bound is not None:
            # a new root under a ratio sampler: the sampler's own test, without its call; a dropped
            # request gets a span whose ids are drawn only if something asks for them
            trace_id = self._new_trace_id()
            if trace_id & 0xFFFFFFFFFFFFFFFF >= self._bound:
                span = UnsampledRootSpan(trace_id, self._new_span_id)
            else:
                span = lean.start_sampled_root(method, trace_id, {"http.request.method": method, "url.path": path})
        else:
            remote = self._current_span(parent).get_span_context() if parent is not None else None
            span = lean.start(method, parent, remote, {"http.request.method": method, "url.path": path})
        current = self._current_context
        if current is None:
            return span, self._attach(self._set_span(span, parent))
        # what set_span_in_context does: a copy of the parent (or current) context with the span in it
        return span, self._attach(
            self._context_type({**(parent if parent is not None else current()), self._span_key: span})
        )

    def _end_span(self, span: Any, method: str, route: str, status: int, failed: BaseException | None) -> Any:
        """Name, label and end the server span; its span context when sampled (the duration's exemplar)."""
        if not span.is_recording():
            return None
        span.update_name(f"{method} {route}")
        if type(span) is LeanServerSpan:
            span.set_own_attributes(route, status)
        else:
            span.set_attributes({"http.route": route, "http.response.status_code": status})
        if failed is not None:
            span.record_exception(failed)
        if status >= 500:
            span.set_status(self._error)
        span.end()
        if type(span) is LeanServerSpan:
            return span.get_span_context() if span.sampled else None
        sc = span.get_span_context()
        return sc if sc.trace_flags.sampled else None


def _trace_id_source(ids: Any) -> Any:
    """The id generator's trace-id draw; for the SDK's default one, the same draw as one C call."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    if type(ids) is RandomIdGenerator:
        draw = functools.partial(random.getrandbits, 128)
        return lambda: draw() or ids.generate_trace_id()  # 0 is invalid: the SDK draws again
    return ids.generate_trace_id


def instrument_app(app: Any, settings: Any, registry: Any, health_collector: Any) -> None:
    """Wire request metrics, event metrics, tracing and the exposition registry into `app`."""
    from telltale.app.events import EventMetrics
    from telltale.app.instrumentation.exposition import Renderer
    from telltale.app.instrumentation.http_metrics import exposition_registry
    from telltale.app.instrumentation.request_stats import make_http_metrics
    from telltale.app.instrumentation.tracing import register_span_counters, setup_tracing

    http = make_http_metrics(registry)
    app.state.http_metrics = http
    app.state.event_metrics = EventMetrics(registry, settings.organization_label_cap)
    register_span_counters(registry)
    app.state.exposition_registry = exposition_registry(registry, health_collector, http)
    app.state.renderer = Renderer(settings.metrics_render)
    tracer = setup_tracing(settings.otel_enabled, settings.otel_export_process)
    app.add_middleware(
        TelemetryMiddleware,
        metrics=http,
        tracer=tracer,
        metrics_exclude=settings.metrics_exclude_paths,
        trace_exclude=settings.trace_exclude_paths,
        access_log=settings.access_log,
    )
