"""The batched request statistics give exactly what prometheus-client's own metrics give, flush or no flush."""

from __future__ import annotations

import random
import threading

import pytest
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from telltale.app.instrumentation.http_metrics import LATENCY_BUCKETS, SIZE_BUCKETS, HttpMetrics
from telltale.app.instrumentation.request_stats import LeanHttpMetrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if family.name.startswith("http_") and not s.name.endswith("_created")
    }


def observations(n: int, seed: int) -> list[tuple[str, str, int, float, int, int]]:
    """Random requests, with values right on bucket bounds (a bound is inclusive: `le`) mixed in."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        duration = rng.choice([*LATENCY_BUCKETS, rng.uniform(0, 12), rng.expovariate(100)])
        size = rng.choice([0, 0, *SIZE_BUCKETS, rng.randrange(20_000_000)])
        out.append(
            (
                rng.choice(["GET", "POST"]),
                rng.choice(["/a", "/b/{id}", "<unmatched>"]),
                rng.choice([200, 201, 404, 500]),
                duration,
                int(size),
                int(rng.choice([0, 17, 1000, 99_999])),
            )
        )
    return out


@pytest.mark.parametrize("flush_at", [1, 7, 512, 10_000])
def test_batched_totals_equal_prometheus_client(flush_at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LeanHttpMetrics, "FLUSH_AT", flush_at)
    lean_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    lean, reference = LeanHttpMetrics(lean_registry), HttpMetrics(reference_registry)
    for method, route, status, duration, request_size, response_size in observations(3000, flush_at):
        lean.started(method)
        reference.started(method)
        lean.observe(method, route, status, duration, request_size, response_size, None)
        reference.observe(method, route, status, duration, request_size, response_size, None)
    lean.started("GET")  # one still in flight
    reference.started("GET")
    got, want = samples(lean_registry), samples(reference_registry)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert got[("http_requests_in_progress", (("method", "GET"),))] == 1


def test_a_scrape_sees_pending_requests_without_folding_them() -> None:
    registry = CollectorRegistry()
    stats = LeanHttpMetrics(registry)
    stats.observe("GET", "/a", 200, 0.01, 0, 10, None)
    assert samples(registry)[("http_requests_total", (("method", "GET"), ("route", "/a"), ("status", "200")))] == 1
    assert len(stats.pending) == 1  # still pending: the scrape folded a copy
    stats.flush()
    stats.observe("GET", "/a", 200, 0.01, 0, 10, None)
    assert samples(registry)[("http_requests_total", (("method", "GET"), ("route", "/a"), ("status", "200")))] == 2


def test_exemplar_is_the_latest_sampled_request_in_its_bucket() -> None:
    registry = CollectorRegistry()
    stats = LeanHttpMetrics(registry)
    first = SpanContext(0xA1, 0xB1, False, TraceFlags(1))
    latest = SpanContext(0xA2, 0xB2, False, TraceFlags(1))
    stats.observe("GET", "/a", 200, 0.02, 0, 0, first)
    stats.flush()
    stats.observe("GET", "/a", 200, 0.021, 0, 0, latest)
    stats.observe("GET", "/a", 200, 0.022, 0, 0, None)  # unsampled: keeps no exemplar
    text = generate_openmetrics(registry).decode()
    bucket = next(
        line
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_bucket{") and 'le="0.025"' in line
    )
    assert f'trace_id="{0xA2:032x}"' in bucket and "0.021" in bucket.split("#")[1]


def test_scrapes_in_a_thread_never_see_a_counter_go_back() -> None:
    registry = CollectorRegistry()
    stats = LeanHttpMetrics(registry)
    stop = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not stop.is_set():
            seen.append(sum(v for (name, _), v in samples(registry).items() if name == "http_requests_total"))

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for i in range(20_000):
            stats.observe("GET", f"/r{i % 3}", 200, 0.001, 0, 0, None)
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen)
    assert samples(registry)[("http_requests_total", (("method", "GET"), ("route", "/r0"), ("status", "200")))] == 6667


def test_both_implementations_expose_the_one_definition_of_each_series() -> None:
    """Names, types, help strings and label names come from `http_metrics`'s table, in both implementations."""
    from prometheus_client import disable_created_metrics
    from telltale.app.instrumentation import http_metrics

    disable_created_metrics()  # as the service does (app/metrics.py)
    table = {
        s.name: s
        for s in (
            http_metrics.REQUESTS,
            http_metrics.DURATION,
            http_metrics.REQUEST_SIZE,
            http_metrics.RESPONSE_SIZE,
            http_metrics.IN_PROGRESS,
        )
    }
    described = {}
    for make in (LeanHttpMetrics, HttpMetrics):
        registry = CollectorRegistry()
        stats = make(registry)
        stats.started("GET")
        stats.observe("GET", "/a", 200, 0.01, 1, 2, None)
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        got = {
            name: (f.type, f.documentation, sorted({k for s in f.samples for k in s.labels} - {"le"}))
            for name, f in families.items()
        }
        assert set(got) == set(table), make
        for name, series in table.items():
            assert got[name][1:] == (series.help, sorted(series.labels)), (make, name)
        described[make] = got
    assert described[LeanHttpMetrics] == described[HttpMetrics]


def test_a_second_set_of_http_metrics_in_one_registry_is_refused() -> None:
    """Custom collectors describe their names, so prometheus-client catches duplicate registrations."""
    registry = CollectorRegistry()
    LeanHttpMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        HttpMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LeanHttpMetrics(registry)
