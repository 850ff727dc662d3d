"""Resources of the host from node-exporter, in USE rows: utilisation, saturation, errors per resource."""

from __future__ import annotations

from ..board import Board, Q, above

NODE = 'job="node", instance=~"$instance"'
FS = f'{NODE}, fstype!~"tmpfs|ramfs|squashfs|nsfs|overlay|autofs|fuse.*"'
NET = f'{NODE}, device!~"lo|veth.*|docker.*|br-.*|ifb.*"'


def build() -> Board:
    b = Board(
        uid="telltale-resources",
        title="Resources",
        folder="Infrastructure",
        description="CPU, memory, disks and network of the hosts (node-exporter), laid out USE: utilisation, "
        "saturation, errors.",
        refresh="5s",
        tags=("infrastructure", "realtime"),
    )
    b.variable("instance", "Host", 'label_values(node_uname_info{job="node"}, instance)', "node-exporter targets.")

    b.row("CPU")
    b.timeseries(
        "CPU utilisation",
        "Share of CPU time not idle, averaged over the host's CPUs; HighCPUUsage warns and pages at its numbers.",
        "percentunit",
        [
            Q(
                f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{NODE}, mode="idle"}}[$__rate_interval]))',
                "{{instance}}",
            )
        ],
        thresholds=above("HighCPUUsage"),
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "CPU saturation",
        "Share of time some task waited for a CPU (pressure stall information), and the 1-minute load average.",
        "percentunit",
        [
            Q(
                f"rate(node_pressure_cpu_waiting_seconds_total{{{NODE}}}[$__rate_interval])",
                "waiting {{instance}}",
                empty="kernels without PSI (CONFIG_PSI) expose no pressure metrics",
            )
        ],
        min_value=0,
    )
    b.timeseries(
        "Load average",
        "Runnable and uninterruptible tasks, averaged over 1, 5 and 15 minutes (compare with the CPU count).",
        "short",
        [
            Q(f"node_load1{{{NODE}}}", "1m {{instance}}"),
            Q(f"node_load5{{{NODE}}}", "5m {{instance}}"),
            Q(f"node_load15{{{NODE}}}", "15m {{instance}}"),
        ],
    )
    b.timeseries(
        "CPU by mode",
        "CPU seconds per second by mode, summed over CPUs (user, system, iowait...).",
        "short",
        [
            Q(
                f'sum by (mode) (rate(node_cpu_seconds_total{{{NODE}, mode!="idle"}}[$__rate_interval]))',
                "{{mode}}",
            )
        ],
        stack=True,
    )

    b.row("Memory")
    b.timeseries(
        "Memory utilisation",
        "Share of memory not available to new work (1 - MemAvailable / MemTotal); HighMemoryUsage warns and "
        "pages at its numbers.",
        "percentunit",
        [Q(f"1 - node_memory_MemAvailable_bytes{{{NODE}}} / node_memory_MemTotal_bytes{{{NODE}}}", "{{instance}}")],
        thresholds=above("HighMemoryUsage"),
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Memory",
        "Total, available, cached and buffer memory.",
        "bytes",
        [
            Q(f"node_memory_MemTotal_bytes{{{NODE}}}", "total"),
            Q(f"node_memory_MemAvailable_bytes{{{NODE}}}", "available"),
            Q(f"node_memory_Cached_bytes{{{NODE}}}", "cached"),
            Q(f"node_memory_Buffers_bytes{{{NODE}}}", "buffers"),
        ],
    )
    b.timeseries(
        "Memory saturation",
        "Major page faults per second (pages read back from disk): memory pressure made visible.",
        "short",
        [Q(f"rate(node_vmstat_pgmajfault{{{NODE}}}[$__rate_interval])", "major faults {{instance}}")],
    )
    b.timeseries(
        "Memory pressure",
        "Share of time some task stalled waiting for memory (pressure stall information).",
        "percentunit",
        [
            Q(
                f"rate(node_pressure_memory_waiting_seconds_total{{{NODE}}}[$__rate_interval])",
                "{{instance}}",
                empty="kernels without PSI (CONFIG_PSI) expose no pressure metrics",
            )
        ],
    )

    b.row("Disk")
    b.timeseries(
        "Filesystem used per mount",
        "Share of each filesystem used (node-exporter); DiskSpaceLow (on the exporter's paths) uses the same numbers.",
        "percentunit",
        [
            Q(
                f"1 - node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}}",
                "{{mountpoint}}",
            )
        ],
        thresholds=above("DiskSpaceLow"),
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Disk used (exporter paths)",
        "Share used of the paths Telltale's exporter watches (TELLTALE_DISK_PATHS): what DiskSpaceLow alerts on.",
        "percentunit",
        [Q("telltale_disk_used_ratio", "{{path}}", empty="present only when TELLTALE_DISK_PATHS is set")],
        thresholds=above("DiskSpaceLow"),
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Disk I/O utilisation",
        "Share of time each device was busy with I/O.",
        "percentunit",
        [Q(f"rate(node_disk_io_time_seconds_total{{{NODE}}}[$__rate_interval])", "{{device}}")],
        min_value=0,
    )
    b.timeseries(
        "Disk I/O saturation",
        "Weighted I/O time per second: the average number of I/O requests in flight or queued.",
        "short",
        [Q(f"rate(node_disk_io_time_weighted_seconds_total{{{NODE}}}[$__rate_interval])", "{{device}}")],
    )
    b.timeseries(
        "Disk throughput",
        "Bytes read and written per second by device.",
        "Bps",
        [
            Q(f"rate(node_disk_read_bytes_total{{{NODE}}}[$__rate_interval])", "read {{device}}"),
            Q(f"rate(node_disk_written_bytes_total{{{NODE}}}[$__rate_interval])", "written {{device}}"),
        ],
    )
    b.timeseries(
        "Inodes used and filesystem errors",
        "Share of inodes used per mount, and 1 for a filesystem node-exporter could not stat (errors).",
        "percentunit",
        [
            Q(f"1 - node_filesystem_files_free{{{FS}}} / node_filesystem_files{{{FS}}}", "inodes {{mountpoint}}"),
            Q(f"node_filesystem_device_error{{{FS}}}", "error {{mountpoint}}"),
        ],
    )

    b.row("Network")
    b.timeseries(
        "Network throughput",
        "Bytes received and transmitted per second by interface (utilisation).",
        "Bps",
        [
            Q(f"rate(node_network_receive_bytes_total{{{NET}}}[$__rate_interval])", "rx {{device}}"),
            Q(f"rate(node_network_transmit_bytes_total{{{NET}}}[$__rate_interval])", "tx {{device}}"),
        ],
    )
    b.timeseries(
        "Network drops and errors",
        "Packets dropped (saturation) and received or sent with errors, per second.",
        "pps",
        [
            Q(f"rate(node_network_receive_drop_total{{{NET}}}[$__rate_interval])", "rx drop {{device}}"),
            Q(f"rate(node_network_transmit_drop_total{{{NET}}}[$__rate_interval])", "tx drop {{device}}"),
            Q(f"rate(node_network_receive_errs_total{{{NET}}}[$__rate_interval])", "rx errors {{device}}"),
            Q(f"rate(node_network_transmit_errs_total{{{NET}}}[$__rate_interval])", "tx errors {{device}}"),
        ],
    )
    b.timeseries(
        "TCP connections",
        "Established TCP connections on the host.",
        "short",
        [Q(f"node_netstat_Tcp_CurrEstab{{{NODE}}}", "{{instance}}")],
    )
    return b
