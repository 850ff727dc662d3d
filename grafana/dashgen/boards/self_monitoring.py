"""Telltale itself: is the monitoring working, and what does it cost (probes, collectors, scrapes, spans)."""

from __future__ import annotations

from ..board import UP_DOWN, Board, Q

OWN = 'job=~"telltale|telltale-exporter"'
TRACING_OFF = "tracing is off (no OTEL_EXPORTER_OTLP_ENDPOINT), so no span is exported or dropped"


def build() -> Board:
    b = Board(
        uid="telltale-self",
        title="Telltale itself",
        folder="Telltale",
        description="Monitoring the monitor: probe latency, exporter collectors and SQL queries, scrape and "
        "render cost, span export.",
        refresh="5s",
        tags=("service", "meta", "realtime"),
    )
    b.row("Probes and checks")
    b.timeseries(
        "Health check latency",
        "How long each of the service's health checks took on its last run (its probes of the dependencies).",
        "s",
        [Q('telltale_health_check_duration_seconds{job="telltale"}', "{{check}}")],
    )
    b.timeseries(
        "Probe duration",
        "Blackbox probe duration per endpoint and HTTP phase (resolve, connect, tls, processing, transfer).",
        "s",
        [
            Q('probe_duration_seconds{job="blackbox"}', "total {{instance}}"),
            Q('probe_http_duration_seconds{job="blackbox"}', "{{phase}} {{instance}}"),
        ],
    )
    b.timeseries(
        "Probe HTTP status",
        "HTTP status code the blackbox probe got from each endpoint (0 when it got no answer).",
        "none",
        [Q('probe_http_status_code{job="blackbox"}', "{{instance}}")],
    )
    b.row("Exporter")
    b.timeseries(
        "Collector success",
        "1 when each exporter collector's last run succeeded within its timeout; ExporterCollectorFailing warns "
        "after 5 minutes at 0.",
        "none",
        [Q("telltale_exporter_collector_success", "{{collector}}")],
        thresholds=UP_DOWN,
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Collector duration",
        "How long each exporter collector took on its last run (bounded by the collector timeout).",
        "s",
        [Q("telltale_exporter_collector_duration_seconds", "{{collector}}")],
    )
    b.timeseries(
        "SQL query success and duration",
        "Success (1/0) of each operator-defined SQL query, and its last duration (exporter/queries.yml); "
        "ExporterQueryFailing warns after 10 minutes at 0.",
        "s",
        [
            Q("telltale_exporter_query_success", "success {{query}}"),
            Q("telltale_exporter_query_duration_seconds", "duration {{query}}"),
        ],
    )
    b.row("Scrapes and rendering")
    b.timeseries(
        "Scrape duration",
        "How long Prometheus took to scrape the service and the exporter (render cost seen from outside).",
        "s",
        [Q(f"scrape_duration_seconds{{{OWN}}}", "{{job}}")],
    )
    b.timeseries(
        "Samples per scrape",
        "Samples each scrape returned: the series count Telltale costs Prometheus.",
        "short",
        [Q(f"scrape_samples_scraped{{{OWN}}}", "{{job}}")],
    )
    b.timeseries(
        "Service CPU",
        "CPU seconds per second the service's processes use (requests, checks and /metrics rendering).",
        "percentunit",
        [Q('rate(process_cpu_seconds_total{job="telltale"}[$__rate_interval])', "{{instance}}")],
    )
    b.timeseries(
        "Service memory and file descriptors",
        "Resident memory of the service and the share of its file-descriptor limit in use.",
        "bytes",
        [
            Q('process_resident_memory_bytes{job="telltale"}', "resident"),
            Q('process_open_fds{job="telltale"} / process_max_fds{job="telltale"}', "fds used / max"),
        ],
    )
    b.row("Prometheus")
    b.timeseries(
        "Rule evaluation failures",
        "Failed rule evaluations per second by rule group: an alert that cannot evaluate cannot fire.",
        "ops",
        [
            Q(
                'sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total{job="prometheus"}'
                "[$__rate_interval]))",
                "{{rule_group}}",
            )
        ],
    )
    b.timeseries(
        "Rule group evaluation time",
        "How long each rule group's last evaluation took, and evaluations missed because the previous one ran "
        "too long.",
        "s",
        [
            Q('prometheus_rule_group_last_duration_seconds{job="prometheus"}', "{{rule_group}}"),
            Q(
                'sum(rate(prometheus_rule_group_iterations_missed_total{job="prometheus"}[$__rate_interval]))',
                "missed per second",
            ),
        ],
    )
    b.timeseries(
        "Head series and dropped notifications",
        "Series in Prometheus's head block (its memory cost) and alert notifications dropped per second.",
        "short",
        [
            Q('prometheus_tsdb_head_series{job="prometheus"}', "head series"),
            Q('rate(prometheus_notifications_dropped_total{job="prometheus"}[$__rate_interval])', "dropped"),
        ],
    )

    b.row("Tracing and events")
    b.timeseries(
        "Spans exported and dropped",
        "Spans accepted by the OTLP collector and spans lost before it (queue full, export failed), per second.",
        "ops",
        [
            Q("rate(telltale_otel_spans_exported_total[$__rate_interval])", "exported", empty=TRACING_OFF),
            Q(
                "sum by (reason) (rate(telltale_otel_spans_dropped_total[$__rate_interval]))",
                "dropped {{reason}}",
                empty=TRACING_OFF + " (or nothing was dropped)",
            ),
        ],
    )
    b.timeseries(
        "Label values folded",
        "Events whose organization or other label value was folded into `other` by a cap, per second: the "
        "series budget at work.",
        "ops",
        [
            Q("rate(telltale_organization_labels_folded_total[$__rate_interval])", "organization"),
            Q(
                "sum by (label) (rate(telltale_event_label_values_folded_total[$__rate_interval]))",
                "{{label}}",
                empty="no label has reached its cap",
            ),
        ],
    )
    b.timeseries(
        "Targets up",
        "1 for each scrape target Prometheus reached on its last attempt; TargetDown warns after 5 minutes.",
        "none",
        [Q("up", "{{job}} {{instance}}")],
        thresholds=UP_DOWN,
        width=24,
    )
    return b
