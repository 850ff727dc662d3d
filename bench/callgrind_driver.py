"""One variant's requests through uvicorn's own HTTP protocol, in one process, for callgrind to count.

`python -m bench.callgrind_driver VARIANT WARM N1 N2`, run by `bench.callgrind_bench` under
`valgrind --tool=callgrind --instr-atstart=no`. The app is built as the throughput benchmark
builds it (`bench.middleware_bench.make_app`) or, for `default`, as `telltale serve` builds it.
Requests go through uvicorn's `HttpToolsProtocol` exactly as a keep-alive client's bytes would
(httptools parsing, the ASGI scope, the request-response cycle task, uvicorn's ProxyHeadersMiddleware,
the response serialised and written), on uvloop; only the socket is replaced by a transport that
keeps what is written, so no kernel time and no wall-clock idle loop enter the count.

Start-up runs uninstrumented (several times faster); a valgrind client request, sent from Python
through a few bytes of machine code, starts callgrind's counting before the first request and dumps
the counters at the end of each window. Windows: WARM requests, then N1, then N2. The
instructions per request are (window N2 - window N1) / (N2 - N1): what a window costs besides its
requests (the mark, the loop around it, a span flush) cancels out.

Repeatable: PYTHONHASHSEED=0 (set by the caller), `random` seeded before the first request (request
ids, trace ids, so the same requests are sampled), one connection, one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import mmap
import os
import platform
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class Transport(asyncio.Transport):
    """A connected socket's transport, minus the socket: writes are kept, never sent."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def build(variant: str) -> tuple[Any, Any]:
    """(the ASGI app, an async context manager for its lifespan)."""
    if variant.startswith("default"):
        return served_app()
    os.environ["BENCH_VARIANT"] = variant
    from bench.middleware_bench import make_app

    return make_app(), contextlib.nullcontext()


def served_app() -> tuple[Any, Any]:
    """What `telltale serve` runs with default settings (`TELLTALE_*` unset): its logging set-up,
    `create_app`, the lifespan; plus the benchmark's `/` route, first in the router as in the other
    variants, so routing costs the same."""
    from telltale.app.instrumentation.logs import configure_logging
    from telltale.app.main import create_app
    from telltale.config.settings import load_settings

    from bench.middleware_bench import first_route

    for name in [k for k in os.environ if k.startswith(("TELLTALE_", "OTEL_")) and k != "TELLTALE_GC_TUNING"]:
        del os.environ[name]  # defaults: no settings, no OTLP endpoint (so no tracing)
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level, settings.secrets())
    app = create_app(settings)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    first_route(app, "/")
    return app, app.router.lifespan_context(app)


def _no_timed_flushes() -> None:
    """The log handler's flusher wakes every 0.1 s of wall time. Under callgrind a window lasts some fifty
    times longer than natively, so those wake-ups would count fifty times what they cost in service, and
    vary with the machine's load: here it waits an hour instead. A full buffer is still flushed inline,
    by the request that fills it (that cost is counted). The span queue's timer is off the same way
    (OTEL_BSP_SCHEDULE_DELAY, set by the caller): batches go by size, as under real load."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(getattr(handler, "interval", None), float):
            handler.interval = 3600.0  # type: ignore[attr-defined]


def flush_spans() -> None:
    """Export what the window queued, inside the window (the span queue's export thread is part of a
    traced request's cost)."""
    if "telltale.app.instrumentation.tracing" in sys.modules:
        sys.modules["telltale.app.instrumentation.tracing"].force_flush(10_000)


# A valgrind client request (valgrind.h's VALGRIND_DO_CLIENT_REQUEST for amd64) as machine code:
# rax = the request block, rdx = the default answer, the special no-op preamble, xchg rbx,rbx; outside
# valgrind the whole thing is a no-op returning the default. mov rax,rdi; mov rdx,rsi; rol rdi 3, 13,
# 61, 51; xchg rbx,rbx; mov rax,rdx; ret.
_CLIENT_REQUEST = bytes.fromhex("4889f84889f248c1c70348c1c70d48c1c73d48c1c7334887db4889d0c3")
START_INSTRUMENTATION = 0x43540004  # callgrind.h: VG_USERREQ_TOOL_BASE('C','T') + 4
DUMP_STATS = 0x43540000
_request_fn: Any = None


def valgrind_request(code: int) -> int:
    """Send callgrind a client request (start instrumentation, dump the counters) from Python."""
    global _request_fn
    if platform.machine() not in ("x86_64", "AMD64"):
        return 0
    if _request_fn is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_CLIENT_REQUEST)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _request_fn = (ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)(address), page)
    block = (ctypes.c_uint64 * 6)(code, 0, 0, 0, 0, 0)
    return int(_request_fn[0](ctypes.addressof(block), 0))


