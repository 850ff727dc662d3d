"""Rendering `/metrics` without stalling the requests being served.

Rendering is CPU-bound Python (about 5 µs per output line here), and a worker thread does not help:
it holds the GIL, and the event loop then waits up to the 5 ms switch interval at every hand-off, which
shows in the latency of every request served during a scrape. So the exposition is rendered in a
forked child, like Redis's BGSAVE: the fork copies page tables (about 1.5 ms for this process), the
child renders (and gzips) on another core from a copy-on-write snapshot and writes the bytes to a
pipe that the event loop reads without blocking. The snapshot is exact: fork happens on the loop
thread, which is the only thread that updates the request metrics.

Every scrape has a deadline: 90 % of the scraper's timeout (Prometheus sends it as
`X-Prometheus-Scrape-Timeout-Seconds`; 10 s, the shipped `scrape_timeout`, when absent), so an answer
arrives while the scraper still waits. The child gets at most half of that (and never more than 5 s);
a child that fails, is killed or misses its deadline is replaced by rendering in a thread for that
scrape. After three child failures in a row a breaker opens: scrapes render in a thread for five
minutes, then one child is tried again. A render that cannot finish by the deadline at all (a
collector that hangs) is a `RenderTimeout`, which `/metrics` answers with a 503. Where fork is
unavailable, or with `TELLTALE_METRICS_RENDER=thread`, the thread is used directly.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import struct
import threading
import time
from typing import Any

from prometheus_client.exposition import choose_encoder

log = logging.getLogger("telltale.metrics")
_HEADER = struct.Struct("!Q")
CHILD_TIMEOUT = 5.0  # the longest a render child may take, whatever the scraper allows
SCRAPE_TIMEOUT = 10.0  # the shipped prometheus/ scrape_timeout, when the scraper does not say
BREAKER_FAILURES = 3  # child failures in a row that open the breaker
BREAKER_SECONDS = 300.0  # how long scrapes then render in a thread before a child is tried again


class RenderTimeout(Exception):
    """The exposition could not be rendered before the scrape's deadline."""


