"""Metric names a dashboard may query: those Telltale documents (docs/metrics.md), the recording rules'
series, node-exporter 1.5's and blackbox-exporter 0.23's names (http prober), and Prometheus's per-target
series and a few of its own. tests/test_dashboard_queries.py checks the exporters' and Prometheus's names
against the real binaries' output. A query naming anything else is a typo or a metric that does not exist."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .rules import recorded_series

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

# Prometheus writes these for every target it scrapes.
PROMETHEUS_PER_TARGET = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)

# node-exporter 1.5 (Debian's prometheus-node-exporter), default collectors on Linux.
NODE_EXPORTER = frozenset(
    {
        "node_uname_info",
        "node_boot_time_seconds",
        "node_time_seconds",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_cpu_seconds_total",
        "node_context_switches_total",
        "node_procs_running",
        "node_procs_blocked",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_Cached_bytes",
        "node_memory_Buffers_bytes",
        "node_memory_SwapTotal_bytes",
        "node_memory_SwapFree_bytes",
        "node_vmstat_pgmajfault",
        "node_vmstat_pgfault",
        "node_pressure_cpu_waiting_seconds_total",
        "node_pressure_memory_waiting_seconds_total",
        "node_pressure_memory_stalled_seconds_total",
        "node_pressure_io_waiting_seconds_total",
        "node_pressure_io_stalled_seconds_total",
        "node_filesystem_size_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_free_bytes",
        "node_filesystem_files",
        "node_filesystem_files_free",
        "node_filesystem_readonly",
        "node_filesystem_device_error",
        "node_disk_io_time_seconds_total",
        "node_disk_io_time_weighted_seconds_total",
        "node_disk_read_bytes_total",
        "node_disk_written_bytes_total",
        "node_disk_reads_completed_total",
        "node_disk_writes_completed_total",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_network_receive_packets_total",
        "node_network_transmit_packets_total",
        "node_network_receive_errs_total",
        "node_network_transmit_errs_total",
        "node_network_receive_drop_total",
        "node_network_transmit_drop_total",
        "node_netstat_Tcp_CurrEstab",
    }
)

# blackbox-exporter 0.23, http prober.
BLACKBOX_EXPORTER = frozenset(
    {
        "probe_success",
        "probe_duration_seconds",
        "probe_http_duration_seconds",
        "probe_http_status_code",
        "probe_http_content_length",
        "probe_http_version",
        "probe_http_ssl",
        "probe_http_redirects",
        "probe_dns_lookup_time_seconds",
        "probe_ip_protocol",
        "probe_failed_due_to_regex",
    }
)

# Prometheus's own metrics (job "prometheus", the server scraping itself), those the dashboards use.
PROMETHEUS_SELF = frozenset(
    {
        "prometheus_tsdb_head_series",
        "prometheus_rule_evaluation_failures_total",
        "prometheus_rule_group_last_duration_seconds",
        "prometheus_rule_group_iterations_missed_total",
        "prometheus_notifications_dropped_total",
    }
)

_NAME = re.compile(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`")


@cache
def documented() -> frozenset[str]:
    """Names in the first column of docs/metrics.md's metric tables (histograms with their three series),
    and the default SQL queries' `telltale_sql_*` names."""
    names: set[str] = set()
    text = DOCS.read_text()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        kind = cells[1] if len(cells) > 1 else ""
        for name in _NAME.findall(cells[0]):
            if not name.startswith("_"):
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    names.update(re.findall(r"`(telltale_sql_[a-z0-9_]+)", text))
    names.discard("telltale_sql_")
    return frozenset(names)


def known_metrics() -> frozenset[str]:
    return (
        documented() | recorded_series() | NODE_EXPORTER | BLACKBOX_EXPORTER | PROMETHEUS_PER_TARGET | PROMETHEUS_SELF
    )
