"""The health endpoints against real PostgreSQL and Redis servers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.apps import service
from tests.servers import PostgresServer, RedisServer, free_port, wait_port

TOKEN = "health-token-abc123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _dsn(pg: PostgresServer) -> str:
    # trust auth ignores the password, so a real one can be checked for leaks
    return f"postgresql://postgres:pgs3cret@127.0.0.1:{pg.port}/postgres"


async def test_live_ready_and_health_when_everything_is_up(postgres: PostgresServer, redis_server: RedisServer) -> None:
    async with service(database_url=_dsn(postgres), redis_url=redis_server.url, health_token=TOKEN) as c:
        live = await c.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "healthy"}
        assert live.headers["cache-control"] == "no-store"
        ready = await c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "healthy"
        health = await c.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] in ("healthy", "degraded") and "timestamp" in health.json()
        detailed = (await c.get("/health/detailed", headers=AUTH)).json()
        assert {"postgres", "redis", "disk", "memory", "cpu", "event_loop"} <= set(detailed["checks"])
        pg = detailed["checks"]["postgres"]
        assert pg["status"] == "healthy" and pg["critical"] is True
        assert pg["observed"]["max_connections"] == 50 and pg["latency_ms"] > 0
        assert detailed["checks"]["redis"]["observed"]["used_memory_bytes"] > 0
        assert detailed["metadata"]["environment"] == "development"
        assert detailed["metadata"]["uptime_seconds"] >= 0 and detailed["metadata"]["version"]


async def test_live_never_touches_a_dependency(own_redis: RedisServer) -> None:
    async with service(redis_url=own_redis.url) as c:
        own_redis.stop()
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/health/ready")).status_code == 503


async def test_stopped_postgres_fails_readiness_and_recovers(own_postgres: PostgresServer) -> None:
    async with service(database_url=_dsn(own_postgres), cache_ttl_seconds=0) as c:
        assert (await c.get("/health/ready")).status_code == 200
        own_postgres.stop()
        ready = await c.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["failing"] == ["postgres"]
        assert (await c.get("/health/live")).status_code == 200
        health = await c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert "pgs3cret" not in ready.text + health.text
        own_postgres.start()
        ready = await c.get("/health/ready")
        assert ready.status_code == 200, ready.text


async def test_hung_postgres_is_answered_within_the_check_timeout(own_postgres: PostgresServer) -> None:
    async with service(database_url=_dsn(own_postgres), cache_ttl_seconds=0, check_timeout_seconds=0.5) as c:
        assert (await c.get("/health/ready")).status_code == 200
        own_postgres.freeze()
        try:
            started = time.perf_counter()
            ready = await c.get("/health/ready")
            elapsed = time.perf_counter() - started
            assert ready.status_code == 503
            assert elapsed < 0.5 + 0.2, f"took {elapsed:.3f}s"
            # a fresh connection attempt (nothing pooled) is bounded too
            started = time.perf_counter()
            assert (await c.get("/health/ready")).status_code == 503
            assert time.perf_counter() - started < 0.7
        finally:
            own_postgres.resume()
        deadline = time.monotonic() + 5
        while (await c.get("/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, "did not recover after SIGCONT"
            await asyncio.sleep(0.1)


def _pings(redis: RedisServer) -> int:
    for line in redis.cli("info", "commandstats").splitlines():
        if line.startswith("cmdstat_ping:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_a_burst_of_probes_makes_one_query(own_redis: RedisServer) -> None:
    async with service(redis_url=own_redis.url, health_token=TOKEN) as c:
        before = _pings(own_redis)
        responses = await asyncio.gather(*(c.get("/health/detailed", headers=AUTH) for _ in range(40)))
        assert all(r.status_code == 200 for r in responses)
        assert _pings(own_redis) - before == 1
        ages = {r.json()["checks"]["redis"]["checked_at"] for r in responses}
        assert len(ages) == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
async def test_detailed_needs_the_token(headers: dict) -> None:
    async with service(health_token=TOKEN) as c:
        r = await c.get("/health/detailed", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert (await c.get("/health/checks/disk", headers=headers)).status_code == 401


async def test_detailed_without_configured_token_says_how_to_set_one() -> None:
    async with service() as c:
        r = await c.get("/health/detailed", headers=AUTH)
        assert r.status_code == 401
        assert "TELLTALE_HEALTH_TOKEN" in r.json()["detail"]


async def test_one_check_verbose_and_exclude(redis_server: RedisServer) -> None:
    async with service(redis_url=redis_server.url, health_token=TOKEN) as c:
        one = await c.get("/health/checks/redis", headers=AUTH)
        assert one.status_code == 200 and one.json()["name"] == "redis"
        assert (await c.get("/health/checks/nope", headers=AUTH)).status_code == 404
        verbose = await c.get("/health/ready?verbose")
        assert verbose.text.splitlines() == ["[+]redis healthy", "health check passed"]
        excluded = await c.get("/health/detailed?exclude=redis&exclude=cpu", headers=AUTH)
        assert "redis" not in excluded.json()["checks"] and "cpu" not in excluded.json()["checks"]
        assert "disk" in excluded.json()["checks"]


async def test_ietf_health_json(redis_server: RedisServer) -> None:
    async with service(redis_url=redis_server.url, health_token=TOKEN) as c:
        r = await c.get("/health/detailed", headers={**AUTH, "Accept": "application/health+json"})
        assert r.headers["content-type"].startswith("application/health+json")
        body = r.json()
        assert body["status"] in ("pass", "warn")
        assert body["checks"]["redis:responseTime"][0]["status"] == "pass"
        assert body["checks"]["redis:responseTime"][0]["observedUnit"] == "ms"


async def test_metrics_expose_check_status(redis_server: RedisServer) -> None:
    async with service(redis_url=redis_server.url) as c:
        await c.get("/health")
        text = (await c.get("/metrics")).text
        assert 'telltale_health_check_status{check="redis",status="healthy"} 1.0' in text
        assert 'telltale_health_check_status{check="redis",status="unhealthy"} 0.0' in text
        assert 'telltale_health_check_duration_seconds{check="redis"}' in text


async def test_no_secret_in_responses_or_logs(own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://postgres:pgs3cret@127.0.0.1:{own_postgres.port}/postgres"
    own_postgres.stop()
    async with service(database_url=dsn, health_token=TOKEN, cache_ttl_seconds=0) as c:
        bodies = [
            (await c.get(p, headers=AUTH)).text
            for p in ("/health", "/health/ready", "/health/detailed", "/health/checks/postgres", "/metrics")
        ]
    detailed = bodies[2]
    assert "unhealthy" in detailed
    for text in [*bodies, caplog.text]:
        assert "pgs3cret" not in text
        assert TOKEN not in text


async def test_background_mode_serves_published_results(own_redis: RedisServer) -> None:
    async with service(redis_url=own_redis.url, background_interval_seconds=0.2, health_token=TOKEN) as c:
        await asyncio.sleep(0.1)
        before = _pings(own_redis)
        for _ in range(10):
            await c.get("/health/detailed", headers=AUTH)
        assert _pings(own_redis) == before
        assert (await c.get("/health/detailed", headers=AUTH)).json()["metadata"]["mode"] == "background"


async def test_bad_query_parameters_are_4xx(redis_server: RedisServer) -> None:
    async with service(redis_url=redis_server.url, health_token=TOKEN) as c:
        r = await c.post("/health")
        assert r.status_code == 405
        assert isinstance(await asyncio.to_thread(lambda: None), type(None))


def test_httpx_is_recent_enough_for_asgi_transport() -> None:
    assert hasattr(httpx, "ASGITransport")


@pytest.mark.parametrize(
    "query", ["verbose", "verbose=", "verbose=1", "verbose=true", "verbose=TRUE", "verbose=Yes", "verbose=on"]
)
async def test_verbose_truthy_forms_give_plain_text(query: str) -> None:
    async with service(health_token=TOKEN) as c:
        for path in ("/health/ready", "/health/checks/disk"):
            r = await c.get(f"{path}?{query}", headers=AUTH)
            assert r.headers["content-type"].startswith("text/plain"), (path, query)
            assert r.text.splitlines()[-1].startswith("health check ")


@pytest.mark.parametrize("query", ["verbose=false", "verbose=False", "verbose=0", "verbose=no", "verbose=OFF"])
async def test_verbose_false_forms_keep_json(query: str) -> None:
    async with service(health_token=TOKEN) as c:
        for path in ("/health/ready", "/health/checks/disk"):
            r = await c.get(f"{path}?{query}", headers=AUTH)
            assert r.headers["content-type"].startswith("application/json"), (path, query)
            assert "status" in r.json()


async def test_verbose_with_another_value_is_a_422() -> None:
    async with service(health_token=TOKEN) as c:
        r = await c.get("/health/ready?verbose=maybe")
        assert r.status_code == 422 and "verbose" in r.text


def test_sigterm_says_it_is_draining_before_it_waits() -> None:
    """The default 5 s drain is announced at once, in one line naming the setting, while readiness turns 503."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_port(port)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        said = []
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
            said = [json.loads(x) for x in list(lines) if "draining" in x]
        assert proc.poll() is None  # still waiting out the drain
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 503
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(5)
    assert [line["message"] for line in said] == ["SIGTERM: draining for 5 s (TELLTALE_DRAIN_SECONDS)"]
    assert said[0]["level"] == "info" and said[0]["drain_seconds"] == 5.0


async def test_anonymous_verbose_withholds_the_reason_the_token_shows_it() -> None:
    """A failing check's message names hosts and roles: only the health token's holder reads it."""
    dsn = f"postgresql://app:pw@127.0.0.1:{free_port()}/platform"
    async with service(database_url=dsn, health_token=TOKEN) as c:
        anonymous = await c.get("/health/ready?verbose")
        assert anonymous.status_code == 503
        assert "[-]postgres unhealthy: reason withheld" in anonymous.text.splitlines()
        assert "127.0.0.1" not in anonymous.text
        shown = await c.get("/health/ready?verbose", headers=AUTH)
        line = next(x for x in shown.text.splitlines() if x.startswith("[-]postgres"))
        assert "reason withheld" not in line and line != "[-]postgres unhealthy: "
