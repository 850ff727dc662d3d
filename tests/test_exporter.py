"""Exporter collectors against real Postgres, Redis and podman: values match what the tests wrote."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.servers import PodmanService, PostgresServer, RedisServer
from tests.test_exporter_support import make_exporter, promtool, samples, seeded_database, value

FAKE_TERRAFORM = """#!/bin/sh
# A fake terraform: Terraform cannot run here, so this stand-in answers `terraform version -json`.
echo '{"terraform_version": "1.9.8", "platform": "linux_amd64", "terraform_outdated": false}'
"""

QUEUES = [
    {"name": "emails", "backend": "laravel"},
    {"name": "default", "backend": "sql"},
    {"name": "reports", "backend": "rq"},
    {"name": "celery", "backend": "celery"},
]


@pytest.fixture(scope="module")
def dsn(postgres: PostgresServer) -> str:
    url = seeded_database(postgres)
    postgres.psql("create extension if not exists pg_stat_statements", url.rsplit("/", 1)[1])
    return url


@pytest.fixture(scope="module")
def fake_terraform(tmp_path_factory: pytest.TempPathFactory) -> str:
    bindir = tmp_path_factory.mktemp("tfbin")
    script = bindir / "terraform"
    script.write_text(FAKE_TERRAFORM)
    script.chmod(0o755)
    return str(bindir)


@pytest.fixture(scope="module")
def queues_written(redis_server: RedisServer) -> None:
    now = time.time()
    r = redis_server.cli
    r("del", "queues:emails", "rq:queue:reports", "celery")
    for age in (90, 30, 5):
        r("rpush", "queues:emails", json.dumps({"uuid": str(age), "pushedAt": now - age}))
    r("rpush", "rq:queue:reports", "job-a", "job-b")
    r("hset", "rq:job:job-a", "enqueued_at", time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now - 120)))
    r("zadd", "rq:failed:reports", "1", "job-x", "2", "job-y", "3", "job-z")
    r("sadd", "rq:workers:reports", "rq:worker:w1", "rq:worker:w2")
    r("hset", "rq:worker:w1", "last_heartbeat", str(now))
    r("hset", "rq:worker:w2", "last_heartbeat", str(now - 3600))
    for i in range(7):
        r("rpush", "celery", f"task-{i}")


@pytest.fixture
async def scraped(
    dsn: str,
    redis_server: RedisServer,
    queues_written: None,
    fake_terraform: str,
    podman: PodmanService,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("PATH", f"{fake_terraform}{os.pathsep}{os.environ['PATH']}")
    app = make_exporter(
        database_url=dsn,
        redis_url=redis_server.url,
        queues=QUEUES,
        disk_paths=["/", "/tmp"],
        terraform_binary="terraform",
        docker_socket=podman.socket_path,
    )
    try:
        yield app, await app.exporter.scrape()
    finally:
        await app.aclose()


async def test_every_collector_succeeds_and_promtool_is_clean(scraped) -> None:
    """A full scrape: every collector reports success and promtool check metrics passes."""
    _, body = scraped
    found = samples(body)
    for c in ("postgres", "redis", "queues", "disk", "terraform", "docker", "sql"):
        assert value(found, "telltale_exporter_collector_success", collector=c) == 1, c
    check = promtool(body)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_queue_values(scraped) -> None:
    """Depth, oldest age, failed jobs and workers of Laravel, RQ, Celery and SQL queues."""
    found = samples(scraped[1])
    q = "telltale_queue_depth"
    assert value(found, q, queue="emails", backend="laravel") == 3
    assert value(found, q, queue="reports", backend="rq") == 2
    assert value(found, q, queue="celery", backend="celery") == 7
    assert value(found, q, queue="default", backend="sql") == 3  # seed: 3 waiting, 1 reserved
    age = "telltale_queue_oldest_job_age_seconds"
    assert 89 <= value(found, age, queue="emails", backend="laravel") < 100
    assert 119 <= value(found, age, queue="reports", backend="rq") < 130
    assert 599 <= value(found, age, queue="default", backend="sql") < 620
    assert value(found, age, queue="celery", backend="celery") is None  # Celery messages carry no time
    assert value(found, "telltale_queue_failed_jobs", queue="reports", backend="rq") == 3
    assert value(found, "telltale_queue_failed_jobs", queue="default", backend="sql") == 2
    assert value(found, "telltale_queue_workers", queue="reports", backend="rq") == 1  # w2 is stale


async def test_sql_business_values(scraped) -> None:
    """The shipped queries read the seed's rows."""
    found = samples(scraped[1])
    assert value(found, "telltale_sql_organization_servers", organization="Acme") == 3
    assert value(found, "telltale_sql_organization_applications", organization="Acme") == 4
    assert value(found, "telltale_sql_organization_applications_running", organization="Acme") == 3
    assert value(found, "telltale_sql_organization_applications_running", organization="Globex") == 1
    assert value(found, "telltale_sql_organization_servers", organization="Gone") is None
    assert value(found, "telltale_sql_deployments_last_hour", status="completed") == 3
    assert value(found, "telltale_sql_deployments_last_hour", status="failed") == 1
    assert value(found, "telltale_sql_deployment_duration_seconds_avg") == pytest.approx(120, abs=1)
    expiry = value(found, "telltale_sql_license_expiry_timestamp_seconds", organization="Globex")
    assert expiry == pytest.approx(time.time() + 5 * 86400, abs=120)
    assert value(found, "telltale_sql_license_expiry_timestamp_seconds", organization="Initech") is None
    assert value(found, "telltale_sql_payments_last_hour", status="succeeded") == 4
    assert value(found, "telltale_sql_payments_last_hour", status="failed") == 1
    assert value(found, "telltale_exporter_query_success", query="organization") == 1


