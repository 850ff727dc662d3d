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
  trace context extracted from the request; its trace id becomes the duration's exemplar. Lean spans
  (`server_span.py`) only where they match the SDK's; any other tracer's own `start_span` otherwise.

Typed seams instead of probes: the metrics sink is a `RequestMetricsSink` (both implementations are);
a `BatchedRequestMetrics` (the one-process `LeanHttpMetrics`) also exposes its pending batch, which the
middleware appends to directly. The span is ended through `ServerSpanEnd`, whichever path made it.
"""

from __future__ import annotations

import binascii
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from opentelemetry.propagators.textmap import Getter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from telltale.app.instrumentation.http_metrics import KNOWN_METHODS, UNMATCHED
from telltale.app.instrumentation.logs import REQUEST, RequestContext, write_access_line

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext
    from telltale.app.instrumentation.request_stats import Observation
    from telltale.app.instrumentation.server_span import ServerSpanEnd

_REQUEST_ID_HEADER = b"x-request-id"
_MAX_REQUEST_ID = 128
_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class RequestMetricsSink(Protocol):
    """Where the middleware records requests: `http_metrics.HttpMetrics` (several workers) and
    `request_stats.LeanHttpMetrics` (one process) both are one."""

    def started(self, method: str) -> None:
        """A request began (the in-progress gauge)."""
        ...

    def observe(
        self,
        method: str,
        route: str,
        status: int,
        duration: float,
        request_size: int,
        response_size: int,
        sampled: SpanContext | None,
    ) -> None:
        """A request finished; `sampled` is its span context when its span was sampled (the exemplar)."""
        ...


@runtime_checkable
class BatchedRequestMetrics(RequestMetricsSink, Protocol):
    """A sink that folds observations in batches: the middleware adds to `started_counts` and appends
    to `pending` itself (no call per request), and calls `flush` every `FLUSH_AT` observations."""

    FLUSH_AT: int
    pending: list[Observation]
    started_counts: dict[str, int]

    def flush(self) -> None: ...


class _StartedCounts(dict[str, int]):
    """`started_counts` for a sink that counts starts itself: each increment becomes `started(method)`."""

    def __init__(self, sink: RequestMetricsSink) -> None:
        super().__init__(dict.fromkeys(KNOWN_METHODS | {"OTHER"}, 0))
        self.sink = sink

    def __setitem__(self, method: str, value: int) -> None:
        self.sink.started(method)


class _OneAtATime:
    """A `BatchedRequestMetrics` over a sink that takes each observation as it comes (prometheus-client's
    metrics under several workers): a batch of one, handed on at once. The middleware then has one way
    to record whatever the sink."""

    FLUSH_AT = 1

    def __init__(self, sink: RequestMetricsSink) -> None:
        self.sink = sink
        self.pending: list[Observation] = []
        self.started_counts: dict[str, int] = _StartedCounts(sink)

    def started(self, method: str) -> None:
        self.sink.started(method)

    def observe(
        self,
        method: str,
        route: str,
        status: int,
        duration: float,
        request_size: int,
        response_size: int,
        sampled: SpanContext | None,
    ) -> None:
        self.sink.observe(method, route, status, duration, request_size, response_size, sampled)

    def flush(self) -> None:
        pending = self.pending
        observe = self.sink.observe
        while pending:
            method, route, status, duration, request_size, response_size, exemplar = pending.pop(0)
            observe(method, route, status, duration, request_size, response_size, exemplar and exemplar[0])


def as_batched(sink: RequestMetricsSink) -> BatchedRequestMetrics:
    """The sink itself when it batches (`LeanHttpMetrics`), else a batch-of-one adapter over it."""
    return sink if isinstance(sink, BatchedRequestMetrics) else _OneAtATime(sink)


def _valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and all(c in _ID_CHARS for c in value)


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """OpenTelemetry Getter over ASGI's raw header list (only used when a trace header is present)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        k = key.encode("latin-1")
        values = [v.decode("latin-1") for n, v in carrier if n == k]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [n.decode("latin-1") for n, _ in carrier]


_GETTER = _HeaderGetter()
# generated request ids: 24 hex digits, 96 random bits each (unique across processes and restarts with high
# probability), made in blocks by one urandom read hexlified and split in C: ~700 instructions a request
# with the pop, against ~1,450 for formatting a counter per request. Popped from the end; a forked child
# starts with none of its parent's.
_ID_BLOCK = 512
_ID_POOL: list[bytes] = []
os.register_at_fork(after_in_child=_ID_POOL.clear)


def _refill_request_ids() -> bytes:
    """The pool is empty: fill it with a new block and take one."""
    _ID_POOL[:] = binascii.hexlify(os.urandom(12 * _ID_BLOCK), b" ", 12).split()
    return _ID_POOL.pop()


_now = time.perf_counter
_getrandbits = random.getrandbits
_new_object = object.__new__


