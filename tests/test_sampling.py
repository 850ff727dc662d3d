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

from app.middleware import TelemetryMiddleware
from app.request_stats import LeanHttpMetrics
from app.telemetry import PresetIdGenerator, root_sampling_bound


def traced_app(ratio: float) -> tuple[FastAPI, InMemorySpanExporter, list[tuple[int, bool]]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(ratio), id_generator=PresetIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    seen: list[tuple[int, bool]] = []
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        ctx = get_current_span().get_span_context()
        seen.append((ctx.trace_id, ctx.trace_flags.sampled))
        return {"item_id": item_id}

    app.add_middleware(TelemetryMiddleware, metrics=LeanHttpMetrics(CollectorRegistry()), tracer=tracer,
                       access_log=False)
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
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(0.25), id_generator=PresetIdGenerator())
    assert root_sampling_bound(provider.get_tracer("t")) == TraceIdRatioBased(0.25).bound
    assert root_sampling_bound(TracerProvider(id_generator=PresetIdGenerator()).get_tracer("t")) is None