async def test_terraform_values(scraped) -> None:
    """The fake terraform's version, and deployments from the seed."""
    found = samples(scraped[1])
    assert value(found, "telltale_terraform_up") == 1
    assert value(found, "telltale_terraform_info", version="1.9.8") == 1
    assert value(found, "telltale_terraform_deployments_active") == 1
    assert value(found, "telltale_terraform_deployments_last_24h", status="completed") == 5
    assert value(found, "telltale_terraform_deployments_last_24h", status="failed") == 2
    assert value(found, "telltale_terraform_deployment_duration_seconds_avg") == pytest.approx(192, abs=1)


async def test_disk_values(scraped) -> None:
    """Size and free space of each path, as statvfs reports them."""
    found = samples(scraped[1])
    st = os.statvfs("/tmp")
    assert value(found, "telltale_disk_size_bytes", path="/tmp") == st.f_blocks * st.f_frsize
    assert value(found, "telltale_disk_inodes", path="/tmp") == st.f_files
    assert 0 <= value(found, "telltale_disk_used_ratio", path="/") <= 1


async def test_redis_values(redis_server: RedisServer) -> None:
    """Keys per database and memory as Redis reports them."""
    redis_server.cli("-n", "5", "flushdb")
    for i in range(4):
        redis_server.cli("-n", "5", "set", f"k{i}", "v")
    app = make_exporter(redis_url=redis_server.url)
    try:
        found = samples(await app.exporter.scrape())
    finally:
        await app.aclose()
    assert value(found, "telltale_redis_up") == 1
    assert value(found, "telltale_redis_db_keys", db="db5") == 4
    assert value(found, "telltale_redis_memory_used_bytes") > 0
    assert value(found, "telltale_redis_commands_processed_total") > 0
    assert (
        value(
            found,
            "telltale_redis_info",
            version=redis_server.cli("info", "server").split("redis_version:")[1].split()[0],
            role="master",
        )
        == 1
    )


async def test_postgres_values(dsn: str, postgres: PostgresServer) -> None:
    """max_connections, an open transaction, a waiting lock and pg_stat_statements are seen."""
    db = dsn.rsplit("/", 1)[1]
    holder, waiter = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    app = make_exporter(database_url=dsn)
    try:
        await holder.execute("create table if not exists lock_probe (id int)")
        tx = holder.transaction()
        await tx.start()
        await holder.execute("lock table lock_probe in access exclusive mode")
        blocked = asyncio.ensure_future(waiter.execute("begin; lock table lock_probe in access exclusive mode; commit"))
        await asyncio.sleep(1.1)
        found = samples(await app.exporter.scrape())
        await tx.rollback()
        await blocked
    finally:
        await holder.close()
        await waiter.close()
        await app.aclose()
    assert value(found, "telltale_postgres_up") == 1
    assert value(found, "telltale_postgres_max_connections") == 50
    assert value(found, "telltale_postgres_locks_waiting") >= 1
    assert value(found, "telltale_postgres_oldest_transaction_age_seconds") >= 1.0
    assert value(found, "telltale_postgres_oldest_query_age_seconds") >= 1.0
    assert value(found, "telltale_postgres_connections", datname=db, state="active") >= 1
    size = int(postgres.psql(f"select pg_database_size('{db}')"))
    assert value(found, "telltale_postgres_database_size_bytes", datname=db) == pytest.approx(size, rel=0.05)
    assert value(found, "telltale_postgres_xact_commit_total", datname=db) > 0
    assert any(k[0] == "telltale_postgres_statement_mean_duration_seconds" for k in found)
    assert value(found, "telltale_postgres_replica") == 0


