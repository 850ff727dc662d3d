"""Rendering `/metrics` without stalling the requests being served.

Rendering is CPU-bound Python (about 5 µs per output line here), and a worker thread does not help:
it holds the GIL, and the event loop then waits up to the 5 ms switch interval at every hand-off, which
shows in the latency of every request served during a scrape. So the exposition is rendered in a
forked child, like Redis's BGSAVE: the fork copies page tables (about 1.5 ms for this process), the
child renders (and gzips) on another core from a copy-on-write snapshot and writes the bytes to a
pipe that the event loop reads without blocking. The snapshot is exact: fork happens on the loop
thread, which is the only thread that updates the request metrics.

A child that fails, is killed or takes longer than the timeout is replaced by rendering in a thread
(logged once), so a scrape always gets an answer. Where fork is unavailable, or with
`TELLTALE_METRICS_RENDER=thread`, the thread is used directly.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import struct
from typing import Any

from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("telltale.metrics")
_HEADER = struct.Struct("!Q")
CHILD_TIMEOUT = 10.0


def render_sync(registry: Any, accept: str | None, accept_encoding: str | None) -> tuple[bytes, str, bool]:
    """(body, content type, gzipped)."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    if accept_encoding and "gzip" in accept_encoding:
        return gzip.compress(body, compresslevel=3), content_type, True
    return body, content_type, False


class Renderer:
    """Renders a registry in a forked child (default) or a worker thread; one render at a time."""

    def __init__(self, mode: str = "fork", timeout: float = CHILD_TIMEOUT) -> None:
        self.fork = mode == "fork" and hasattr(os, "fork")
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._warned = False
        self.forked = 0  # renders served by a child, for tests and curiosity

    async def render(self, registry: Any, accept: str | None, accept_encoding: str | None) -> tuple[bytes, str, bool]:
        async with self._lock:  # concurrent scrapes never fork a crowd of children
            if self.fork:
                try:
                    result = await self._in_child(registry, accept, accept_encoding)
                    self.forked += 1
                    return result
                except (OSError, RuntimeError, TimeoutError) as exc:
                    if not self._warned:
                        log.warning(
                            "rendering /metrics in a child failed; rendering in a thread",
                            extra={"error": f"{type(exc).__name__}: {exc}"},
                        )
                        self._warned = True
            return await run_in_threadpool(render_sync, registry, accept, accept_encoding)

    async def _in_child(
        self, registry: Any, accept: str | None, accept_encoding: str | None
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
        try:
            await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            _kill(pid)
            raise
        finally:
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
