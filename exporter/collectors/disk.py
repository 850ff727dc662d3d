"""Disk: size, free space, used ratio and inodes of each configured path."""

from __future__ import annotations

import asyncio
import os

from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.exporter.collectors.base import Collector, described


def _statvfs(paths: list[str]) -> list[tuple[str, os.statvfs_result | None]]:
    out: list[tuple[str, os.statvfs_result | None]] = []
    for path in paths:
        try:
            out.append((path, os.statvfs(path)))
        except OSError:
            out.append((path, None))
    return out


class DiskCollector(Collector):
    name = "disk"

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def describe(self) -> list[Metric]:
        return described(
            f"telltale_disk_{n}" for n in ("size_bytes", "available_bytes", "used_ratio", "inodes", "inodes_free")
        )

    async def collect(self) -> list[Metric]:
        # statvfs can block on a hung network filesystem: keep it off the event loop.
        readings = await asyncio.to_thread(_statvfs, self.paths)
        fams = {
            "size": GaugeMetricFamily("telltale_disk_size_bytes", "Filesystem size.", labels=["path"]),
            "avail": GaugeMetricFamily(
                "telltale_disk_available_bytes", "Bytes available to unprivileged users.", labels=["path"]
            ),
            "ratio": GaugeMetricFamily("telltale_disk_used_ratio", "Used / size.", labels=["path"]),
            "inodes": GaugeMetricFamily("telltale_disk_inodes", "Inodes in all.", labels=["path"]),
            "ifree": GaugeMetricFamily("telltale_disk_inodes_free", "Free inodes.", labels=["path"]),
        }
        missing = []
        for path, st in readings:
            if st is None:
                missing.append(path)
                continue
            size = st.f_blocks * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            fams["size"].add_metric([path], size)
            fams["avail"].add_metric([path], st.f_bavail * st.f_frsize)
            fams["ratio"].add_metric([path], used / size if size else 0.0)
            fams["inodes"].add_metric([path], st.f_files)
            fams["ifree"].add_metric([path], st.f_ffree)
        if missing and len(missing) == len(readings):
            raise FileNotFoundError(f"no readable path among {', '.join(missing)}")
        return list(fams.values())
