"""`telltale exporter`: serves `/metrics` and `/health`; every scrape runs the collectors concurrently.

Each collector runs under its own timeout (below Prometheus's scrape timeout). A failing or slow one
reports only `telltale_exporter_collector_success 0` and its duration (plus `..._up 0` for its target);
the scrape itself always succeeds. Concurrent scrapes share one collection (single flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.checks.redis import make_client
from telltale.config.exporter import ExporterSettings, load_exporter_settings
from telltale.config.log_format import configure_logging
from telltale.config.redact import redact
from telltale.config.settings import Settings, SettingsError, load_settings
from telltale.config.tokens import bearer_matches
from telltale.exporter.collectors.base import Collector, PgPool, check_unique_names, described
from telltale.exporter.collectors.disk import DiskCollector
from telltale.exporter.collectors.postgres import PostgresCollector
from telltale.exporter.collectors.queues import QueueCollector
from telltale.exporter.collectors.redis import RedisCollector
from telltale.exporter.collectors.sql import SqlCollector, load_queries
from telltale.exporter.collectors.terraform import TerraformCollector

log = logging.getLogger("telltale.exporter")
RENDER_IN_THREAD_SAMPLES = 5000
# generate_latest writes the 0.0.4 text format (prometheus_client 0.26 advertises 1.0.0 by default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_OWN = ("telltale_exporter_collector_success", "telltale_exporter_collector_duration_seconds")


class _Families:
    """The per-scrape "registry" that generate_latest renders: a fixed list of families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


