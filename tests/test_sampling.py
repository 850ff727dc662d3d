"""Ratio sampling decided in the middleware agrees with the SDK's sampler, and a remote parent still rules."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio, TraceIdRatioBased
from opentelemetry.trace import get_current_span
from prometheus_client import CollectorRegistry
from telltale.app.instrumentation.middleware import TelemetryMiddleware
from telltale.app.instrumentation.request_stats import LeanHttpMetrics
from telltale.app.instrumentation.tracing import root_sampling_bound


def traced_app(ratio: float) -> tuple[FastAPI, InMemorySpanExporter, list[tuple[int, bool]]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(ratio))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    seen: list[tuple[int, bool]] = []
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        ctx = get_current_span().get_span_context()
        seen.append((ctx.trace_id, ctx.trace_flags.sampled))
        return {"item_id": item_id}

    app.add_middleware(
        TelemetryMiddleware, metrics=LeanHttpMetrics(CollectorRegistry()), tracer=tracer, access_log=False
    )
    return app, exporter, seen


async def test_kept_spans_are_exactly_those_the_sdk_sampler_keeps() -> None:
    app, exporter, seen = traced_app(0.3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for i in range(400):
            assert (await c.get(f"/items/{i}")).status_code == 200
    sampler = TraceIdRatioBased(0.3)
    spans = exporter.get_finished_spans()
    assert 60 < len(spans) < 180  # about 120 of 400
    kept = {s.context.trace_id for s in spans}
    for trace_id, sampled in seen:  # every request had a trace context, sampled or not
        assert trace_id != 0
        assert sampled == (trace_id & sampler.TRACE_ID_LIMIT < sampler.bound)
        assert sampled == (trace_id in kept)
    assert {s.name for s in spans} == {"GET /items/{item_id}"}


async def test_a_sampled_remote_parent_is_followed_whatever_the_ratio() -> None:
    app, exporter, _ = traced_app(0.0001)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/items/1", headers={"traceparent": parent})
    [span] = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"


def test_bound_only_for_ratio_samplers() -> None:
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(0.25))
    assert root_sampling_bound(provider.get_tracer("t")) == TraceIdRatioBased(0.25).bound
    assert root_sampling_bound(TracerProvider().get_tracer("t")) is None


async def test_lean_server_span_records_what_the_sdk_span_would() -> None:
    """Kind, name, attributes, a handler's own attribute, the exception event and the error status."""
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        get_current_span().set_attribute("app.order_id", order_id)
        with provider.get_tracer("child").start_as_current_span("load order"):
            pass
        if order_id == 13:
            raise ValueError("unlucky order")
        return {"order_id": order_id}

    app.add_middleware(
        TelemetryMiddleware,
        metrics=LeanHttpMetrics(CollectorRegistry()),
        tracer=provider.get_tracer("telltale"),
        access_log=False,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/orders/7")).status_code == 200
        assert (await c.get("/orders/13")).status_code == 500
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    children = [s for s in spans if s.name == "load order"]
    assert [s.name for s in servers] == ["GET /orders/{order_id}"] * 2
    ok, failed = servers
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "url.path": "/orders/7",
        "app.order_id": 7,
        "http.route": "/orders/{order_id}",
        "http.response.status_code": 200,
    }
    assert ok.status.status_code is StatusCode.UNSET and ok.end_time > ok.start_time
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["http.response.status_code"] == 500
    [event] = failed.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert [c.parent.span_id for c in children] == [s.context.span_id for s in servers]
    assert all(c.context.trace_id == s.context.trace_id for c, s in zip(children, servers, strict=True))


# --- the lean path runs only where it matches the SDK's own span ---------------------------------------

from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON, Decision, Sampler, SamplingResult  # noqa: E402
from opentelemetry.trace import (  # noqa: E402
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from telltale.app.instrumentation.server_span import LeanServerSpan, lean_path_refusal, lean_spans  # noqa: E402
from telltale.app.instrumentation.span_queue import SpanQueue  # noqa: E402


class Queued:
    """A tracer whose only processor is Telltale's SpanQueue, over an in-memory exporter."""

    def __init__(self, **provider: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.queue = SpanQueue(self.exporter, schedule_delay_millis=60_000)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "parity"}), **provider)
        self.provider.add_span_processor(self.queue)
        self.tracer = self.provider.get_tracer("telltale", "1.2.3")

    def finished(self) -> list[ReadableSpan]:
        self.queue.force_flush()
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def queued() -> Iterator[Queued]:
    q = Queued()
    yield q
    q.queue.shutdown()


