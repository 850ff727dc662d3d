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

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from app.metrics import KNOWN_METHODS, LATENCY_BUCKETS, SIZE_BUCKETS, HttpMetrics, multiprocess_mode


class _Histogram:
    """Non-cumulative bucket counts (one per bound, plus +Inf) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * (n + 1)
        self.sum = 0.0


class _Route:
    __slots__ = ("duration", "exemplars", "request_size", "response_size", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.duration = _Histogram(len(LATENCY_BUCKETS))
        self.request_size = _Histogram(len(SIZE_BUCKETS))
        self.response_size = _Histogram(len(SIZE_BUCKETS))
        self.exemplars: dict[int, Exemplar] = {}


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
                response_size: int, exemplar: dict[str, str] | None) -> None:
        self._in_progress[method] -= 1
        r = self._routes.get((method, route))
        if r is None:
            r = self._routes[(method, route)] = _Route()
        statuses = r.statuses
        statuses[status] = statuses.get(status, 0) + 1
        h = r.duration
        i = bisect_left(LATENCY_BUCKETS, duration)
        h.counts[i] += 1
        h.sum += duration
        if exemplar is not None:
            r.exemplars[i] = Exemplar(exemplar, duration, time.time())
        h = r.request_size
        h.counts[bisect_left(SIZE_BUCKETS, request_size)] += 1
        h.sum += request_size
        h = r.response_size
        h.counts[bisect_left(SIZE_BUCKETS, response_size)] += 1
        h.sum += response_size

    # scrape (any thread) ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("http_requests", "Requests served, by route template and status",
                                       labels=["method", "route", "status"])
        routes = list(self._routes.items())
        for (method, route), r in routes:
            for status, n in list(r.statuses.items()):
                requests.add_metric([method, route, str(status)], n)
        yield requests
        for name, doc, attr, bounds in (
            ("http_request_duration_seconds", "Time to the last byte of the response", "duration", LATENCY_BUCKETS),
            ("http_request_size_bytes", "Request body size", "request_size", SIZE_BUCKETS),
            ("http_response_size_bytes", "Response body size", "response_size", SIZE_BUCKETS),
        ):
            family = HistogramMetricFamily(name, doc, labels=["method", "route"])
            les = [*(floatToGoString(b) for b in bounds), "+Inf"]
            for (method, route), r in routes:
                h = getattr(r, attr)
                counts, total = list(h.counts), h.sum
                exemplars = r.exemplars if attr == "duration" else {}
                cumulative, buckets = 0, []
                for i, (le, n) in enumerate(zip(les, counts, strict=True)):
                    cumulative += n
                    ex = exemplars.get(i)
                    buckets.append((le, cumulative, ex) if ex is not None else (le, cumulative))
                family.add_metric([method, route], buckets, total)
            yield family
        progress = GaugeMetricFamily("http_requests_in_progress", "Requests being served", labels=["method"])
        seen = {m for m, _ in routes}
        for method, n in sorted(self._in_progress.items()):
            if n or method in seen:
                progress.add_metric([method], n)
        yield progress


def make_http_metrics(registry: CollectorRegistry) -> LeanHttpMetrics | HttpMetrics:
    """Lock-free stats in one process; prometheus-client's mergeable files under several workers."""
    return HttpMetrics(registry) if multiprocess_mode() else LeanHttpMetrics(registry)