def render_sync(registry: Any, accept: str | None, accept_encoding: str | None) -> tuple[bytes, str, bool]:
    """(body, content type, gzipped)."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(registry)
    if accept_encoding and "gzip" in accept_encoding:
        return gzip.compress(body, compresslevel=3), content_type, True
    return body, content_type, False


class Renderer:
    """Renders a registry in a forked child (default) or a worker thread; one render at a time, each
    within its scrape's deadline; a breaker keeps a failing child from costing every scrape its wait."""

    def __init__(
        self,
        mode: str = "fork",
        timeout: float = CHILD_TIMEOUT,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_seconds: float = BREAKER_SECONDS,
    ) -> None:
        self.fork = mode == "fork" and hasattr(os, "fork")
        self.timeout = timeout
        self.breaker_failures = breaker_failures
        self.breaker_seconds = breaker_seconds
        self._lock = asyncio.Lock()
        self._idle = asyncio.Event()  # no render thread running (one at a time)
        self._idle.set()
        self._warned = False
        self.forked = 0  # renders served by a child, for tests and curiosity
        self.failures = 0  # child failures in a row
        self._open_until = 0.0  # monotonic time until which the breaker is open
        self._tripped = False  # opened before and not yet proven healthy: one more failure reopens it

    @property
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def render(
        self, registry: Any, accept: str | None, accept_encoding: str | None, scrape_timeout: float | None = None
    ) -> tuple[bytes, str, bool]:
        """The exposition within 90 % of `scrape_timeout` (the scraper's, else 10 s), or `RenderTimeout`."""
        budget = scrape_timeout if scrape_timeout is not None and scrape_timeout > 0 else SCRAPE_TIMEOUT
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.9 * budget
        try:
            async with asyncio.timeout_at(deadline):
                async with self._lock:  # concurrent scrapes never fork a crowd of children
                    if self.fork and not self.breaker_open:
                        try:
                            # half of what is left once it is this scrape's turn: the thread may need the rest
                            child_timeout = min(self.timeout, 0.5 * (deadline - loop.time()))
                            result = await self._in_child(registry, accept, accept_encoding, child_timeout)
                        except (OSError, RuntimeError, TimeoutError) as exc:
                            self._child_failed(exc)
                        else:
                            self.forked += 1
                            self.failures, self._tripped = 0, False
                            return result
                    return await self._in_thread(registry, accept, accept_encoding)
        except TimeoutError:
            raise RenderTimeout(f"/metrics not rendered within {0.9 * budget:.3g} s") from None

    async def _in_thread(
        self, registry: Any, accept: str | None, accept_encoding: str | None
    ) -> tuple[bytes, str, bool]:
        """Render in a daemon thread: a collector that hangs holds one thread (later scrapes wait for it, up
        to their deadline, rather than start another) and never keeps the process from exiting."""
        await self._idle.wait()
        self._idle.clear()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[bytes, str, bool]] = loop.create_future()

        def settle(result: tuple[bytes, str, bool] | None, exc: BaseException | None) -> None:
            if answer.done():  # the scrape gave up
                return
            if exc is not None:
                answer.set_exception(exc)
            else:
                answer.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            try:
                result = render_sync(registry, accept, accept_encoding)
            except BaseException as exc:  # handed to the scrape that asked
                _call_soon(loop, settle, None, exc)
            else:
                _call_soon(loop, settle, result, None)
            finally:
                _call_soon(loop, self._idle.set)

        try:
            threading.Thread(target=run, name="telltale-metrics-render", daemon=True).start()
        except BaseException:
            self._idle.set()
            raise
        return await answer

    def _child_failed(self, exc: BaseException) -> None:
        self.failures += 1
        if not self._warned:
            log.warning(
                "rendering /metrics in a child failed; rendering in a thread",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
            self._warned = True
        if self.failures >= self.breaker_failures or self._tripped:
            self._open_until = time.monotonic() + self.breaker_seconds
            self.failures, self._tripped = 0, True
            log.warning(
                f"render children keep failing; rendering /metrics in a thread for {self.breaker_seconds:g} s",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )

    async def _in_child(
        self, registry: Any, accept: str | None, accept_encoding: str | None, timeout: float
    ) -> tuple[bytes, str, bool]:
        loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: render, write, and leave without running any parent cleanup
            code = 1
            try:
                os.close(rfd)
                os.nice(19)  # the requests being served, and their clients, come first
                body, content_type, gzipped = render_sync(registry, accept, accept_encoding)
                payload = _HEADER.pack(len(body)) + bytes([gzipped]) + content_type.encode() + b"\n" + body
                view = memoryview(payload)
                while view:
                    view = view[os.write(wfd, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        os.set_blocking(rfd, False)
        chunks: list[bytes] = []
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                while True:
                    data = os.read(rfd, 1 << 20)
                    if not data:
                        if not done.done():
                            done.set_result(None)
                        return
                    chunks.append(data)
            except BlockingIOError:
                return
            except OSError as exc:
                if not done.done():
                    done.set_exception(exc)

        loop.add_reader(rfd, readable)
        answered = False
        try:
            await asyncio.wait_for(done, timeout)
            answered = True
        finally:
            if not answered:  # timed out, failed, or the scrape's deadline passed: the child must not linger
                _kill(pid)
            loop.remove_reader(rfd)
            os.close(rfd)
            _reap(loop, pid)
        raw = b"".join(chunks)
        if len(raw) < _HEADER.size + 1:
            raise RuntimeError("render child exited without an answer")
        (length,) = _HEADER.unpack_from(raw)
        gzipped = bool(raw[_HEADER.size])
        newline = raw.index(b"\n", _HEADER.size + 1)
        content_type = raw[_HEADER.size + 1 : newline].decode()
        body = raw[newline + 1 :]
        if len(body) != length:
            raise RuntimeError(f"render child sent {len(body)} of {length} bytes")
        return body, content_type, gzipped


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed while a hung render finally finished: nobody is waiting
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _reap(loop: asyncio.AbstractEventLoop, pid: int, tries: int = 50) -> None:
    """Collect the child's exit status without blocking the loop (it exits right after writing)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # already reaped (e.g. by a child watcher)
        return
    if done == 0 and tries > 0:
        loop.call_later(0.05, _reap, loop, pid, tries - 1)
