"""The HTTP request series: names, help strings, buckets and the label-child cache the middleware feeds.

Under `telltale serve --workers N` the values come from prometheus-client's multiprocess files, and
exemplars are re-attached from the answering worker's own recent observations (prometheus-client drops
them in multiprocess mode; see docs/metrics.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

UNMATCHED = "<unmatched>"
# Web latencies, 5 ms to 10 s: 11 bounds (+Inf), enough for the SLO thresholds in prometheus/.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Bodies: 100 B to 10 MB, one bucket per decade.
SIZE_BUCKETS = (100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class Series(NamedTuple):
    """One HTTP series as both implementations expose it (prometheus-client's and the lean stats)."""

    name: str
    help: str
    labels: tuple[str, ...]


# The one definition of the HTTP series: `HttpMetrics` (several workers) and `request_stats` (one
# process) both build from these, so a scrape looks the same whichever is serving.
REQUESTS = Series("http_requests", "Requests served, by route template and status", ("method", "route", "status"))
DURATION = Series("http_request_duration_seconds", "Time to the last byte of the response", ("method", "route"))
REQUEST_SIZE = Series("http_request_size_bytes", "Request body size", ("method", "route"))
RESPONSE_SIZE = Series("http_response_size_bytes", "Response body size", ("method", "route"))
IN_PROGRESS = Series("http_requests_in_progress", "Requests being served", ("method",))
# prometheus-client's multiprocess mode for the gauge: a live mode, so a dead worker's files (and the
# requests it had in flight) leave the sum when it is marked dead (`multiprocess.reap_dead_workers`).
IN_PROGRESS_MULTIPROCESS_MODE: Final = "livesum"


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class HttpMetrics:
    """The request-metrics series, with label children cached so the hot path is a dict lookup."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(*REQUESTS, registry=registry)
        self.duration = Histogram(*DURATION, buckets=LATENCY_BUCKETS, registry=registry)
        self.in_progress = Gauge(*IN_PROGRESS, registry=registry, multiprocess_mode=IN_PROGRESS_MULTIPROCESS_MODE)
        self.request_size = Histogram(*REQUEST_SIZE, buckets=SIZE_BUCKETS, registry=registry)
        self.response_size = Histogram(*RESPONSE_SIZE, buckets=SIZE_BUCKETS, registry=registry)
        self._route_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._status_children: dict[tuple[str, str, int], Any] = {}
        self._progress_children: dict[str, Any] = {}
        # multiprocess mode: prometheus-client drops exemplars, so keep the latest per bucket here
        self.multiprocess = multiprocess_mode()
        self.exemplars: dict[tuple[str, str, str], Exemplar] = {}
        self._bounds = [*LATENCY_BUCKETS, float("inf")]
        self._bound_labels = [floatToGoString(b) for b in self._bounds]

    def started(self, method: str) -> None:
        child = self._progress_children.get(method)
        if child is None:
            child = self._progress_children[method] = self.in_progress.labels(method)
        child.inc()

    def observe(
        self,
        method: str,
        route: str,
        status: int,
        duration: float,
        request_size: int,
        response_size: int,
        sampled: Any = None,
    ) -> None:
        """`sampled`: the request's span context when its span was sampled (the duration's exemplar)."""
        self._progress_children[method].dec()
        key = (method, route, status)
        counter = self._status_children.get(key)
        if counter is None:
            counter = self._status_children[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        children = self._route_children.get((method, route))
        if children is None:
            children = self._route_children[(method, route)] = (
                self.duration.labels(method, route),
                self.request_size.labels(method, route),
                self.response_size.labels(method, route),
            )
        hist, req, resp = children
        if sampled is None:
            hist.observe(duration)
        else:
            exemplar = {"trace_id": format(sampled.trace_id, "032x"), "span_id": format(sampled.span_id, "016x")}
            hist.observe(duration, exemplar)
            if self.multiprocess:
                self._keep_exemplar(method, route, duration, exemplar)
        req.observe(request_size)
        resp.observe(response_size)

    def _keep_exemplar(self, method: str, route: str, value: float, labels: dict[str, str]) -> None:
        for bound, le in zip(self._bounds, self._bound_labels, strict=True):
            if value <= bound:
                self.exemplars[(method, route, le)] = Exemplar(labels, value, time.time())
                return


class _MultiProcessExposition:
    """prometheus-client's multiprocess collector, with this worker's exemplars put back on the buckets.

    An exemplar is one example trace per bucket; the answering worker's latest one is as good an
    example as any worker's, and the bucket counts themselves are the sum over every worker.
    """

    def __init__(self, http: HttpMetrics) -> None:
        from prometheus_client import multiprocess

        self.http = http
        self.inner = multiprocess.MultiProcessCollector(None)
        self.path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        self.supervisor = os.getppid()  # taken in the worker: a scrape runs in the worker's render child

    def collect(self) -> Iterable[Metric]:
        from telltale.app.instrumentation.multiprocess import reap_dead_workers

        reap_dead_workers(self.path, self.supervisor)  # a killed worker's in-flight requests leave the gauge
        exemplars = self.http.exemplars
        for metric in self.inner.collect():
            if metric.name == DURATION.name and exemplars:
                samples = []
                for s in metric.samples:
                    if s.name.endswith("_bucket"):
                        ex = exemplars.get(
                            (s.labels.get("method", ""), s.labels.get("route", ""), s.labels.get("le", ""))
                        )
                        if ex is not None:
                            s = Sample(s.name, s.labels, s.value, s.timestamp, ex)
                    samples.append(s)
                metric.samples = samples
            yield metric


def exposition_registry(registry: CollectorRegistry, health: Any, http: HttpMetrics) -> CollectorRegistry:
    """What `/metrics` renders: the app's registry, or under several workers their merged files; with the
    service's own `process_*` series either way (the whole service under several workers)."""
    import multiprocessing

    from telltale.app.instrumentation.process_metrics import ProcessMetrics

    if not multiprocess_mode():
        registry.register(ProcessMetrics())  # type: ignore[arg-type]
        return registry
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_MultiProcessExposition(http))  # type: ignore[arg-type]
    merged.register(health)  # type: ignore[arg-type]  # per-process view of the shared dependencies
    # a uvicorn worker is a multiprocessing child of the supervisor: measure the supervisor and its workers
    parent = multiprocessing.parent_process()
    merged.register(ProcessMetrics(supervisor=parent.pid if parent is not None else None))  # type: ignore[arg-type]
    return merged
