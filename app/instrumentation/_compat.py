"""Every private OpenTelemetry name Telltale touches, in one module, each guarded.

The hot path takes a few shortcuts through OpenTelemetry internals (the runtime context's ContextVar, the
span key of a Context, the suppression key, the SDK tracer's span limits and processors). Each lives here
behind a try/except or a getattr with a typed fallback: when a library upgrade removes one, Telltale
keeps working through the public API (slower, or on the SDK's own span path) and `MISSING` names what
went away. `tests/test_compat.py` is the canary that fails loudly on such an upgrade.

prometheus-client: one private pair, a histogram child's `_buckets` and `_sum` (`histogram_add_counts`: the
client has no bulk observe); otherwise only its public modules `core`, `samples`, `utils`, `exposition`,
`multiprocess`. The canary checks those names too.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as _context
from opentelemetry.context import Context

MISSING: list[str] = []  # the private names this OpenTelemetry no longer has (empty when all are there)

# The context key instrumentations check before making a span. The plain string is the documented
# fallback that `opentelemetry.instrumentation.utils.is_instrumentation_enabled` also honours.
try:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _suppress_key

    SUPPRESS_INSTRUMENTATION_KEY: str = _suppress_key
except ImportError:  # pragma: no cover - only on an OpenTelemetry without it
    SUPPRESS_INSTRUMENTATION_KEY = "suppress_instrumentation"
    MISSING.append("opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY")

# The key under which a Context holds its span: with it, the middleware builds the request's context in
# one dict copy instead of `trace.set_span_in_context` (None: use that public function).
SPAN_KEY: str | None
try:
    from opentelemetry.trace.propagation import _SPAN_KEY as _span_key

    SPAN_KEY = _span_key
except ImportError:  # pragma: no cover
    SPAN_KEY = None
    MISSING.append("opentelemetry.trace.propagation._SPAN_KEY")


def suppressed_context() -> Context:
    """A context in which instrumentations make no span (probe requests, the span-export thread)."""
    return _context.set_value(SUPPRESS_INSTRUMENTATION_KEY, True)


def runtime_context_var() -> ContextVar[Context] | None:
    """The ContextVar behind OpenTelemetry's default runtime context, or None (another runtime context is
    configured with `OTEL_PYTHON_CONTEXT`, or the internals moved). Setting it directly is what
    `context.attach` does, minus two layers of calls: the middleware does it twice per request."""
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    except ImportError:  # pragma: no cover
        return None
    runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var
    return None


def span_processors(tracer: Any) -> tuple[Any, ...] | None:
    """The span processors an SDK tracer runs, in order; None when they cannot be read (then the lean
    span path is off: it must know that no processor wants `on_start`)."""
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    multi = getattr(tracer, "span_processor", None)
    if type(multi) is not SynchronousMultiSpanProcessor:
        return None
    processors = getattr(multi, "_span_processors", None)
    return processors if isinstance(processors, tuple) else None


def span_limits(tracer: Any) -> Any | None:
    """The SDK tracer's SpanLimits (the SDK has no public accessor); None when it cannot be read."""
    from opentelemetry.sdk.trace import SpanLimits

    limits = getattr(tracer, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else None


def instrumentation_scope(tracer: Any) -> Any | None:
    """The SDK tracer's InstrumentationScope, put on every span it makes."""
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    scope = getattr(tracer, "_instrumentation_scope", None)
    return scope if isinstance(scope, InstrumentationScope) else None


def tracer_is_plain(tracer: Any) -> bool:
    """True when the SDK tracer is enabled and records no SDK-internal span metrics: then its
    `start_span` does nothing beyond what the lean path does. False when that cannot be told."""
    is_enabled = getattr(tracer, "_is_enabled", None)
    metrics = getattr(tracer, "_tracer_metrics", None)
    try:
        from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
    except ImportError:  # pragma: no cover
        return False
    return callable(is_enabled) and is_enabled() is True and type(metrics) is NoOpTracerMetrics


_PARENT_BASED_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def parent_based_delegates(sampler: Any) -> dict[str, Any] | None:
    """A ParentBased sampler's delegates by role (`root`, `remote_parent_sampled`, ...); None when they
    cannot all be read (the SDK has no public accessor)."""
    delegates = {name.lstrip("_"): getattr(sampler, name, None) for name in _PARENT_BASED_DELEGATES}
    return None if any(d is None for d in delegates.values()) else delegates


def missing() -> list[str]:
    """The private names this OpenTelemetry no longer has, read from live objects (empty: all there)."""
    gone = list(MISSING)
    if runtime_context_var() is None and type(getattr(_context, "_RUNTIME_CONTEXT", None)).__name__ in (
        "ContextVarsRuntimeContext",
        "NoneType",
    ):
        gone.append("opentelemetry.context._RUNTIME_CONTEXT._current_context")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("telltale.compat")
    for name, value in (
        ("Tracer.span_processor._span_processors", span_processors(tracer)),
        ("Tracer._span_limits", span_limits(tracer)),
        ("Tracer._instrumentation_scope", instrumentation_scope(tracer)),
        ("Tracer._is_enabled", getattr(tracer, "_is_enabled", None)),
        ("Tracer._tracer_metrics", getattr(tracer, "_tracer_metrics", None)),
        ("ParentBased._root and its other delegates", parent_based_delegates(ParentBased(TraceIdRatioBased(1)))),
    ):
        if value is None:
            gone.append(f"opentelemetry.sdk.trace.{name}")
    if readable_span_reader() is None:
        gone.append("opentelemetry.sdk.trace.ReadableSpan's private fields (" + ", ".join(READABLE_SPAN_FIELDS) + ")")
    if not span_context_is_a_tuple():
        gone.append("opentelemetry.trace.SpanContext's tuple layout")
    try:
        from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics  # noqa: F401
    except ImportError:
        gone.append("opentelemetry.sdk.trace._tracer_metrics.NoOpTracerMetrics")
    from prometheus_client import CollectorRegistry, Histogram

    child = Histogram("compat_probe", "", registry=CollectorRegistry(), buckets=(1.0,))
    if not _histogram_parts(child, 2):
        gone.append("prometheus_client.Histogram._buckets/_sum")
    return gone


def freeze_attributes(attributes: Any) -> Any:
    """Make a span's BoundedAttributes immutable at `end()`, as the SDK's own span does (through the
    same private flag); a copy where the flag is gone."""
    from opentelemetry.attributes import BoundedAttributes

    if hasattr(attributes, "_immutable"):
        attributes._immutable = True
        return attributes
    return BoundedAttributes(attributes.maxlen, attributes, immutable=True)  # pragma: no cover


def processors_reader(tracer: Any) -> Any:
    """A C-level callable returning the tracer's current processor tuple: the lean path checks per
    recorded span that nobody added a processor since it was chosen."""
    import functools

    return functools.partial(getattr, tracer.span_processor, "_span_processors", None)


def set_attributes(attributes: Any, items: Any) -> None:
    """What the SDK span's `set_attributes` does (BoundedAttributes' private bulk set, which counts
    dropped values its own way); one `__setitem__` per item where that method is gone."""
    bulk = getattr(attributes, "_set_items", None)
    if bulk is not None:
        bulk(items)
    else:  # pragma: no cover
        attributes.update(items)


def _histogram_parts(child: Any, n: int) -> tuple[Any, Any] | None:
    buckets, value_sum = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if not isinstance(buckets, list) or len(buckets) != n or not hasattr(value_sum, "inc"):
        return None
    if not all(hasattr(bucket, "inc") for bucket in buckets):
        return None
    return buckets, value_sum


def histogram_add_counts(child: Any, counts: list[int], total: float) -> bool:
    """Add many observations to a prometheus-client histogram child as per-bucket counts (non-cumulative,
    one per bound and +Inf) and their sum: one update per bucket instead of one locked `observe` per value.
    Through the child's private `_buckets` and `_sum` (works in multiprocess mode too: those are its mmap
    values). False where they are gone or shaped otherwise: the caller then observes value by value."""
    parts = _histogram_parts(child, len(counts))
    if parts is None:
        return False
    buckets, value_sum = parts
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    value_sum.inc(total)
    return True


# A ReadableSpan's private fields, in the order `span_export._flatten` unpacks them; each property of the
# same name without the underscore returns the field itself (`attributes`, `events` and `links` a view or
# copy of it). The export thread reads them for every span it flattens.
READABLE_SPAN_FIELDS = (
    "_name",
    "_context",
    "_parent",
    "_kind",
    "_start_time",
    "_end_time",
    "_attributes",
    "_events",
    "_links",
    "_status",
    "_instrumentation_scope",
)


def readable_span_reader() -> Callable[[Any], tuple[Any, ...]] | None:
    """A C-level getter of READABLE_SPAN_FIELDS for a span of exactly `ReadableSpan`'s type (what the lean
    server spans hand to the queue): one call instead of eleven property calls. None when a field is gone or
    no longer holds what its property returns, checked on a probe span; then the public properties are read.
    The SpanContexts inside are read by index: `span_context_is_a_tuple` checks that layout."""
    from operator import attrgetter

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

    probe = ReadableSpan(
        name="probe",
        context=SpanContext(1, 2, False),
        parent=SpanContext(1, 3, True),
        attributes={"a": 1},
        events=(),
        links=(),
        kind=SpanKind.SERVER,
        status=Status(StatusCode.ERROR, "x"),
        start_time=1,
        end_time=2,
        instrumentation_scope=InstrumentationScope("telltale.compat"),
    )
    reader = attrgetter(*READABLE_SPAN_FIELDS)
    try:
        fields = reader(probe)
    except AttributeError:
        return None
    public = tuple(getattr(probe, name.lstrip("_")) for name in READABLE_SPAN_FIELDS)
    same = all(
        (dict(f) == dict(p)) if name == "_attributes" else (tuple(f) == p) if name in ("_events", "_links") else f is p
        for name, f, p in zip(READABLE_SPAN_FIELDS, fields, public, strict=True)
    )
    return reader if same else None


def span_context_is_a_tuple() -> bool:
    """SpanContext is the tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid): its
    properties index it, and the export thread reads it the same way."""
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    state = TraceState([("k", "v")])
    context = SpanContext(5, 6, True, TraceFlags(1), state)
    return isinstance(context, tuple) and tuple(context) == (5, 6, True, TraceFlags(1), state, True)