def _docker_post(socket_path: str, path: str, body: dict) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), base_url="http://d", timeout=30) as c:
        return c.post(path, json=body)


@pytest.fixture(scope="module")
def empty_image(podman: PodmanService) -> str:
    """An empty image made offline (no registry here); containers from it can be created, not started."""
    subprocess.run(
        "tar cf - --files-from /dev/null | podman import - telltale-test:latest",
        shell=True,
        check=True,
        capture_output=True,
    )
    return "telltale-test:latest"


async def test_docker_values(podman: PodmanService, empty_image: str) -> None:
    """Containers created through the Engine API are counted by state."""
    names = [f"tt-{os.getpid()}-{i}-{int(time.time() * 1000) % 100000}" for i in range(2)]
    app = make_exporter(docker_socket=podman.socket_path)
    try:
        before = samples(await app.exporter.scrape())
        assert all(value(before, "telltale_docker_container_restarts", container=n) is None for n in names)
        for name in names:
            r = _docker_post(
                podman.socket_path, f"/containers/create?name={name}", {"Image": empty_image, "Cmd": ["/none"]}
            )
            assert r.status_code == 201, r.text
        found = samples(await app.exporter.scrape())
    finally:
        await app.aclose()
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=podman.socket_path), base_url="http://d"
        ) as c:
            for name in names:
                await c.delete(f"/containers/{name}", params={"force": "true"})
    assert value(found, "telltale_docker_up") == 1
    # podman's storage is shared with other test runs, which create and remove containers meanwhile:
    # ours are counted by name, and at least them in the created state.
    assert value(found, "telltale_docker_containers", state="created") >= 2
    for name in names:
        assert value(found, "telltale_docker_container_restarts", container=name) == 0
    assert value(found, "telltale_docker_containers_unhealthy") == 0
    assert any(k[0] == "telltale_docker_info" for k in found)


async def test_http_endpoints(redis_server: RedisServer) -> None:
    """/metrics serves the text format, /health answers JSON, other paths 404."""
    app = make_exporter(redis_url=redis_server.url)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            m = await c.get("/metrics")
            h = await c.get("/health")
            nf = await c.get("/nope")
    finally:
        await app.aclose()
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "telltale_redis_up 1.0" in m.text
    assert h.status_code == 200 and h.json()["collectors"]["redis"] is True
    assert nf.status_code == 404


def test_served_by_python_m_exporter(redis_server: RedisServer, tmp_path: Path) -> None:
    """`python -m exporter --port P` serves /metrics over HTTP (the `telltale exporter` contract)."""
    from tests.servers import free_port, wait_port

    port = free_port()
    env = {**os.environ, "TELLTALE_REDIS_URL": redis_server.url, "TELLTALE_EXPORTER_LOG_LEVEL": "warning"}
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [os.sys.executable, "-m", "exporter", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, timeout=15)
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and "telltale_redis_up 1.0" in r.text
    finally:
        proc.terminate()
        proc.wait(10)


async def test_metrics_token_guards_the_exporter(redis_server: RedisServer) -> None:
    """With TELLTALE_METRICS_TOKEN set, /metrics needs the bearer token; /health stays open for probes."""
    app = make_exporter(redis_url=redis_server.url, metrics_token="scrape-token")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            missing = await c.get("/metrics")
            wrong = await c.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await c.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
            health = await c.get("/health")
    finally:
        await app.aclose()
    assert missing.status_code == wrong.status_code == 401
    assert right.status_code == 200 and "telltale_redis_up 1.0" in right.text
    assert "scrape-token" not in right.text
    assert health.status_code == 200


async def test_each_collector_describes_every_family_it_reports(scraped) -> None:
    """describe() is what the start-up duplicate check sees: it must name all that collect() reports."""
    app, _ = scraped
    for collector in app.exporter.collectors:
        reported = {m.name for m in await collector.collect()}
        described = {m.name for m in collector.describe()}
        assert reported and reported <= described, (collector.name, reported - described)


def test_a_name_reported_by_two_collectors_is_refused_at_start() -> None:
    from telltale.exporter.collectors.base import check_unique_names, described
    from telltale.exporter.collectors.disk import DiskCollector

    check_unique_names([DiskCollector(["/"])], described(["telltale_exporter_collector_success"]))
    with pytest.raises(ValueError, match="telltale_disk"):
        check_unique_names([DiskCollector(["/"]), DiskCollector(["/tmp"])])
    with pytest.raises(ValueError, match="telltale_disk_size_bytes"):
        check_unique_names([DiskCollector(["/"])], described(["telltale_disk_size_bytes"]))
