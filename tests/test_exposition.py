"""/metrics rendering in a forked child: same bytes as in-process, a failing child falls back, every scrape is
answered before the scraper's timeout, and a breaker stops trying a child that keeps failing."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import Iterator

import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from telltale.app.instrumentation.exposition import Renderer, RenderTimeout, render_sync

from tests.apps import service

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    c = Counter("bench_requests", "requests", ["route"], registry=r)
    h = Histogram("bench_seconds", "latency", ["route"], registry=r)
    for i in range(500):
        c.labels(f"/r/{i}").inc(i)
        h.labels(f"/r/{i % 7}").observe(i / 1000, {"trace_id": f"{i:032x}"})
    return r


async def test_child_renders_the_same_bytes_as_the_thread() -> None:
    r = registry()
    renderer = Renderer("fork")
    for accept, encoding in ((None, None), (OPENMETRICS, None), (None, "gzip")):
        forked = await renderer.render(r, accept, encoding)
        assert forked == render_sync(r, accept, encoding)
    assert renderer.forked == 3
    assert gzip.decompress(forked[0]).startswith(b"# HELP bench_requests_total")
    assert b"# {trace_id=" in (await renderer.render(r, OPENMETRICS, None))[0]


async def test_thread_mode_never_forks() -> None:
    renderer = Renderer("thread")
    body, content_type, gzipped = await renderer.render(registry(), None, None)
    assert renderer.forked == 0 and not gzipped and body.startswith(b"# HELP")
    assert content_type.startswith("text/plain")


class FailsInChild:
    def __init__(self, parent: int, hang: bool = False) -> None:
        self.parent, self.hang = parent, hang

    def collect(self) -> Iterator[Metric]:
        if os.getpid() != self.parent:
            if self.hang:
                time.sleep(30)
            raise RuntimeError("broken in the child")
        yield from Counter("fine_in_parent", "x", registry=None).collect()


async def test_a_failing_child_falls_back_to_the_thread() -> None:
    r = CollectorRegistry()
    r.register(FailsInChild(os.getpid()))  # type: ignore[arg-type]
    renderer = Renderer("fork")
    body, _, _ = await renderer.render(r, None, None)
    assert b"fine_in_parent_total 0.0" in body and renderer.forked == 0


async def test_a_hung_child_is_killed_and_the_scrape_still_answers() -> None:
    r = CollectorRegistry()
    r.register(FailsInChild(os.getpid(), hang=True))  # type: ignore[arg-type]
    renderer = Renderer("fork", timeout=0.5)
    started = time.monotonic()
    body, _, _ = await renderer.render(r, None, None)
    assert time.monotonic() - started < 3
    assert b"fine_in_parent_total" in body


async def test_children_are_reaped() -> None:
    import asyncio

    renderer = Renderer("fork")
    before = {c.pid for c in psutil.Process().children()}
    for _ in range(5):
        await renderer.render(registry(), None, None)

    def zombies() -> list[int]:
        found = []
        for child in psutil.Process().children():
            try:
                if child.pid not in before and child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
            except psutil.NoSuchProcess:  # reaped between the listing and the look
                pass
        return found

    # reaping is asynchronous: give a busy machine up to 5 s, but a child never reaped stays a zombie
    for _ in range(50):
        if not zombies():
            break
        await asyncio.sleep(0.1)
    assert zombies() == []


class Sleeps:
    """A collector that hangs for `seconds` wherever it is collected (a stuck dependency, a lock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        time.sleep(self.seconds)
        yield from Counter("slept", "x", registry=None).collect()


def hung_in_child() -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(FailsInChild(os.getpid(), hang=True))  # type: ignore[arg-type]
    return r


async def test_a_hung_child_is_answered_within_the_scrapers_timeout() -> None:
    """Prometheus says how long it waits; the child gets half of it, the thread the rest."""
    renderer = Renderer("fork")  # the shipped child deadline
    started = time.monotonic()
    body, _, _ = await renderer.render(hung_in_child(), None, None, scrape_timeout=2.0)
    assert time.monotonic() - started < 1.8  # 90 % of the scrape timeout
    assert b"fine_in_parent_total" in body


async def test_concurrent_scrapes_with_a_hung_child_are_all_answered_in_time() -> None:
    """Two Prometheus replicas scrape at once: the second waits for the first, and still gets its answer."""
    renderer = Renderer("fork")
    hung = hung_in_child()
    started = time.monotonic()
    answers = await asyncio.gather(*(renderer.render(hung, None, None, scrape_timeout=2.0) for _ in range(2)))
    assert time.monotonic() - started < 1.8
    assert all(b"fine_in_parent_total" in body for body, _, _ in answers)


async def test_without_the_header_the_shipped_scrape_timeout_holds() -> None:
    """No header: the answer still comes well inside prometheus/'s 10 s scrape_timeout (12.6 s before)."""
    started = time.monotonic()
    body, _, _ = await Renderer("fork").render(hung_in_child(), None, None)
    assert time.monotonic() - started < 6.5
    assert b"fine_in_parent_total" in body


async def test_a_render_that_cannot_finish_is_a_timeout_and_leaves_no_child() -> None:
    r = CollectorRegistry()
    r.register(Sleeps(1.5))  # type: ignore[arg-type]
    renderer = Renderer("fork")
    before = {c.pid for c in psutil.Process().children()}  # session fixtures' servers are children too
    started = time.monotonic()
    with pytest.raises(RenderTimeout):
        await renderer.render(r, None, None, scrape_timeout=0.5)
    assert time.monotonic() - started < 0.7
    await asyncio.sleep(0.3)
    left = [c for c in psutil.Process().children() if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert left == []
    with pytest.raises(RenderTimeout):  # the same hang, now in the thread: the next scrape is bounded too
        await Renderer("thread").render(r, None, None, scrape_timeout=0.3)


async def test_a_hung_render_holds_one_daemon_thread_however_many_scrapes() -> None:
    import threading

    r = CollectorRegistry()
    r.register(Sleeps(1.5))  # type: ignore[arg-type]
    renderer = Renderer("thread")
    before = set(threading.enumerate())  # other tests' hung renders may still be sleeping
    for _ in range(3):
        with pytest.raises(RenderTimeout):
            await renderer.render(r, None, None, scrape_timeout=0.2)
    threads = [t for t in set(threading.enumerate()) - before if t.name == "telltale-metrics-render"]
    assert len(threads) == 1 and threads[0].daemon  # never keeps the process from exiting
    await asyncio.sleep(1.5)
    body, _, _ = await renderer.render(registry(), None, None)  # the hang over, scrapes render again
    assert body.startswith(b"# HELP")


async def test_the_breaker_opens_after_repeated_child_failures_and_closes_on_success() -> None:
    renderer = Renderer("fork", timeout=0.2, breaker_failures=3, breaker_seconds=0.6)
    hung = hung_in_child()
    for _ in range(3):
        assert not renderer.breaker_open
        await renderer.render(hung, None, None)
    assert renderer.breaker_open
    started = time.monotonic()
    body, _, _ = await renderer.render(hung, None, None)  # open: straight to the thread, no child to wait for
    assert time.monotonic() - started < 0.15 and b"fine_in_parent_total" in body
    await asyncio.sleep(0.6)
    assert not renderer.breaker_open
    await renderer.render(hung, None, None)  # half-open: one child tried, it fails, open again at once
    assert renderer.breaker_open
    await asyncio.sleep(0.6)
    forked, renderer.timeout = renderer.forked, 5.0  # a niced child on a busy machine needs more than 0.2 s
    await renderer.render(registry(), None, None)  # a healthy child closes it
    assert renderer.forked == forked + 1 and not renderer.breaker_open and renderer.failures == 0


async def test_metrics_route_answers_503_before_the_scraper_gives_up() -> None:
    async with service() as c:
        c.app.state.telltale.registry.register(Sleeps(2.0))  # type: ignore[attr-defined]
        started = time.monotonic()
        r = await c.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert time.monotonic() - started < 1.2
        assert r.status_code == 503 and "not rendered within" in r.json()["detail"]


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1", "0", "1e9", ""])
async def test_a_bad_scrape_timeout_header_is_ignored(value: str) -> None:
    async with service() as c:
        r = await c.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": value})
        assert r.status_code == 200 and "telltale_build_info" in r.text


def values(text: str) -> dict[str, list[float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s.value)
    return out


async def test_process_series_describe_the_serving_process_not_the_render_child() -> None:
    """process_* as every Prometheus client has them, measured on the server even though a child renders."""
    me = psutil.Process()
    burn = time.process_time() + 0.3
    while time.process_time() < burn:  # CPU the server has spent, which a render child would not show
        pass
    async with service() as c:
        r = await c.get("/metrics")
        assert c.app.state.renderer.forked >= 1  # type: ignore[attr-defined]
        got = values(r.text)
        cpu = me.cpu_times()
        assert set(got) >= {
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
        }
        assert all(len(v) == 1 for k, v in got.items() if k.startswith("process_"))  # one series each, no labels
        assert got["process_cpu_seconds_total"][0] == pytest.approx(cpu.user + cpu.system, abs=0.2)
        assert got["process_cpu_seconds_total"][0] >= 0.3
        assert got["process_resident_memory_bytes"][0] == pytest.approx(me.memory_info().rss, rel=0.2)
        assert got["process_start_time_seconds"][0] == pytest.approx(me.create_time(), abs=1)
        assert abs(got["process_open_fds"][0] - me.num_fds()) <= 5
        assert got["process_max_fds"][0] == me.rlimit(psutil.RLIMIT_NOFILE)[0]


def test_process_series_are_cheap() -> None:
    from telltale.app.instrumentation.process_metrics import ProcessMetrics

    collector = ProcessMetrics(supervisor=os.getppid())  # a supervisor and its children, the costlier case
    list(collector.collect())
    started = time.perf_counter()
    for _ in range(100):
        families = list(collector.collect())
    per_scrape = (time.perf_counter() - started) / 100
    assert len(families) == 6 and per_scrape < 0.005, per_scrape


def test_collectors_describe_their_names_so_duplicates_are_refused() -> None:
    from telltale.app.instrumentation.process_metrics import ProcessMetrics
    from telltale.app.metrics import HealthCollector

    for make in (lambda: HealthCollector(None), ProcessMetrics):  # type: ignore[arg-type]
        r = CollectorRegistry()
        r.register(make())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            r.register(make())  # type: ignore[arg-type]