class _Tracing:
    """What the middleware needs from OpenTelemetry, resolved once: the tracer, the lean span maker when
    the tracer qualifies (`server_span.lean_spans`), and the cheapest correct way to attach a context."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind
        from telltale.app.instrumentation import _compat
        from telltale.app.instrumentation.server_span import SdkServerSpan, UnsampledRootSpan, lean_spans
        from telltale.app.instrumentation.tracing import root_sampling_bound

        self.tracer = tracer
        self.extract = propagate.extract
        self.set_span = trace.set_span_in_context
        self.current_span = trace.get_current_span
        self.kind = SpanKind.SERVER
        var = _compat.runtime_context_var()
        # attach and detach: the runtime ContextVar's own set and reset where it is the default one
        self.attach: Callable[[Any], Any] = var.set if var is not None else otel_context.attach
        self.detach: Callable[[Any], Any] = var.reset if var is not None else otel_context.detach
        self.current: Callable[[], Any] = var.get if var is not None else otel_context.get_current
        # the request's context as one dict copy (what set_span_in_context makes), where the key is known
        self.span_key = _compat.SPAN_KEY if var is not None else None
        self.context_type = Context
        self.sdk_span_end = SdkServerSpan
        self.unsampled_root = UnsampledRootSpan
        self.suppressed = _compat.suppressed_context()
        fields = propagate.get_global_textmap().fields
        self.trace_headers = frozenset(k.encode() for k in fields) or frozenset({b"traceparent"})
        self.lean = lean_spans(tracer)
        # a new root under a ratio sampler: the middleware draws the trace id and applies the sampler's test
        self.bound = root_sampling_bound(tracer) if self.lean is not None else None
        self.new_trace_id = _trace_id_source() if self.lean is not None else None
        self.new_span_id = tracer.id_generator.generate_span_id if self.lean is not None else None
        # the usual request (no trace header, nothing current, a ratio sampler, the known context key) is
        # started inline in the middleware: `start`'s own call is ~1,500 instructions per request
        self.inline_root = self.bound is not None and self.span_key is not None

    def start(self, scope: Scope, method: str, path: str, traced_request: bool) -> tuple[ServerSpanEnd | None, Any]:
        """The request's server span (or the unsampled stand-in that carries its trace context), attached;
        returns how to end it (None: nothing to end) and the context token."""
        parent = self.extract(scope["headers"], getter=_GETTER) if traced_request else None
        lean = self.lean
        end: ServerSpanEnd | None
        if lean is None:
            attributes: dict[str, Any] = {"http.request.method": method, "url.path": path}
            span = self.tracer.start_span(method, context=parent, kind=self.kind, attributes=attributes)
            end = self.sdk_span_end(span) if span.is_recording() else None
            return end, self.attach(self.set_span(span, parent))
        base = parent if parent is not None else self.current()
        # the parent: the extracted one, else a span already current (the SDK's start_span takes it too)
        remote = self.current_span(base).get_span_context() if base else None
        if remote is None and self.bound is not None:
            # a new root under a ratio sampler: the sampler's own test, without its call; a dropped
            # request gets a span whose ids are drawn only if something asks for them, and no attributes
            # (the dict is built only for a span that records). The draw is the random id generator's
            # own (getrandbits(128)) as one C call; 0 is invalid, and the SDK draws again.
            trace_id = _getrandbits(128) or self.new_trace_id()  # type: ignore[misc]
            if trace_id & 0xFFFFFFFFFFFFFFFF >= self.bound:
                span, end = self.unsampled_root(trace_id, self.new_span_id), None  # type: ignore[arg-type]
            else:
                span, end = lean.start_sampled_root(method, trace_id, {"http.request.method": method, "url.path": path})
        else:
            span, end = lean.start(method, parent, remote, {"http.request.method": method, "url.path": path})
        if self.span_key is None:
            return end, self.attach(self.set_span(span, parent))
        return end, self.attach(self.context_type({**base, self.span_key: span}))


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: RequestMetricsSink | None,
        tracer: Any = None,
        metrics_exclude: Iterable[str] = ("/metrics", "/health/live"),
        trace_exclude: Iterable[str] = ("/metrics", "/health/live", "/health/ready"),
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        # the observation is appended to the sink's batch directly and handed on every FLUSH_AT
        batched = as_batched(metrics) if metrics is not None else None
        self._batched = batched
        self._measure = batched is not None
        self._pending: list[Observation] = batched.pending if batched is not None else []
        self._start_counts: dict[str, int] = batched.started_counts if batched is not None else {}
        self._flush_at = batched.FLUSH_AT if batched is not None else 0
        self.tracer = tracer
        self._tracing = _Tracing(tracer) if tracer is not None else None
        self._trace_headers: frozenset[bytes] = self._tracing.trace_headers if self._tracing else frozenset()
        self.metrics_exclude = frozenset(metrics_exclude) if metrics is not None else frozenset()
        self.trace_exclude = frozenset(trace_exclude)
        self.probes = self.metrics_exclude & self.trace_exclude if metrics is not None else self.trace_exclude
        # any path with special handling: the usual request is settled by one lookup in this set
        self._special = self.metrics_exclude | self.trace_exclude
        # the request headers the middleware reads: one set lookup per header, the usual miss included
        self._watched = frozenset({_REQUEST_ID_HEADER, b"content-length"}) | self._trace_headers
        self.access_log = access_log

    async def _pass_through(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A probe path (liveness, /metrics): nothing measured, no request id; only instrumentation
        beneath it kept quiet."""
        tracing = self._tracing
        if tracing is None:
            await self.app(scope, receive, send)
            return
        token = tracing.attach(tracing.suppressed)
        try:
            await self.app(scope, receive, send)
        finally:
            tracing.detach(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self._special:
            if path in self.probes:
                await self._pass_through(scope, receive, send)
                return
            measured = self._measure and path not in self.metrics_exclude
            quiet = path in self.trace_exclude
        else:
            measured = self._measure
            quiet = False
        start = _now()
        method: str = scope["method"]
        if method not in KNOWN_METHODS:
            method = "OTHER"
        # the request id (when valid), the declared body size and whether a trace header came, in one pass
        # (inline: a helper call here costs about 3 % of the middleware's instructions)
        request_id: bytes | None = None
        content_length = 0
        traced_request = False
        watched = self._watched
        for name, value in scope["headers"]:
            if name in watched:
                if name == _REQUEST_ID_HEADER:
                    if _valid_request_id(value):
                        request_id = value
                elif name == b"content-length":
                    try:
                        content_length = int(value)
                    except ValueError:
                        pass
                else:
                    traced_request = True
        if request_id is None:
            try:
                request_id = _ID_POOL.pop()
            except IndexError:
                request_id = _refill_request_ids()
        # RequestContext(request_id) without the type call and its __init__ frame
        ctx: RequestContext = _new_object(RequestContext)
        ctx._id = request_id
        ctx.organization_id = None
        ctx_token = REQUEST.set(ctx)
        end: ServerSpanEnd | None = None
        otel_token = None
        tracing = self._tracing
        if tracing is not None:
            if quiet:
                otel_token = tracing.attach(tracing.suppressed)
            elif tracing.inline_root and not traced_request and not tracing.current():
                # `_Tracing.start` for a new root with an empty current context, inline (same steps)
                trace_id = _getrandbits(128) or tracing.new_trace_id()  # type: ignore[misc]
                if trace_id & 0xFFFFFFFFFFFFFFFF >= tracing.bound:  # type: ignore[operator]
                    # UnsampledRootSpan(trace_id, new_span_id) without the type call and its __init__
                    span: Any = _new_object(tracing.unsampled_root)
                    span._trace_id = trace_id
                    span._span_ids = tracing.new_span_id
                else:
                    span, end = tracing.lean.start_sampled_root(  # type: ignore[union-attr]
                        method, trace_id, {"http.request.method": method, "url.path": path}
                    )
                otel_token = tracing.attach(tracing.context_type({tracing.span_key: span}))  # type: ignore[dict-item]  # inline_root implies span_key
            else:
                end, otel_token = tracing.start(scope, method, path, traced_request)
        if measured:  # inlined (as the record below): a call per request is measurable here
            self._start_counts[method] += 1

        status = 0
        response_size = 0

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
            sampled = end.finish(method, route, status, failed) if end is not None else None
            if measured:
                pending = self._pending
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
                    self._batched.flush()  # type: ignore[union-attr]
            if self.access_log and not quiet:
                write_access_line(method, route, path, status, duration, ctx)
            if otel_token is not None:
                tracing.detach(otel_token)  # type: ignore[union-attr]
            REQUEST.reset(ctx_token)


def _trace_id_source() -> Callable[[], int]:
    """The random id generator's own trace-id draw: only called when the inline `getrandbits(128)` drew 0
    (the lean path runs only with that generator)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    return RandomIdGenerator().generate_trace_id


def instrument_app(app: Any, settings: Any, registry: Any, health_collector: Any) -> None:
    """Wire request metrics, tracing and the exposition registry into `app` (the service's own metrics,
    such as the business events, are the app's: `app/main.py` makes them)."""
    from telltale.app.instrumentation.exposition import Renderer
    from telltale.app.instrumentation.http_metrics import HttpMetrics, exposition_registry
    from telltale.app.instrumentation.request_stats import make_http_metrics
    from telltale.app.instrumentation.tracing import register_span_counters, setup_tracing

    http = make_http_metrics(registry)
    app.state.http_metrics = http
    register_span_counters(registry)
    # `http` is read there only under several workers, where make_http_metrics made an HttpMetrics
    app.state.exposition_registry = exposition_registry(registry, health_collector, cast(HttpMetrics, http))
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
