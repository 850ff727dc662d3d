"""Request metrics without per-observation locks: plain counters on the event loop, families built at scrape.

prometheus-client guards every `inc()`/`observe()` with a lock, and a request makes six of them (in
progress up and down, the counter, three histograms): most of the middleware's cost. Here every
observation happens on the event-loop thread, so plain integer and float adds are enough; a scrape
(rendered in a worker thread) reads them and builds fresh metric families, the custom-collector
pattern of client_python. Under several workers the prometheus-client metrics in `app.metrics` are
used instead: only they can be merged across processes.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

from app.metrics import KNOWN_METHODS, LATENCY_BUCKETS, SIZE_BUCKETS, HttpMetrics, multiprocess_mode

_LAT = len(LATENCY_BUCKETS) + 1  # bucket counts per histogram: one per bound, plus +Inf
_SIZE = len(SIZE_BUCKETS) + 1
_REQ = _LAT  # offsets of the request- and response-size buckets in a route's flat count list
_RESP = _LAT + _SIZE


class _Route:
    """One (method, route): status counts, and the three histograms as one flat list of non-cumulative
    bucket counts (latency, request size, response size) with their three sums; the latest exemplar
    per latency bucket is kept raw (span context, value, time) and formatted at scrape."""

    __slots__ = ("counts", "exemplars", "statuses", "sums")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.counts = [0] * (_LAT + 2 * _SIZE)
        self.sums = [0.0, 0, 0]
        self.exemplars: dict[int, tuple[SpanContext, float, float]] = {}


class LeanHttpMetrics:
    """Same series as `app.metrics.HttpMetrics`; registered in the registry as a collector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._routes: dict[tuple[str, str], _Route] = {}
        self._in_progress: dict[str, int] = dict.fromkeys(KNOWN_METHODS | {"OTHER"}, 0)
        self.multiprocess = False
        if registry is not None:
            registry.register(self)  # type: ignore[arg-type]

    # hot path (event-loop thread only) -------------------------------------------------------------
    def started(self, method: str) -> None:
        self._in_progress[method] += 1

    def observe(self, method: str, route: str, status: int, duration: float, request_size: int,
                response_size: int, sampled: SpanContext | None) -> None:
        self._in_progress[method] -= 1
        r = self._routes.get((method, route))
        if r is None:
            r = self._routes[(method, route)] = _Route()
        statuses = r.statuses
        statuses[status] = statuses.get(status, 0) + 1
        counts = r.counts
        i = bisect_left(LATENCY_BUCKETS, duration)
        counts[i] += 1
        counts[_REQ + bisect_left(SIZE_BUCKETS, request_size) if request_size else _REQ] += 1
        counts[_RESP + bisect_left(SIZE_BUCKETS, response_size) if response_size else _RESP] += 1
        sums = r.sums
        sums[0] += duration
        sums[1] += request_size
        sums[2] += response_size
        if sampled is not None:
            r.exemplars[i] = (sampled, duration, time.time())

    # scrape (any thread) ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("http_requests", "Requests served, by route template and status",
                                       labels=["method", "route", "status"])
        routes = [(key, r, list(r.counts), list(r.sums), dict(r.exemplars)) for key, r in list(self._routes.items())]
        for (method, route), r, *_ in routes:
            for status, n in list(r.statuses.items()):
                requests.add_metric([method, route, str(status)], n)
        yield requests
        for name, doc, offset, bounds, which in (
            ("http_request_duration_seconds", "Time to the last byte of the response", 0, LATENCY_BUCKETS, 0),
            ("http_request_size_bytes", "Request body size", _REQ, SIZE_BUCKETS, 1),
            ("http_response_size_bytes", "Response body size", _RESP, SIZE_BUCKETS, 2),
        ):
            family = HistogramMetricFamily(name, doc, labels=["method", "route"])
            les = [*(floatToGoString(b) for b in bounds), "+Inf"]
            for (method, route), _, counts, sums, exemplars in routes:
                cumulative, buckets = 0, []
                for i, le in enumerate(les):
                    cumulative += counts[offset + i]
                    kept = exemplars.get(i) if which == 0 else None
                    buckets.append((le, cumulative, _exemplar(*kept)) if kept is not None else (le, cumulative))
                family.add_metric([method, route], buckets, sums[which])
            yield family
        progress = GaugeMetricFamily("http_requests_in_progress", "Requests being served", labels=["method"])
        seen = {m for (m, _), *_ in routes}
        for method, n in sorted(self._in_progress.items()):
            if n or method in seen:
                progress.add_metric([method], n)
        yield progress


def _exemplar(context: SpanContext, value: float, timestamp: float) -> Exemplar:
    return Exemplar({"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")},
                    value, timestamp)


def make_http_metrics(registry: CollectorRegistry) -> LeanHttpMetrics | HttpMetrics:
    """Lock-free stats in one process; prometheus-client's mergeable files under several workers."""
    return HttpMetrics(registry) if multiprocess_mode() else LeanHttpMetrics(registry)