class Recording(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


class FixedIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return 0x1234


class KeepOnly(Sampler):
    """A custom sampler that hands the span other attributes than it was given."""

    def should_sample(self, *args: Any, **kw: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler": "custom"})

    def get_description(self) -> str:
        return "KeepOnly"


def exercise(span: Any, end: Callable[[], None]) -> None:
    """The same API calls on a lean span and on an SDK span: over every limit, with invalid values."""
    for i in range(140):  # past max_span_attributes (128): the oldest go, counted
        span.set_attribute(f"a{i}", i)
    span.set_attribute("a139", "again")  # an existing key moves to the end
    span.set_attribute("bad", object())  # not an attribute value: the SDK stringifies or drops it
    span.set_attributes({"m1": 1, "m2": [1, 2], "": "empty key"})
    for i in range(130):  # past max_events (128)
        span.add_event(f"e{i}", {f"k{j}": j for j in range(130)})  # past max_event_attributes
    span.add_link(SpanContext(7, 8, False), {"l": 1})
    span.add_link(SpanContext(0, 0, False), {"only": "attributes"})  # invalid context with attributes: kept
    span.add_link(SpanContext(0, 0, False))  # invalid and bare: refused
    span.add_link(SpanContext(0, 0, False, trace_state=TraceState([("k", "v")])))  # trace state: kept
    span.set_status(StatusCode.UNSET)  # never overrides
    span.set_status(Status(StatusCode.OK, "fine"))
    span.set_status(StatusCode.ERROR, "ignored after OK")
    span.update_name("renamed")
    span.record_exception(ValueError("boom"), {"extra": 1})
    end()
    span.set_attribute("after", "end")  # ignored once ended
    span.add_event("after")


def shape(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads from a span, except ids and times."""
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "events": [
            (
                e.name,
                {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"},
                e.dropped_attributes,
            )
            for e in span.events
        ],
        "dropped_events": span.dropped_events,
        "links": [(link.context.span_id, dict(link.attributes or {})) for link in span.links],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "flags": span.context.trace_flags,
        "trace_state": span.context.trace_state,
        "parent": span.parent,
    }


def test_lean_and_sdk_spans_agree_on_limits_attributes_events_links_status_kind_and_resource(queued: Queued) -> None:
    lean = lean_spans(queued.tracer)
    assert lean is not None
    parent = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(0x03))
    ctx = set_span_in_context(NonRecordingSpan(parent))
    attributes = {"http.request.method": "GET", "url.path": "/x"}
    span, end = lean.start("GET", ctx, parent, dict(attributes))
    assert isinstance(span, LeanServerSpan) and end is span
    exercise(span, span.end)
    sdk = queued.tracer.start_span("GET", context=ctx, kind=SpanKind.SERVER, attributes=dict(attributes))
    exercise(sdk, sdk.end)
    got_lean, got_sdk = queued.finished()
    assert shape(got_lean) == shape(got_sdk)
    assert got_lean.dropped_attributes > 0 and got_lean.dropped_events == 3  # the limits did bite
    assert got_lean.context.trace_id == got_sdk.context.trace_id == parent.trace_id


@pytest.mark.parametrize("flags", [0x00, 0x01, 0x02, 0x03])
@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, DEFAULT_ON, ParentBasedTraceIdRatio(0.5)], ids=["on", "pb_on", "pb_ratio"]
)
def test_trace_flags_agree_for_every_parent(flags: int, sampler: Sampler) -> None:
    q = Queued(sampler=sampler)
    try:
        lean = lean_spans(q.tracer)
        assert lean is not None
        parent = SpanContext(0xABC, 0xDEF, True, TraceFlags(flags))
        ctx = set_span_in_context(NonRecordingSpan(parent))
        span, _ = lean.start("GET", ctx, parent, {"k": "v"})
        sdk = q.tracer.start_span("GET", context=ctx, kind=SpanKind.SERVER, attributes={"k": "v"})
        assert span.get_span_context().trace_flags == sdk.get_span_context().trace_flags
        assert span.is_recording() == sdk.is_recording()
        root, _ = lean.start("GET", None, None, {"k": "v"})
        sdk_root = q.tracer.start_span("GET", kind=SpanKind.SERVER, attributes={"k": "v"})
        if not isinstance(sampler, ParentBasedTraceIdRatio):  # the ratio sampler decides by the (different) trace ids
            assert root.get_span_context().trace_flags.random_trace_id
            assert sdk_root.get_span_context().trace_flags.random_trace_id
    finally:
        q.queue.shutdown()


def test_the_ratio_shortcut_gives_the_sdk_flags_for_new_roots(queued: Queued) -> None:
    lean = lean_spans(queued.tracer)
    assert lean is not None
    span, _ = lean.start_sampled_root("GET", 0xFEED, {})
    sdk = queued.tracer.start_span("GET", kind=SpanKind.SERVER)
    assert span.get_span_context().trace_flags == sdk.get_span_context().trace_flags == TraceFlags(0x03)


@pytest.mark.parametrize(
    ("why", "provider", "extra"),
    [
        ("custom id generator", {"id_generator": FixedIds()}, False),
        ("span processors other than one SpanQueue", {}, True),
        ("non-default span limits", {"span_limits": SpanLimits(max_span_attributes=10)}, False),
        ("non-default span limits", {"span_limits": SpanLimits(max_attribute_length=16)}, False),
        ("custom sampler", {"sampler": KeepOnly()}, False),
        ("span processors other than one SpanQueue", {"active_span_processor": None}, None),
    ],
)
def test_any_other_configuration_takes_the_sdk_path(why: str, provider: dict[str, Any], extra: bool | None) -> None:
    if extra is None:  # no SpanQueue at all: the SDK's own batch processor
        p = TracerProvider()
        p.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        assert lean_path_refusal(p.get_tracer("t")) == why
        return
    q = Queued(**provider)
    try:
        if extra:
            q.provider.add_span_processor(Recording())
        assert lean_path_refusal(q.tracer) == why
        assert lean_spans(q.tracer) is None
    finally:
        q.queue.shutdown()


def test_span_limits_from_the_environment_take_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "5")
    q = Queued()
    try:
        assert lean_path_refusal(q.tracer) == "non-default span limits"
    finally:
        q.queue.shutdown()


def serve(tracer: Any, handler_attrs: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        if handler_attrs:
            get_current_span().set_attribute("app.order_id", order_id)
        if order_id == 13:
            raise ValueError("unlucky order")
        return {"order_id": order_id}

    app.add_middleware(
        TelemetryMiddleware, metrics=LeanHttpMetrics(CollectorRegistry()), tracer=tracer, access_log=False
    )
    return app


async def get(app: FastAPI, *paths: str, headers: dict[str, str] | None = None) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for path in paths:
            await c.get(path, headers=headers)


async def test_middleware_spans_are_the_same_on_both_paths() -> None:
    """The same requests through the lean path and, with one more processor, the SDK's own path."""
    lean_q, sdk_q = Queued(), Queued()
    sdk_q.provider.add_span_processor(Recording())
    try:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        for q in (lean_q, sdk_q):
            app = serve(q.tracer)
            await get(app, "/orders/7", "/orders/13", "/nowhere")
            await get(app, "/orders/8", headers={"traceparent": parent})
        lean, sdk = lean_q.finished(), sdk_q.finished()
        assert len(lean) == len(sdk) == 4
        for a, b in zip(lean, sdk, strict=True):
            assert shape(a) == shape(b)
        assert lean[1].status.status_code is StatusCode.ERROR and lean[1].events[0].name == "exception"
        assert format(lean[3].parent.span_id, "016x") == "b7ad6b7169203331"
    finally:
        lean_q.queue.shutdown()
        sdk_q.queue.shutdown()


async def test_on_start_is_called_for_every_processor() -> None:
    """An extra processor (added before or after the app is built) sees every server span start and end."""
    q = Queued(sampler=ParentBasedTraceIdRatio(1.0))
    before = Recording()
    q.provider.add_span_processor(before)
    try:
        app = serve(q.tracer)
        await get(app, "/orders/1")
        assert before.started == ["GET"] and before.ended == ["GET /orders/{order_id}"]
    finally:
        q.queue.shutdown()
    q = Queued(sampler=ParentBasedTraceIdRatio(1.0))
    try:
        app = serve(q.tracer)
        await get(app, "/orders/1")  # the lean path, chosen when the middleware was built
        later = Recording()
        q.provider.add_span_processor(later)
        await get(app, "/orders/2", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        await get(app, "/orders/3")
        assert later.started == ["GET", "GET"] and len(later.ended) == 2
        assert len(q.finished()) == 3
    finally:
        q.queue.shutdown()


async def test_no_trace_header_but_a_current_span_is_its_parent(queued: Queued) -> None:
    """No trace header but a span already current (an app mounted inside a traced one): the SDK parents
    to it, and so does the lean path."""
    from opentelemetry import context

    outer = queued.tracer.start_span("outer")
    token = context.attach(set_span_in_context(outer))
    try:
        await get(serve(queued.tracer, handler_attrs=False), "/orders/1")
    finally:
        context.detach(token)
    outer.end()
    server = next(s for s in queued.finished() if s.kind is SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == outer.get_span_context().span_id


async def test_a_custom_id_generator_is_used_for_server_spans() -> None:
    """The lean path draws trace ids itself only for the random generator; any other one is the SDK's."""
    q = Queued(id_generator=FixedIds(), sampler=ParentBasedTraceIdRatio(1.0))
    try:
        await get(serve(q.tracer, handler_attrs=False), "/orders/1", "/orders/2")
        assert [s.context.trace_id for s in q.finished()] == [0x1234, 0x1234]
    finally:
        q.queue.shutdown()


def test_the_lean_path_turns_off_if_the_span_queue_ever_wants_on_start(
    queued: Queued, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lean_path_refusal(queued.tracer) is None
    monkeypatch.setattr(SpanQueue, "on_start", lambda self, span, parent_context=None: None)
    assert lean_path_refusal(queued.tracer) == "SpanQueue.on_start does something"
