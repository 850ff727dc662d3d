"""The span queue: batches in order, never blocks a request, counts what it drops, flushes on shutdown.

The exporter here is an in-memory recorder (the OTLP path through a real receiver is in test_tracing);
what is under test is the queue between the request and the exporter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags
from telltale.app.instrumentation.span_queue import SpanQueue


class Recorder(SpanExporter):
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append([s.name for s in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


def span(name: str, sampled: bool = True) -> ReadableSpan:
    return ReadableSpan(name=name, context=SpanContext(1, 2, False, TraceFlags(1 if sampled else 0)))


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_batch_is_exported_at_once_in_order() -> None:
    recorder = Recorder()
    queue = SpanQueue(recorder, max_export_batch_size=3, schedule_delay_millis=60_000)
    try:
        for i in range(7):
            queue.put(span(f"s{i}"))
        wait_for(lambda: len(recorder.batches) == 2)
        assert recorder.batches == [["s0", "s1", "s2"], ["s3", "s4", "s5"]]  # s6 waits for its batch or the timer
    finally:
        queue.shutdown()
    assert recorder.batches[-1] == ["s6"] and recorder.shut  # shutdown flushes the rest


def test_the_timer_exports_a_partial_batch() -> None:
    recorder = Recorder()
    queue = SpanQueue(recorder, max_export_batch_size=100, schedule_delay_millis=50)
    try:
        queue.put(span("lonely"))
        wait_for(lambda: recorder.batches == [["lonely"]])
    finally:
        queue.shutdown()


def test_a_stuck_exporter_never_blocks_and_drops_are_counted() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    drops: list[int] = []
    queue = SpanQueue(
        recorder, lambda: drops.append(1), max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    try:
        queue.put(span("a"))
        queue.put(span("b"))  # a full batch: the export thread takes it and sticks in the exporter
        wait_for(lambda: len(queue._queue) == 0)
        started = time.perf_counter()
        for i in range(10):
            queue.put(span(f"x{i}"))
        assert time.perf_counter() - started < 0.1
        assert len(drops) == 6  # four fit the queue
        gate.set()
        assert queue.force_flush()
        assert [name for batch in recorder.batches for name in batch] == ["a", "b", "x0", "x1", "x2", "x3"]
    finally:
        gate.set()
        queue.shutdown()


def test_unsampled_spans_are_not_queued() -> None:
    recorder = Recorder()
    queue = SpanQueue(recorder, schedule_delay_millis=60_000)
    try:
        queue.on_end(span("kept"))
        queue.on_end(span("record-only", sampled=False))
        queue.force_flush()
        assert recorder.batches == [["kept"]]
    finally:
        queue.shutdown()


def test_bsp_environment_is_honoured_and_bad_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "not-a-number")
    queue = SpanQueue(Recorder())
    try:
        assert (queue.max_queue_size, queue.batch_size, queue.delay) == (64, 16, 5.0)
    finally:
        queue.shutdown()
