"""`/metrics`: health results, request metrics and business events as Prometheus series.

The exposition is rendered off the event loop (in a forked child, see app/exposition.py), in the classic text format
or, when the scraper asks for it (`Accept: application/openmetrics-text`), in OpenMetrics with
exemplars; gzip when accepted. Under `telltale serve --workers N` the values come from
prometheus-client's multiprocess files, and exemplars are re-attached from the answering worker's
own recent observations (prometheus-client drops them in multiprocess mode; see docs/metrics.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.app import __version__
from telltale.app.auth import require_bearer
from telltale.app.instrumentation.exposition import RenderTimeout, render_sync
from telltale.checks.base import Status
from telltale.checks.runner import CheckRunner, aggregate

router = APIRouter()
_STATUSES = [s.value for s in Status]

# No `_created` series: they double the series count of every counter and histogram for a value
# nobody graphs, and rendering cost is per line.
disable_created_metrics()


class HealthCollector:
    """Exposes the latest result of every check; never probes (a scrape must not query the database)."""

    def __init__(self, runner: CheckRunner) -> None:
        self.runner = runner

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so a second registration of these names is refused."""
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        status = GaugeMetricFamily(
            "telltale_health_check_status",
            "1 for the check's current status, 0 for the others",
            labels=["check", "status"],
        )
        duration = GaugeMetricFamily(
            "telltale_health_check_duration_seconds", "Latency of the check's last run", labels=["check"]
        )
        age = GaugeMetricFamily(
            "telltale_health_check_age_seconds", "Age of the result currently served", labels=["check"]
        )
        overall = GaugeMetricFamily("telltale_health_status", "1 for the aggregate status", labels=["status"])
        tls = GaugeMetricFamily(
            "telltale_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate served by a configured TLS host",
            labels=["host"],
        )
        heartbeat = GaugeMetricFamily(
            "telltale_scheduler_heartbeat_timestamp_seconds", "Last scheduler heartbeat read from Redis"
        )
        info = GaugeMetricFamily("telltale_build_info", "Telltale's version", labels=["version"])
        return status, duration, age, overall, tls, heartbeat, info

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        status, duration, age, overall, tls, heartbeat, info = self._families()
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
        info.add_metric([__version__], 1.0)
        yield from (status, duration, age, overall, tls, heartbeat, info)


render = render_sync  # the synchronous renderer, for benchmarks and tests


def scrape_timeout(header: str | None) -> float | None:
    """Prometheus's `X-Prometheus-Scrape-Timeout-Seconds`; a value that is not a sane duration is ignored."""
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 < value <= 3600 else None


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state.telltale
    if state.settings.metrics_token is not None:
        require_bearer(request, state.settings.metrics_token, "TELLTALE_METRICS_TOKEN")
    registry = getattr(request.app.state, "exposition_registry", None) or state.registry
    try:
        body, content_type, gzipped = await request.app.state.renderer.render(
            registry,
            request.headers.get("accept"),
            request.headers.get("accept-encoding"),
            scrape_timeout(request.headers.get("x-prometheus-scrape-timeout-seconds")),
        )
    except RenderTimeout as exc:  # the scraper is about to give up: say why, while it still listens
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Cache-Control": "no-store"})
    headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {"Vary": "Accept-Encoding"}
    return Response(body, media_type=None, headers={"Content-Type": content_type, **headers})
