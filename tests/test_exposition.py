"""/metrics rendering in a forked child: same bytes as in-process, and a failing child falls back."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from telltale.app.instrumentation.exposition import Renderer, render_sync

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
    for _ in range(5):
        await renderer.render(registry(), None, None)
    await asyncio.sleep(0.3)
    assert [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE] == []
