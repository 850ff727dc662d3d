"""Checks that need no external service: disk, memory, CPU load and event-loop lag."""

from __future__ import annotations

import asyncio
import os
import time

import psutil
from telltale.checks.base import Check, Observation, grade, worst


class DiskCheck(Check):
    component = "disk"

    def __init__(self, name: str, paths: list[str], *, degraded: float = 0.8, unhealthy: float = 0.9, **kw) -> None:
        super().__init__(name, **kw)
        self.paths, self.degraded, self.unhealthy = paths, degraded, unhealthy

    async def probe(self) -> Observation:
        # in a thread: a stuck network mount must not block the event loop
        usages = await asyncio.gather(*(asyncio.to_thread(psutil.disk_usage, p) for p in self.paths))
        observed: dict[str, dict[str, float]] = {}
        statuses, parts = [], []
        for path, usage in zip(self.paths, usages, strict=True):
            ratio = usage.used / usage.total if usage.total else 0.0
            observed[path] = {"total_bytes": usage.total, "free_bytes": usage.free, "used_ratio": round(ratio, 4)}
            statuses.append(grade(ratio, self.degraded, self.unhealthy))
            parts.append(f"{path} {ratio:.0%} used")
        return Observation(worst(statuses), ", ".join(parts), {"paths": observed})


class MemoryCheck(Check):
    component = "memory"

    def __init__(self, name: str, *, degraded: float = 0.9, unhealthy: float = 0.97, **kw) -> None:
        super().__init__(name, **kw)
        self.degraded, self.unhealthy = degraded, unhealthy

    async def probe(self) -> Observation:
        vm = psutil.virtual_memory()
        ratio = 1 - vm.available / vm.total
        rss = psutil.Process().memory_info().rss
        observed = {
            "used_ratio": round(ratio, 4),
            "available_bytes": vm.available,
            "total_bytes": vm.total,
            "process_resident_bytes": rss,
        }
        return Observation(grade(ratio, self.degraded, self.unhealthy), f"memory {ratio:.0%} used", observed)


class CpuLoadCheck(Check):
    component = "cpu"

    def __init__(self, name: str, *, degraded: float = 2.0, unhealthy: float = 4.0, **kw) -> None:
        super().__init__(name, **kw)
        self.degraded, self.unhealthy = degraded, unhealthy

    async def probe(self) -> Observation:
        load1, load5, load15 = os.getloadavg()
        cores = os.cpu_count() or 1
        per_core = load1 / cores
        observed = {
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "cores": cores,
            "load1_per_core": round(per_core, 3),
        }
        return Observation(
            grade(per_core, self.degraded, self.unhealthy), f"load {load1:.2f} on {cores} cores", observed
        )


class EventLoopLagCheck(Check):
    """How late the event loop runs a timer: the delay every request on this process also pays."""

    component = "event_loop"

    def __init__(
        self, name: str, *, degraded: float = 0.1, unhealthy: float = 1.0, sample: float = 0.005, **kw
    ) -> None:
        super().__init__(name, **kw)
        self.degraded, self.unhealthy, self.sample = degraded, unhealthy, sample

    async def probe(self) -> Observation:
        started = time.perf_counter()
        await asyncio.sleep(self.sample)
        lag = max(0.0, time.perf_counter() - started - self.sample)
        return Observation(
            grade(lag, self.degraded, self.unhealthy), f"loop lag {lag * 1000:.1f} ms", {"lag_seconds": round(lag, 6)}
        )
