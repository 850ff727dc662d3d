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
