"""System overview: is Telltale healthy right now, and how are its requests doing (RED)."""

from __future__ import annotations

from ..board import GREEN, ORANGE, RED, UP_DOWN, Board, Q, above, below, value_map

SVC = 'job="telltale"'
STATUS = value_map({"0": ("healthy", GREEN), "1": ("degraded", ORANGE), "2": ("unhealthy", RED)})
NO_5XX = "no request has been answered with a 5xx in the window"


def _quantile(q: float) -> Q:
    return Q(
        f"histogram_quantile({q}, sum by (route, le) "
        f"(rate(http_request_duration_seconds_bucket{{{SVC}}}[$__rate_interval])))",
        f"p{round(q * 100)} {{{{route}}}}",
        exemplars=True,
    )


def build() -> Board:
    b = Board(
        uid="telltale-overview",
        title="System overview",
        folder="Telltale",
        description="Health of every check, uptime and the service's requests (rate, errors, duration).",
        refresh="5s",
        tags=("service", "realtime"),
    )
    b.row("Health")
    b.stat(
        "Overall status",
        "The aggregate of every health check, as /health answers it: 0 healthy, 1 degraded, 2 unhealthy.",
        "none",
        [
            Q(
                f'max(telltale_health_status{{{SVC}, status="degraded"}}) '
                f'+ 2 * max(telltale_health_status{{{SVC}, status="unhealthy"}})',
                "status",
            )
        ],
        mappings=STATUS,
    )
    b.stat(
        "Service up",
        "1 when Prometheus scraped the service on its last attempt; ServiceDown pages after 1 minute at 0.",
        "none",
        [Q(f"up{{{SVC}}}", "{{instance}}")],
        thresholds=UP_DOWN,
        mappings=value_map({"0": ("down", RED), "1": ("up", GREEN)}),
    )
    b.stat(
        "Uptime",
        "Time since the service's process started (a restart resets it).",
        "s",
        [Q(f"time() - process_start_time_seconds{{{SVC}}}", "{{instance}}")],
    )
    b.stat(
        "Endpoints reachable",
        "Share of the blackbox-exporter's http_2xx probes that succeed now; EndpointDown pages on any at 0.",
        "percentunit",
        [Q('avg(probe_success{job="blackbox"})', "probes")],
        thresholds=UP_DOWN,
    )
    b.stat(
        "Checks",
        "Each health check's current status: healthy, degraded or unhealthy (HealthCheckUnhealthy warns after "
        "2 minutes unhealthy).",
        "none",
        [
            Q(
                f'max by (check) (telltale_health_check_status{{{SVC}, status="degraded"}}) '
                f'+ 2 * max by (check) (telltale_health_check_status{{{SVC}, status="unhealthy"}})',
                "{{check}}",
            )
        ],
        width=24,
        mappings=STATUS,
    )
    b.timeseries(
        "Probe success by endpoint",
        "Blackbox http_2xx probe result per endpoint (1 success, 0 failure), the view from outside.",
        "none",
        [Q('probe_success{job="blackbox"}', "{{instance}}")],
        thresholds=UP_DOWN,
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Check latency",
        "How long each health check's last run took.",
        "s",
        [Q(f"telltale_health_check_duration_seconds{{{SVC}}}", "{{check}}")],
    )

    b.row("RED: requests")
    b.timeseries(
        "Request rate by route",
        "Requests per second by route template (Rate).",
        "reqps",
        [Q(f"sum by (route) (rate(http_requests_total{{{SVC}}}[$__rate_interval]))", "{{route}}")],
    )
    b.timeseries(
        "Error ratio",
        "Share of requests answered with a 5xx (Errors); HighErrorRate warns at its warning number and pages at "
        "its critical one (5-minute window).",
        "percentunit",
        [
            Q(
                f'(sum(rate(http_requests_total{{{SVC}, status=~"5.."}}[$__rate_interval])) '
                f"or sum(rate(http_requests_total{{{SVC}}}[$__rate_interval])) * 0) "
                f"/ sum(rate(http_requests_total{{{SVC}}}[$__rate_interval]))",
                "5xx ratio",
            )
        ],
        thresholds=above("HighErrorRate"),
        min_value=0,
    )
    b.timeseries(
        "Latency p50 / p95 / p99 by route",
        "Response time quantiles by route from the request-duration histogram (Duration); HighResponseTime "
        "alerts on the overall p95. The dots are exemplars: a sampled request's trace, one click away in Tempo.",
        "s",
        [_quantile(0.5), _quantile(0.95), _quantile(0.99)],
        thresholds=above("HighResponseTime"),
    )
    b.timeseries(
        "Responses by status",
        "Requests per second by HTTP status code.",
        "reqps",
        [Q(f"sum by (status) (rate(http_requests_total{{{SVC}}}[$__rate_interval]))", "{{status}}")],
        stack=True,
    )
    b.timeseries(
        "5xx by route",
        "Which routes answer with a 5xx, per second.",
        "reqps",
        [
            Q(
                f'sum by (route, status) (rate(http_requests_total{{{SVC}, status=~"5.."}}[$__rate_interval]))',
                "{{route}} {{status}}",
                empty=NO_5XX,
            )
        ],
    )
    b.timeseries(
        "In progress",
        "Requests being served right now, by method (saturation of the service).",
        "short",
        [Q(f"sum by (method) (http_requests_in_progress{{{SVC}}})", "{{method}}")],
    )

    b.row("Background")
    b.timeseries(
        "Scheduler heartbeat age",
        "Seconds since the platform's scheduler last wrote its heartbeat; SchedulerHeartbeatStale warns above "
        "its threshold.",
        "s",
        [
            Q(
                "time() - telltale_scheduler_heartbeat_timestamp_seconds",
                "heartbeat age",
                empty="present only when TELLTALE_SCHEDULER_HEARTBEAT_KEY is configured",
            )
        ],
        thresholds=above("SchedulerHeartbeatStale"),
    )
    b.timeseries(
        "TLS certificate time left",
        "Time until each configured TLS host's certificate expires; TLSCertificateExpiring warns and then pages.",
        "s",
        [
            Q(
                "telltale_tls_certificate_expiry_timestamp_seconds - time()",
                "{{host}}",
                empty="present only when TELLTALE_TLS_HOSTS lists hosts",
            )
        ],
        thresholds=below("TLSCertificateExpiring"),
    )
    return b