class Exporter:
    """The collectors, their shared connections, and the scrape scheduler."""

    def __init__(self, settings: Settings, xs: ExporterSettings) -> None:
        self.settings, self.xs = settings, xs
        self.timeout = xs.collector_timeout_seconds
        self._secrets = settings.secrets()
        queries = load_queries(xs.queries_file) if xs.queries_file and settings.database_url else []
        self.pg = PgPool(str(settings.database_url), self.timeout, xs.pool_max_size) if settings.database_url else None
        self.redis = (
            make_client(str(settings.redis_url), self.timeout, max_connections=8, health_check_interval=30)
            if settings.redis_url
            else None
        )
        cs: list[Collector] = []
        if self.pg is not None:
            cs.append(
                PostgresCollector(
                    self.pg, refresh_interval=xs.refresh_interval_seconds, statements_top=xs.pg_stat_statements_top
                )
            )
        if self.redis is not None:
            cs.append(RedisCollector(self.redis))
        if settings.queues:
            cs.append(QueueCollector(list(settings.queues), client=self.redis, pg=self.pg))
        if settings.disk_paths:
            cs.append(DiskCollector(list(settings.disk_paths)))
        if settings.terraform_binary or (self.pg is not None and xs.terraform_deployments_table):
            cs.append(
                TerraformCollector(
                    binary=settings.terraform_binary,
                    pg=self.pg,
                    table=xs.terraform_deployments_table,
                    refresh_interval=xs.refresh_interval_seconds,
                    timeout=self.timeout,
                )
            )
        if settings.docker_socket:
            from telltale.exporter.collectors.docker import DockerCollector  # httpx costs ~7 MB: only when asked

            cs.append(DockerCollector(settings.docker_socket, self.timeout))
        if queries and self.pg is not None:
            cs.append(SqlCollector(queries, self.pg, self.timeout))
        check_unique_names(cs, described(_OWN))  # a name two collectors report is refused here, not at scrape
        self.collectors = cs
        self.last_success: dict[str, bool] = {}
        self._inflight: asyncio.Future[bytes] | None = None

    async def _run(self, c: Collector) -> tuple[list[Metric], bool, float]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                families = await c.collect()
            ok = True
        except TimeoutError:
            families, ok = c.down(), False
            if self.last_success.get(c.name, True):
                log.warning("exporter collector %s timed out after %.1fs", c.name, self.timeout)
        except Exception as exc:
            families, ok = c.down(), False
            if self.last_success.get(c.name, True):
                text = redact(f"{type(exc).__name__}: {exc}".splitlines()[0], self._secrets)[:300]
                log.warning("exporter collector %s failed: %s", c.name, text)
        if ok and not self.last_success.get(c.name, True):
            log.info("exporter collector %s recovered", c.name)
        self.last_success[c.name] = ok
        return families, ok, time.perf_counter() - started

    async def collect(self) -> list[Metric]:
        results = await asyncio.gather(*(self._run(c) for c in self.collectors))
        success = GaugeMetricFamily(
            "telltale_exporter_collector_success",
            "1 when the collector's last run succeeded within its timeout.",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "telltale_exporter_collector_duration_seconds", "How long the collector took.", labels=["collector"]
        )
        out: list[Metric] = []
        for c, (families, ok, took) in zip(self.collectors, results, strict=True):
            out.extend(families)
            success.add_metric([c.name], 1 if ok else 0)
            duration.add_metric([c.name], took)
        return [*out, success, duration]

    async def _scrape(self) -> bytes:
        families = await self.collect()
        samples = sum(len(f.samples) for f in families)
        if samples > RENDER_IN_THREAD_SAMPLES:
            return await asyncio.to_thread(generate_latest, _Families(families))
        return generate_latest(_Families(families))  # type: ignore[arg-type]

    async def scrape(self) -> bytes:
        """The exposition text; scrapes arriving while one runs share its result."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight = fut
        try:
            body = await self._scrape()
            fut.set_result(body)
            return body
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight = None

    async def aclose(self) -> None:
        for c in self.collectors:
            await c.aclose()
        if self.pg is not None:
            await self.pg.aclose()
        if self.redis is not None:
            await self.redis.aclose()


class ExporterApp:
    """A minimal ASGI app: `/metrics`, `/health`, and lifespan closing the connections."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.exporter.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            if not self._authorized(scope):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b"missing or invalid bearer token\n"})
                return
            await _respond(send, 200, await self.exporter.scrape(), CONTENT_TYPE, method == "HEAD")
        elif path == "/health":
            body = json.dumps({"status": "ok", "collectors": self.exporter.last_success}).encode()
            await _respond(send, 200, body, "application/json", method == "HEAD")
        elif path == "/":
            await _respond(send, 200, b"telltale exporter: /metrics /health\n", "text/plain; charset=utf-8")
        else:
            await _respond(send, 404, b"not found\n", "text/plain; charset=utf-8")

    def _authorized(self, scope: dict[str, Any]) -> bool:
        """TELLTALE_METRICS_TOKEN guards the exporter's /metrics like the service's."""
        tokens = self.exporter.settings.metrics_token
        if tokens is None:
            return True
        return bearer_matches(dict(scope.get("headers") or []).get(b"authorization"), tokens)

    async def aclose(self) -> None:
        await self.exporter.aclose()


async def _respond(send: Any, status: int, body: bytes, content_type: str, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def create_exporter(settings: Settings, exporter_settings: ExporterSettings) -> ExporterApp:
    """The ASGI app (for tests and embedding); raises SettingsError when the queries file is invalid."""
    return ExporterApp(Exporter(settings, exporter_settings))


def run_exporter(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Load the exporter's settings (SettingsError on bad input) and serve until interrupted."""
    import uvicorn

    xs = load_exporter_settings(host=host, port=port)
    # the service's line format (TELLTALE_LOG_FORMAT) and redaction; uvicorn's loggers propagate to it
    level = "debug" if settings.log_level == "debug" else xs.log_level
    configure_logging(settings.log_format, level, settings.secrets())
    app = create_exporter(settings, xs)
    log.info(
        "telltale exporter on http://%s:%d/metrics with collectors %s",
        xs.host,
        xs.port,
        ", ".join(c.name for c in app.exporter.collectors),
    )
    uvicorn.run(
        app,
        host=xs.host,
        port=xs.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="auto",
        http="auto",
    )


def cli(argv: list[str] | None = None) -> None:
    """`python -m exporter`: the CLI contract of `telltale exporter`, for running without app.cli."""
    parser = argparse.ArgumentParser(prog="telltale exporter")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    try:
        run_exporter(load_settings(), args.host, args.port)
    except SettingsError as exc:
        print(f"telltale exporter: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
