"""`/metrics`: health results as Prometheus series, rendered off the event loop."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.auth import require_bearer
from checks.base import Status
from checks.runner import CheckRunner, aggregate

router = APIRouter()
_STATUSES = [s.value for s in Status]


class HealthCollector:
    """Exposes the latest result of every check; never probes (a scrape must not query the database)."""

    def __init__(self, runner: CheckRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        import time

        now = time.time()
        status = GaugeMetricFamily("telltale_health_check_status",
                                   "1 for the check's current status, 0 for the others", labels=["check", "status"])
        duration = GaugeMetricFamily("telltale_health_check_duration_seconds",
                                     "Latency of the check's last run", labels=["check"])
        age = GaugeMetricFamily("telltale_health_check_age_seconds", "Age of the result currently served",
                                labels=["check"])
        overall = GaugeMetricFamily("telltale_health_status", "1 for the aggregate status", labels=["status"])
        tls = GaugeMetricFamily("telltale_tls_certificate_expiry_timestamp_seconds",
                                "notAfter of the certificate served by a configured TLS host", labels=["host"])
        heartbeat = GaugeMetricFamily("telltale_scheduler_heartbeat_timestamp_seconds",
                                      "Last scheduler heartbeat read from Redis")
        results = [r for n in self.runner.checks if (r := self.runner.latest(n)) is not None]
        for r in results:
            for s in _STATUSES:
                status.add_metric([r.name, s], 1.0 if r.status.value == s else 0.0)
            duration.add_metric([r.name], r.latency_seconds)
            age.add_metric([r.name], r.age(now))
            if r.component == "tls":
                for host, seen in r.observed.get("hosts", {}).items():
                    if "expires_at" in seen:
                        tls.add_metric([host], seen["expires_at"])
            if r.component == "scheduler" and "last_run_timestamp" in r.observed:
                heartbeat.add_metric([], r.observed["last_run_timestamp"])
        if results:
            agg = aggregate(results)
            for s in _STATUSES:
                overall.add_metric([s], 1.0 if agg.value == s else 0.0)
        info = GaugeMetricFamily("telltale_build_info", "Telltale's version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield from (status, duration, age, overall, tls, heartbeat, info)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state.telltale
    if state.settings.metrics_token is not None:
        require_bearer(request, state.settings.metrics_token, "TELLTALE_METRICS_TOKEN")
    registry: CollectorRegistry = state.registry
    body = await run_in_threadpool(generate_latest, registry)  # rendering is CPU work: keep it off the loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)
