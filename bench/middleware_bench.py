"""Request-metrics and tracing overhead under uvicorn + wrk, ratios to a bare app; /metrics render cost.

`python -m bench.middleware_bench` (or `run()` for the report lines). Each variant is a uvicorn
process (1 worker, uvloop, httptools, no access log) serving a trivial JSON route on loopback; wrk
drives it; rounds are interleaved so drift hits every variant alike. Tracing variants export OTLP/HTTP
to a local sink that accepts and discards.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import rotated
from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
DURATION = int(os.environ.get("BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))  # short rounds, many: this machine's speed drifts by minutes
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "2"))
P99_ROUNDS = int(os.environ.get("BENCH_P99_ROUNDS", "4"))
CONNECTIONS = 32

VARIANTS = [
    "bare",
    "telltale",
    "telltale+access-log",
    "default",
    "telltale+trace100",
    "telltale+trace10",
    "handwritten",
    "instrumentator",
    "starlette-exporter",
    "otel-fastapi",
    "fastapi-native",
]


# --- the apps (built inside the uvicorn process from BENCH_VARIANT) ------------------------------
def make_app() -> Any:
    variant = os.environ["BENCH_VARIANT"]
    if variant == "default":
        from bench.callgrind_driver import served_app

        return served_app()[0]  # uvicorn runs its lifespan
    from fastapi import FastAPI

    native = variant == "fastapi-native"
    if native or variant == "otel-fastapi":
        _global_tracer_provider()
    app = FastAPI(**({} if native else {"telemetry": {"tracing": False, "metrics": False, "logs": False}}))

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    first_route(app, "/")
    if variant.startswith("telltale"):
        from prometheus_client import CollectorRegistry, Counter
        from telltale.app.instrumentation.middleware import TelemetryMiddleware
        from telltale.app.instrumentation.request_stats import make_http_metrics
        from telltale.app.instrumentation.tracing import setup_tracing

        registry = CollectorRegistry()
        http = make_http_metrics(registry)
        series = int(os.environ.get("BENCH_SERIES", "0"))
        if series:
            filler = Counter("bench_filler", "series to render", ["n"], registry=registry)
            for i in range(series):
                filler.labels(str(i)).inc()
        if "trace" in variant:
            os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            os.environ["OTEL_TRACES_SAMPLER_ARG"] = "1.0" if variant.endswith("100") else "0.1"
        tracer = setup_tracing(True) if "trace" in variant else None
        if "access-log" in variant:
            import logging

            from telltale.app.instrumentation.logs import configure_logging

            configure_logging("json", "info")
            logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]

        from starlette.responses import Response
        from telltale.app.instrumentation.exposition import Renderer

        renderer = Renderer(os.environ.get("BENCH_RENDER", "fork"))

        @app.get("/metrics")
        async def metrics() -> Response:
            body, ctype, _ = await renderer.render(registry, None, None)
            return Response(body, headers={"Content-Type": ctype})

        app.add_middleware(TelemetryMiddleware, metrics=http, tracer=tracer, access_log="access-log" in variant)
    elif variant == "handwritten":
        app.add_middleware(HandwrittenMetrics)
    elif variant == "asgi-layer":
        app.add_middleware(PassThrough)
    elif variant == "asgi-layer+send-wrapper":
        app.add_middleware(PassThroughWrapped)
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    elif variant == "starlette-exporter":
        from starlette_exporter import PrometheusMiddleware, handle_metrics

        app.add_middleware(PrometheusMiddleware)
        app.add_route("/metrics", handle_metrics)
    elif variant == "otel-fastapi":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app)
    return app


def first_route(app: Any, path: str) -> None:
    """Move the benchmark's route to the front of the router: every variant then routes a request with
    one match, whatever routes (FastAPI's docs, the service's included routers) come before it."""
    routes = app.router.routes
    index = next(i for i, r in enumerate(routes) if getattr(r, "path", None) == path)
    routes.insert(0, routes.pop(index))


class HandwrittenMetrics:
    """The issue's calibration point, "a careful hand-written pure-ASGI Prometheus middleware": a
    counter and a latency histogram from prometheus-client by route template, label children cached,
    nothing else (no sizes, no in-progress gauge, no request id)."""

    def __init__(self, app: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from telltale.app.instrumentation.http_metrics import LATENCY_BUCKETS

        registry = CollectorRegistry()
        self.app = app
        self.requests = Counter("http_requests", "", ["method", "route", "status"], registry=registry)
        self.duration = Histogram(
            "http_request_duration_seconds", "", ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "<unmatched>")
            key = (scope["method"], route, status)
            children = self.children.get(key)
            if children is None:
                children = self.children[key] = (
                    self.requests.labels(key[0], route, str(status)),
                    self.duration.labels(key[0], route),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


class PassThrough:
    """A floor: the cheapest pure-ASGI middleware, one coroutine that awaits the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class PassThroughWrapped(PassThrough):
    """A floor for a middleware that sees the response: the same plus a send wrapper that keeps the status."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = 0

        def send_wrapper(message: Any) -> Any:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        await self.app(scope, receive, send_wrapper)


def _global_tracer_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


# --- the driver -------------------------------------------------------------------------------
_free_port = free_port
_wait = wait_port


SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class Server:
    def __init__(self, variant: str, sink: str, series: int = 0, render: str = "fork") -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_", "TELLTALE_"))}
        env.update(
            {
                "BENCH_VARIANT": variant,
                "BENCH_SERIES": str(series),
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
                "PYTHONPATH": str(ROOT),
                "BENCH_RENDER": render,
            }
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.middleware_bench:make_app",
                "--factory",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.port)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(url: str, seconds: int, connections: int = CONNECTIONS) -> tuple[float, float]:
    """(requests/s, p99 latency in ms)."""
    out = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    return rps, p99


def render_cost(series: int = 10_000) -> tuple[float, float, int]:
    from prometheus_client import CollectorRegistry, Counter
    from telltale.app.metrics import render

    registry = CollectorRegistry()
    c = Counter("bench_filler", "series to render", ["n"], registry=registry)
    for i in range(series):
        c.labels(str(i)).inc()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        body, _, _ = render(registry, None, None)
        times.append(time.perf_counter() - t)
    om = []
    for _ in range(3):
        t = time.perf_counter()
        render(registry, "application/openmetrics-text", None)
        om.append(time.perf_counter() - t)
    return min(times) * 1000, min(om) * 1000, body.count(b"\n")


def scrape_p99(sink: str, render_mode: str = "fork") -> tuple[float, float, float, float]:
    """p99 latency (ms) and rps under load, with and without a 10,000-series scrape every second."""
    server = Server("telltale", sink, series=10_000, render=render_mode)
    try:
        wrk(server.url, 2, 16)  # warm up
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for i in range(P99_ROUNDS):
            for scraping in (False, True) if i % 2 == 0 else (True, False):
                stop = threading.Event()

                def scraper(stop: threading.Event = stop) -> None:
                    while not stop.wait(1.0):
                        with urllib.request.urlopen(server.url + "metrics", timeout=10) as r:
                            r.read()

                thread = threading.Thread(target=scraper, daemon=True)
                if scraping:
                    thread.start()
                results[scraping].append(wrk(server.url, 5, 16))
                stop.set()
                if scraping:
                    thread.join()
        base = statistics.median(p for _, p in results[False])
        scraped = statistics.median(p for _, p in results[True])
        return (
            base,
            scraped,
            statistics.median(r for r, _ in results[False]),
            statistics.median(r for r, _ in results[True]),
        )
    finally:
        server.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its export child, when tracing, is not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


GOALS = {"telltale": 0.95, "telltale+trace100": 0.65, "telltale+trace10": 0.85}
LAST_RATIOS: dict[str, float] = {}  # variant -> median req/s ratio to bare, for bench.callgrind_bench's table


def run() -> list[str]:
    sink_port = _free_port()
    sink_proc = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    sink = f"http://127.0.0.1:{sink_port}"
    lines: list[str] = []
    try:
        _wait(sink_port)
        rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
        # each variant in INSTANCES processes, rounds in `rotated` order (see bench.common)
        servers = [(v, Server(v, sink)) for _ in range(INSTANCES) for v in VARIANTS]
        try:
            for _, server in servers:
                wrk(server.url, 1)  # warm up
            for round_ in range(ROUNDS):
                for v, server in rotated(servers, round_, ROUNDS):
                    before = _cpu_seconds(server.proc.pid)
                    r = wrk(server.url, DURATION)[0]
                    rps[v].append(r)
                    cpu[v].append((_cpu_seconds(server.proc.pid) - before) / (r * DURATION) * 1e6)
        finally:
            for _, server in servers:
                server.stop()
        bare = statistics.median(rps["bare"])
        bare_cpu = statistics.median(cpu["bare"])
        lines.append(
            f"wrk -c{CONNECTIONS}, {ROUNDS} interleaved rounds of {DURATION}s on each of {INSTANCES} "
            "processes per variant, median req/s (ratio to bare); "
            "server CPU per request (bare's / the variant's: the same ratio without wrk's share of the cores)"
        )
        for v in VARIANTS:
            med, c = statistics.median(rps[v]), statistics.median(cpu[v])
            LAST_RATIOS[v] = med / bare
            goal = f"  goal >= {GOALS[v]:.2f}x: {'met' if med / bare >= GOALS[v] else 'MISSED'}" if v in GOALS else ""
            lines.append(
                f"  {v:<22} {med:9.0f} req/s  {med / bare:5.2f}x   cpu {c:6.1f} us/req {bare_cpu / c:5.2f}x{goal}"
            )
        text_ms, om_ms, n = render_cost()
        lines.append(f"render /metrics, 10,000 series ({n} lines): text {text_ms:.1f} ms, OpenMetrics {om_ms:.1f} ms")
        for mode in ("fork", "thread"):
            base, scraped, base_rps, scraped_rps = scrape_p99(sink, mode)
            ratio = scraped / base
            goal = f" (goal <= 1.2x: {'met' if ratio <= 1.2 else 'MISSED'})" if mode == "fork" else " (for comparison)"
            lines.append(
                f"p99 under load (wrk -c16), render in a {mode}: no scrape {base:.2f} ms, 10k-series scrape "
                f"every 1 s {scraped:.2f} ms = {ratio:.2f}x{goal}; req/s {base_rps:.0f} vs {scraped_rps:.0f}"
            )
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    return lines


if __name__ == "__main__":
    for line in run():
        print(line, flush=True)
