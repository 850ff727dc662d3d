"""What every collector shares: the collector protocol, background refresh, and safe Postgres reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("telltale.exporter")
T = TypeVar("T")


class Collector:
    """A collector: `name`, and `collect()` returning families. `down()` is what a failure still shows."""

    name = "collector"

    async def collect(self) -> list[Metric]:
        raise NotImplementedError

    def down(self) -> list[Metric]:
        """Families reported when collect() failed or timed out (e.g. `..._up 0`)."""
        return []

    def describe(self) -> list[Metric]:
        """Every family collect() can report, without samples: the exporter registers them all at start,
        so two collectors (or two queries) reporting the same name are refused before the first scrape."""
        return []

    async def aclose(self) -> None:
        return None


def described(gauges: Iterable[str] = (), counters: Iterable[str] = ()) -> list[Metric]:
    """Families named for `describe()` (names are what a registry checks; help strings stay in collect)."""
    out: list[Metric] = [GaugeMetricFamily(n, n) for n in gauges]
    return out + [CounterMetricFamily(n, n) for n in counters]


class _Described:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def describe(self) -> list[Metric]:
        return self.collector.describe()

    def collect(self) -> list[Metric]:
        return []


def check_unique_names(collectors: Iterable[Collector], own: Iterable[Metric] = ()) -> None:
    """Register every collector's described families in one registry: a name reported twice raises
    ValueError naming it (prometheus-client's duplicate check), at start instead of a broken scrape."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(_Described(collector))  # type: ignore[arg-type]

    class _Own(Collector):
        def describe(self) -> list[Metric]:
            return list(own)

    registry.register(_Described(_Own()))  # type: ignore[arg-type]


def gauge(name: str, doc: str, value: float | None = None, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    if value is not None:
        return GaugeMetricFamily(name, doc, value=value)
    return GaugeMetricFamily(name, doc, labels=list(labels))


class Refreshed(Generic[T]):
    """A reading refreshed at most every `interval` seconds, in the background once it has a value.

    The first read waits (bounded by the caller's timeout; the refresh keeps running if the caller
    gives up, so the next scrape has it). Later reads return the last value at once and start one
    refresh when it is stale. A failed refresh keeps the last good value and records the error.
    """

    def __init__(self, fetch: Callable[[], Awaitable[T]], interval: float, name: str) -> None:
        self.fetch, self.interval, self.name = fetch, interval, name
        self.value: T | None = None
        self.error: str | None = None
        self.ok = False
        self.fetched_at = 0.0
        self.duration = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        started = time.perf_counter()
        try:
            self.value = await self.fetch()
        except Exception as exc:  # a broken reading fails alone
            if self.ok or self.error is None:
                log.warning("exporter %s refresh failed: %s", self.name, _one_line(exc))
            self.ok, self.error = False, _one_line(exc)
        else:
            if not self.ok and self.error is not None:
                log.info("exporter %s recovered", self.name)
            self.ok, self.error = True, None
        finally:
            self.duration = time.perf_counter() - started
            self.fetched_at = time.monotonic()

    def _start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def get(self) -> T | None:
        stale = time.monotonic() - self.fetched_at >= self.interval or self.fetched_at == 0.0
        if self.interval <= 0 or self.fetched_at == 0.0:
            await asyncio.shield(self._start())
        elif stale:
            self._start()
        return self.value

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


class PgPool:
    """A lazily created asyncpg pool (min_size=0) that drops its connections after any failure."""

    def __init__(self, dsn: str, timeout: float, max_size: int = 4) -> None:
        self.dsn, self.timeout, self.max_size = dsn, timeout, max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self.max_size,
                        max_inactive_connection_lifetime=300,
                        timeout=self.timeout,
                        command_timeout=self.timeout,
                        statement_cache_size=64,
                        server_settings={"application_name": "telltale-exporter"},
                    )
        return self._pool

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `fn(conn)` on a pooled connection; on any failure the connection is dropped, not reused."""
        pool = await self.pool()
        conn = await pool.acquire(timeout=timeout or self.timeout)
        try:
            return await fn(conn)
        except BaseException:
            # A timed-out or broken connection is never handed out again; the others are re-checked.
            conn.terminate()
            await pool.expire_connections()
            raise
        finally:
            with contextlib.suppress(Exception):
                await pool.release(conn)

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:
        t = timeout or self.timeout
        return await self.run(lambda c: c.fetch(sql, *args, timeout=t), timeout=t)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
