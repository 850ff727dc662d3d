"""Spans exported from a spawned child process arrive at a real OTLP/HTTP receiver unchanged."""

from __future__ import annotations

import os
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from telltale.app.instrumentation.span_export import ChildProcessExporter, otlp_http_exporter

from tests.otlp_receiver import OtlpReceiver

MEMORY = InMemorySpanExporter()


def _broken_in_child():  # type: ignore[no-untyped-def]
    """Builds an exporter in the test's own process only: the spawned child fails to start."""
    if os.environ.get("TELLTALE_TEST_PARENT_PID") != str(os.getpid()):
        raise RuntimeError("cannot build the exporter")
    return MEMORY


def test_child_process_exports_spans_with_their_fields(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    receiver = OtlpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)  # the spawned child reads it
    exporter = ChildProcessExporter(otlp_http_exporter, timeout=20)
    provider = TracerProvider(resource=Resource.create({"service.name": "telltale-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("telltale", "1.2.3")
    try:
        with tracer.start_as_current_span(
            "GET /items/{id}", kind=SpanKind.SERVER, attributes={"http.route": "/items/{id}", "n": 3}
        ) as root:
            root.add_event("cache miss", {"key": "items:3"})
            with tracer.start_as_current_span("SELECT items") as child:
                child.set_status(StatusCode.ERROR, "boom")
        deadline = time.monotonic() + 20
        while len(receiver.spans) < 2:
            assert time.monotonic() < deadline, "spans never arrived"
            time.sleep(0.05)
        assert exporter._proc is not None and exporter._proc.pid != os.getpid()
    finally:
        provider.shutdown()
        receiver.stop()
    by_name = {s["name"]: s for s in receiver.spans}
    root_span, child_span = by_name["GET /items/{id}"], by_name["SELECT items"]
    assert child_span["parent_span_id"] == root_span["span_id"]
    assert child_span["trace_id"] == root_span["trace_id"]
    assert root_span["attributes"]["http.route"] == "/items/{id}" and root_span["attributes"]["n"] == 3


def test_a_child_that_keeps_failing_is_replaced_by_in_process_export(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TELLTALE_TEST_PARENT_PID", str(os.getpid()))
    exporter = ChildProcessExporter(_broken_in_child, timeout=10)
    try:
        assert [exporter.export([_span()]) for _ in range(3)] == [SpanExportResult.FAILURE] * 3
        assert MEMORY.get_finished_spans() == ()
        assert exporter.export([_span()]) is SpanExportResult.SUCCESS  # now in-process
        assert [s.name for s in MEMORY.get_finished_spans()] == ["x"]
    finally:
        exporter.shutdown()


def _span():  # type: ignore[no-untyped-def]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    return memory.get_finished_spans()[0]