def dump() -> None:
    valgrind_request(DUMP_STATS)


async def drive(
    variant: str,
    warm: int,
    windows: Sequence[int],
    mark: Callable[[], object] = dump,
    start: Callable[[], object] = dump,
) -> None:
    """Start-up and `warm` requests, then each window of requests, `mark()` after each."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    app, lifespan = build(variant)
    _no_timed_flushes()
    config = uvicorn.Config(app, http="httptools", loop="uvloop", access_log=False, log_config=None)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Tue, 01 Dec 2026 00:00:00 GMT"), *config.encoded_headers]
    async with lifespan if hasattr(lifespan, "__aenter__") else _async(lifespan):
        protocol = HttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        random.seed(0)
        tasks = state.tasks
        start()
        for n in (warm, *windows):
            for _ in range(n):
                protocol.data_received(REQUEST)
                for task in list(tasks):
                    await task
            flush_spans()
            mark()  # callgrind dumps here
            check(transport.out, n)
            transport.out.clear()
        protocol.connection_lost(None)


@contextlib.asynccontextmanager
async def _async(cm: Any) -> Any:
    with cm:
        yield


def check(out: list[bytes], n: int) -> None:
    """Every request of the window was answered 200 (a benchmark of errors measures nothing)."""
    data = b"".join(out)
    answered = data.count(b"HTTP/1.1 ")
    ok = data.count(b"HTTP/1.1 200 OK\r\n")
    if answered != n or ok != n:
        sys.stderr.write(f"callgrind driver: {answered} responses, {ok} of them 200: {data[:300]!r}\n")
        sys.exit(1)


def pin_clocks() -> None:
    """`time.time` and `time.perf_counter` as clocks that advance 123.4567 µs a reading (a duration then
    has the digits of a real one), set before the app is imported so `from time import ...` binds them
    too. Real readings made the count depend on the machine's load: a duration's histogram bucket and
    digits, and the access line's timestamp, whose second is formatted once per wall second (under
    callgrind once per few requests, not per thousands). A `count.__next__` costs about what the C
    clock costs; monotonic clocks stay real (waits and timeouts use them)."""
    import itertools
    import time

    time.time = itertools.count(1_764_547_200.0, 0.0001234567).__next__  # type: ignore[assignment]
    time.perf_counter = itertools.count(1000.0, 0.0001234567).__next__  # type: ignore[assignment]


def main() -> None:
    """`VARIANT WARM N1 N2` under callgrind; `--cprofile VARIANT N` (natively) prints the Python
    functions a variant's requests spend their time in (on stderr), to read beside callgrind's C-level split."""
    import uvloop

    if sys.argv[1] == "--cprofile":
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        marks = iter([profiler.enable, profiler.disable])
        uvloop.run(drive(sys.argv[2], 200, [int(sys.argv[3])], mark=lambda: next(marks)(), start=lambda: None))
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        return
    variant, warm, n1, n2 = sys.argv[1], *map(int, sys.argv[2:5])
    pin_clocks()
    uvloop.run(drive(variant, warm, [n1, n2], start=lambda: valgrind_request(START_INSTRUMENTATION)))


if __name__ == "__main__":
    main()
