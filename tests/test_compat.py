"""Canary: every private OpenTelemetry name Telltale relies on (app/instrumentation/_compat.py) is still there
and still means what the shortcuts assume. A library upgrade that removes or changes one fails here, by
name, instead of quietly sending the hot path down its slower fallback (or worse, a wrong one)."""

from __future__ import annotations

import importlib

import pytest
from opentelemetry import context, trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext
from telltale.app.instrumentation import _compat
from telltale.app.instrumentation.server_span import DEFAULT_LIMITS


def test_no_private_name_is_missing() -> None:
    assert _compat.missing() == [], f"OpenTelemetry internals gone: {_compat.missing()}; update _compat.py"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("opentelemetry.context", "_SUPPRESS_INSTRUMENTATION_KEY"),
        ("opentelemetry.context", "_RUNTIME_CONTEXT"),
        ("opentelemetry.trace.propagation", "_SPAN_KEY"),
        ("opentelemetry.context.contextvars_context", "ContextVarsRuntimeContext"),
        ("opentelemetry.sdk.trace._tracer_metrics", "NoOpTracerMetrics"),
        # prometheus-client: public modules, but not its top-level API
        ("prometheus_client.utils", "floatToGoString"),
        ("prometheus_client.samples", "Exemplar"),
        ("prometheus_client.samples", "Sample"),
        ("prometheus_client.exposition", "choose_encoder"),
        ("prometheus_client.multiprocess", "MultiProcessCollector"),
        ("prometheus_client.multiprocess", "mark_process_dead"),
    ],
)
def test_each_name_imports(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone: update _compat.py"


def test_the_guarded_values_are_the_libraries_own() -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
    from opentelemetry.trace.propagation import _SPAN_KEY

    assert _compat.SUPPRESS_INSTRUMENTATION_KEY is _SUPPRESS_INSTRUMENTATION_KEY
    assert _compat.SPAN_KEY is _SPAN_KEY


def test_the_runtime_context_var_is_what_attach_sets() -> None:
    var = _compat.runtime_context_var()
    assert var is not None
    span = NonRecordingSpan(SpanContext(1, 2, False))
    token = var.set(trace.set_span_in_context(span))
    try:
        assert context.get_current() is var.get()
        assert trace.get_current_span() is span
    finally:
        var.reset(token)
    assert trace.get_current_span() is not span


def test_a_context_with_the_span_key_is_what_set_span_in_context_makes() -> None:
    span = NonRecordingSpan(SpanContext(1, 2, False))
    made = context.Context({_compat.SPAN_KEY: span})  # type: ignore[dict-item]
    assert made == trace.set_span_in_context(span, context.Context())
    assert trace.get_current_span(made) is span


def test_the_suppressed_context_turns_instrumentation_off() -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    assert is_instrumentation_enabled()
    token = context.attach(_compat.suppressed_context())
    try:
        assert not is_instrumentation_enabled()
    finally:
        context.detach(token)


def test_tracer_internals_read_as_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t", "1")
    assert _compat.span_processors(tracer) == ()
    first = SimpleSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(first)
    now = _compat.processors_reader(tracer)
    assert _compat.span_processors(tracer) == (first,) == now()
    before = now()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert now() is not before and len(now()) == 2  # a new tuple per added processor: the lean path's check
    limits = _compat.span_limits(tracer)
    assert isinstance(limits, SpanLimits)
    assert {k: getattr(limits, k) for k in DEFAULT_LIMITS} == DEFAULT_LIMITS
    assert _compat.instrumentation_scope(tracer) == InstrumentationScope("t", "1", None, None)
    assert _compat.tracer_is_plain(tracer)
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    assert not _compat.tracer_is_plain(TracerProvider().get_tracer("t"))


def test_parent_based_delegates() -> None:
    delegates = _compat.parent_based_delegates(ParentBasedTraceIdRatio(0.3))
    assert delegates is not None
    assert set(delegates) == {
        "root",
        "remote_parent_sampled",
        "remote_parent_not_sampled",
        "local_parent_sampled",
        "local_parent_not_sampled",
    }
    assert isinstance(delegates["root"], TraceIdRatioBased) and delegates["root"].bound == TraceIdRatioBased(0.3).bound
    assert _compat.parent_based_delegates(TraceIdRatioBased(0.3)) is None


def test_attribute_helpers() -> None:
    attributes = BoundedAttributes(2, {"a": 1}, immutable=False)
    _compat.set_attributes(attributes, {"b": 2, "c": 3})
    assert dict(attributes) == {"b": 2, "c": 3} and attributes.dropped == 1
    frozen = _compat.freeze_attributes(attributes)
    with pytest.raises(TypeError):
        frozen["d"] = 4


def test_histogram_bucket_counts_land_where_observe_puts_them() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    def histogram() -> tuple[CollectorRegistry, Histogram]:
        registry = CollectorRegistry()
        return registry, Histogram("h_seconds", "h", registry=registry, buckets=(0.1, 1.0))

    bulk_registry, bulk = histogram()
    assert _compat.histogram_add_counts(bulk, [2, 0, 1], 5.1)
    one_registry, one = histogram()
    for value in (0.05, 0.05, 5.0):
        one.observe(value)
    assert (
        generate_latest(bulk_registry).split(b"# TYPE h_seconds_created")[0]
        == (generate_latest(one_registry).split(b"# TYPE h_seconds_created")[0])
    )


def test_histogram_bucket_counts_refuse_a_child_shaped_otherwise() -> None:
    class Plain:
        def observe(self, value: float) -> None: ...

    assert _compat.histogram_add_counts(Plain(), [1, 0], 1.0) is False


def test_flattening_a_span_from_its_fields_equals_reading_its_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export thread reads a ReadableSpan's private fields and its SpanContexts by index: the flattened
    tuple must be the one the public properties give, parent, trace state, events and links included."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceFlags, TraceState
    from telltale.app.instrumentation import span_export

    assert span_export._FIELDS is not None  # the fast path is on with this OpenTelemetry
    span = ReadableSpan(
        name="GET /r/{x}",
        context=SpanContext(0xA1, 0xB1, False, TraceFlags(3), TraceState([("k", "v")])),
        parent=SpanContext(0xA1, 0xC1, True, TraceFlags(1)),
        resource=Resource.create({}),
        attributes={"http.route": "/r/{x}", "http.response.status_code": 500},
        events=(Event("exception", {"exception.type": "ValueError"}, 7),),
        links=(Link(SpanContext(0xD1, 0xE1, False, TraceFlags(1)), {"l": 1}),),
        kind=SpanKind.SERVER,
        status=Status(StatusCode.ERROR, "boom"),
        start_time=1,
        end_time=2,
        instrumentation_scope=InstrumentationScope("telltale", "1"),
    )
    fast = span_export._flatten(span)
    monkeypatch.setattr(span_export, "_FIELDS", None)
    assert fast == span_export._flatten(span)
