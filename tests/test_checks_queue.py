"""The queue check against a real Redis (Laravel, Celery and RQ layouts) and a real PostgreSQL (Laravel's
`jobs`/`failed_jobs` tables), and its wiring from settings."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from telltale.checks.base import Status
from telltale.checks.postgres import PostgresCheck
from telltale.checks.queue import QueueCheck
from telltale.checks.redis import make_client
from telltale.checks.registry import build_checks
from telltale.checks.runner import CheckRunner
from telltale.config.settings import QueueSpec, load_settings

from tests.servers import PostgresServer, RedisServer, free_port

# Laravel's `php artisan queue:table` / `queue:failed-table` migrations, as PostgreSQL creates them.
LARAVEL_TABLES = """
create table {jobs} (
    id bigserial primary key,
    queue varchar(255) not null,
    payload text not null,
    attempts smallint not null,
    reserved_at integer null,
    available_at integer not null,
    created_at integer not null
);
create index on {jobs} (queue);
create table {failed} (
    id bigserial primary key,
    uuid varchar(255) not null unique,
    connection text not null,
    queue text not null,
    payload text not null,
    exception text not null,
    failed_at timestamp(0) without time zone not null default current_timestamp
);
"""


def qname() -> str:
    return f"q{uuid.uuid4().hex[:12]}"


def iso_utc(ts: float) -> str:
    """RQ's own format for `last_heartbeat` (rq.utils.utcformat)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("TELLTALE_"):
            monkeypatch.delenv(key)


@pytest.fixture
async def rclient(redis_server: RedisServer) -> AsyncIterator:
    client = make_client(redis_server.url, 1.0)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def queue_db(postgres: PostgresServer) -> Iterator[str]:
    """A database holding Laravel's queue tables, plus the same pair under a schema with an awkward name."""
    db = f"telltale_queue_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"create database {db}")
    postgres.psql(LARAVEL_TABLES.format(jobs="jobs", failed="failed_jobs"), db=db)
    postgres.psql('create schema "app"', db=db)
    postgres.psql(LARAVEL_TABLES.format(jobs='app."Queue Jobs"', failed='app."Failed ""Jobs"""'), db=db)
    yield postgres.dsn_for(db)
    postgres.psql(f"drop database {db} with (force)")


# Redis lists: Laravel and Celery --------------------------------------------------------------------


async def test_laravel_queue_depth_is_the_length_of_its_redis_list(rclient) -> None:
    name = qname()
    await rclient.rpush(f"queues:{name}", *[json.dumps({"job": i}) for i in range(3)])
    check = QueueCheck("queue", [QueueSpec(name=name)], client=rclient)

    obs = await check.probe()

    assert obs.status is Status.HEALTHY
    assert obs.message == f"{name}: 3"
    assert obs.observed == {"queues": {name: {"depth": 3}}}


async def test_celery_queue_reads_the_list_named_after_the_queue(rclient) -> None:
    name = qname()
    await rclient.lpush(name, "a", "b")
    await rclient.rpush(f"queues:{name}", "laravel-only")  # another backend's key must not count
    check = QueueCheck("queue", [QueueSpec(name=name, backend="celery")], client=rclient)

    obs = await check.probe()

    assert obs.status is Status.HEALTHY
    assert obs.observed["queues"][name]["depth"] == 2


async def test_an_explicit_key_overrides_the_backend_naming(rclient) -> None:
    name, key = qname(), f"custom:{uuid.uuid4().hex}"
    await rclient.rpush(key, "x")
    check = QueueCheck("queue", [QueueSpec(name=name, backend="redis_list", key=key)], client=rclient)
    assert (await check.probe()).observed["queues"][name]["depth"] == 1


async def test_an_empty_queue_is_depth_zero_and_healthy(rclient) -> None:
    name = qname()
    obs = await QueueCheck("queue", [QueueSpec(name=name)], client=rclient).probe()
    assert obs.status is Status.HEALTHY
    assert obs.observed["queues"][name] == {"depth": 0}


async def test_depth_over_the_thresholds_degrades_then_fails(rclient) -> None:
    name = qname()
    key = f"queues:{name}"
    check = QueueCheck("queue", [QueueSpec(name=name)], client=rclient, depth_degraded=3, depth_unhealthy=5)

    await rclient.rpush(key, *"abc")  # 3: at the threshold, not over it
    obs = await check.probe()
    assert obs.status is Status.HEALTHY

    await rclient.rpush(key, "d")  # 4: over the degraded threshold
    obs = await check.probe()
    assert obs.status is Status.DEGRADED
    assert obs.message == f"{name} depth 4"

    await rclient.rpush(key, "e", "f")  # 6: over the unhealthy threshold
    obs = await check.probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"{name} depth 6"
    assert obs.observed["queues"][name]["depth"] == 6


async def test_per_queue_thresholds_override_the_check_defaults_and_the_worst_queue_wins(rclient) -> None:
    quiet, busy = qname(), qname()
    await rclient.rpush(f"queues:{quiet}", *"abc")
    await rclient.rpush(f"queues:{busy}", *"abc")
    specs = [QueueSpec(name=quiet), QueueSpec(name=busy, depth_degraded=1, depth_unhealthy=2)]

    obs = await QueueCheck("queue", specs, client=rclient).probe()

    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"{busy} depth 3"
    assert obs.observed["queues"][quiet]["depth"] == obs.observed["queues"][busy]["depth"] == 3


# worker heartbeats ---------------------------------------------------------------------------------


async def test_heartbeat_key_counts_a_live_worker_while_fresh(rclient) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    spec = QueueSpec(name=name, heartbeat_key=beat, heartbeat_max_age_seconds=60, require_workers=True)
    check = QueueCheck("queue", [spec], client=rclient)

    await rclient.set(beat, str(time.time() - 5))
    obs = await check.probe()
    assert obs.status is Status.HEALTHY
    state = obs.observed["queues"][name]
    assert state["workers"] == 1
    assert 4.5 <= state["heartbeat_age_seconds"] <= 7

    await rclient.set(beat, str(time.time() - 600))
    obs = await check.probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"{name} has no live worker"
    assert obs.observed["queues"][name]["workers"] == 0
    assert obs.observed["queues"][name]["heartbeat_age_seconds"] >= 599


@pytest.mark.parametrize("value", ["{ts_ms}", "{iso}", "{iso_naive}"])
async def test_heartbeat_in_milliseconds_or_iso_8601_is_understood(rclient, value: str) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    now = time.time() - 3
    await rclient.set(
        beat,
        value.format(
            ts_ms=int(now * 1000),
            iso=iso_utc(now),
            iso_naive=datetime.fromtimestamp(now, UTC).replace(tzinfo=None).isoformat(),
        ),
    )
    spec = QueueSpec(name=name, heartbeat_key=beat, heartbeat_max_age_seconds=60, require_workers=True)

    obs = await QueueCheck("queue", [spec], client=rclient).probe()

    assert obs.status is Status.HEALTHY
    assert 2 <= obs.observed["queues"][name]["heartbeat_age_seconds"] <= 5


@pytest.mark.parametrize("value", [None, "not-a-time", "nan"])
async def test_missing_or_garbage_heartbeat_is_no_worker_not_a_crash(rclient, value: str | None) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    if value is not None:
        await rclient.set(beat, value)
    spec = QueueSpec(name=name, heartbeat_key=beat, require_workers=True)

    obs = await QueueCheck("queue", [spec], client=rclient).probe()

    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"{name} has no live worker"
    assert obs.observed["queues"][name] == {"depth": 0, "heartbeat_age_seconds": None, "workers": 0}


async def test_a_stale_heartbeat_without_require_workers_only_reports(rclient) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    await rclient.set(beat, str(time.time() - 600))
    obs = await QueueCheck("queue", [QueueSpec(name=name, heartbeat_key=beat)], client=rclient).probe()
    assert obs.status is Status.HEALTHY
    assert obs.observed["queues"][name]["workers"] == 0


# RQ --------------------------------------------------------------------------------------------------


async def _rq_worker(rclient, queue: str, worker: str, heartbeat: float) -> None:
    key = f"rq:worker:{worker}"
    await rclient.sadd(f"rq:workers:{queue}", key)
    await rclient.hset(key, mapping={"queues": queue, "state": "idle", "last_heartbeat": iso_utc(heartbeat)})


async def test_rq_depth_failed_registry_and_live_workers(rclient) -> None:
    name = qname()
    await rclient.rpush(f"rq:queue:{name}", "job-1", "job-2")
    await rclient.zadd(f"rq:failed:{name}", {"job-9": time.time() + 3600, "job-8": time.time() + 3600})
    await _rq_worker(rclient, name, f"alive-{name}", time.time() - 2)
    await _rq_worker(rclient, name, f"stale-{name}", time.time() - 3600)
    await rclient.sadd(f"rq:workers:{name}", f"rq:worker:gone-{name}")  # in the set, hash expired
    check = QueueCheck("queue", [QueueSpec(name=name, backend="rq", require_workers=True)], client=rclient)

    obs = await check.probe()

    assert obs.status is Status.HEALTHY
    assert obs.message == f"{name}: 2"
    assert obs.observed["queues"][name] == {"depth": 2, "failed": 2, "workers": 1}


async def test_rq_without_a_live_worker_is_unhealthy_when_workers_are_required(rclient) -> None:
    name = qname()
    await rclient.rpush(f"rq:queue:{name}", "job-1")
    await _rq_worker(rclient, name, f"stale-{name}", time.time() - 3600)
    check = QueueCheck("queue", [QueueSpec(name=name, backend="rq", require_workers=True)], client=rclient)

    obs = await check.probe()

    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"{name} has no live worker"
    assert obs.observed["queues"][name] == {"depth": 1, "failed": 0, "workers": 0}


async def test_rq_worker_set_members_may_be_bare_worker_names(rclient) -> None:
    name = qname()
    worker = f"bare-{name}"
    await rclient.sadd(f"rq:workers:{name}", worker)
    await rclient.hset(f"rq:worker:{worker}", "last_heartbeat", iso_utc(time.time()))
    obs = await QueueCheck("queue", [QueueSpec(name=name, backend="rq")], client=rclient).probe()
    assert obs.observed["queues"][name]["workers"] == 1


async def test_rq_workers_and_a_heartbeat_key_add_up(rclient) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    await _rq_worker(rclient, name, f"w-{name}", time.time())
    await rclient.set(beat, str(time.time()))
    spec = QueueSpec(name=name, backend="rq", heartbeat_key=beat)
    obs = await QueueCheck("queue", [spec], client=rclient).probe()
    assert obs.observed["queues"][name]["workers"] == 2


# Laravel's database queue ---------------------------------------------------------------------------


async def _pg_queue_check(dsn: str, specs: list[QueueSpec], client=None) -> tuple[QueueCheck, PostgresCheck]:
    pg = PostgresCheck("postgres", dsn, timeout=2.0)
    return QueueCheck("queue", specs, client=client, pg_check=pg, timeout=2.0), pg


async def test_sql_queue_counts_waiting_jobs_failed_jobs_and_oldest_age(
    postgres: PostgresServer, queue_db: str
) -> None:
    name, other = qname(), qname()
    db = queue_db.rsplit("/", 1)[1]
    now = int(time.time())
    postgres.psql(
        "insert into jobs (queue, payload, attempts, reserved_at, available_at, created_at) values "
        f"('{name}', '{{}}', 0, null, {now - 90}, {now - 90}),"
        f"('{name}', '{{}}', 0, null, {now - 10}, {now - 10}),"
        f"('{name}', '{{}}', 0, null, {now + 600}, {now}),"  # delayed: waiting, not yet due
        f"('{name}', '{{}}', 1, {now - 5}, {now - 300}, {now - 300}),"  # reserved: a worker has it
        f"('{other}', '{{}}', 0, null, {now - 999}, {now - 999})",
        db=db,
    )
    postgres.psql(
        "insert into failed_jobs (uuid, connection, queue, payload, exception) values "
        f"('{uuid.uuid4()}', 'database', '{name}', '{{}}', 'boom'),"
        f"('{uuid.uuid4()}', 'database', '{name}', '{{}}', 'x')",
        db=db,
    )
    check, pg = await _pg_queue_check(queue_db, [QueueSpec(name=name, backend="sql")])
    try:
        obs = await check.probe()
    finally:
        await pg.close()

    assert obs.status is Status.HEALTHY
    assert obs.message == f"{name}: 3"
    state = obs.observed["queues"][name]
    assert (state["depth"], state["failed"]) == (3, 2)
    assert 89 <= state["oldest_job_age_seconds"] <= 95


async def test_sql_queue_over_threshold_and_in_a_quoted_schema_table(postgres: PostgresServer, queue_db: str) -> None:
    name = qname()
    db = queue_db.rsplit("/", 1)[1]
    now = int(time.time())
    postgres.psql(
        'insert into app."Queue Jobs" (queue, payload, attempts, available_at, created_at) '
        f"select '{name}', '{{}}', 0, {now}, {now} from generate_series(1, 5)",
        db=db,
    )
    spec = QueueSpec(
        name=name, backend="sql", table="app.Queue Jobs", failed_table='app.Failed "Jobs"', depth_degraded=4
    )
    check, pg = await _pg_queue_check(queue_db, [spec])
    try:
        obs = await check.probe()
    finally:
        await pg.close()

    assert obs.status is Status.DEGRADED
    assert obs.message == f"{name} depth 5"
    assert obs.observed["queues"][name]["failed"] == 0


async def test_sql_table_names_are_quoted_never_interpolated(postgres: PostgresServer, queue_db: str) -> None:
    db = queue_db.rsplit("/", 1)[1]
    spec = QueueSpec(name=qname(), backend="sql", table="jobs; drop table failed_jobs; --")
    check, pg = await _pg_queue_check(queue_db, [spec])
    runner = CheckRunner([check])
    try:
        result = (await runner.run()).results["queue"]
    finally:
        await runner.close()
        await pg.close()

    assert result.status is Status.UNHEALTHY
    assert "does not exist" in (result.error or "")
    assert postgres.psql("select to_regclass('failed_jobs') is not null", db=db) == "t"


async def test_sql_queue_worker_heartbeat_comes_from_redis(queue_db: str, rclient) -> None:
    name, beat = qname(), f"hb:{uuid.uuid4().hex}"
    spec = QueueSpec(name=name, backend="sql", heartbeat_key=beat, require_workers=True)
    check, pg = await _pg_queue_check(queue_db, [spec], client=rclient)
    try:
        obs = await check.probe()
        assert obs.status is Status.UNHEALTHY
        assert obs.message == f"{name} has no live worker"

        await rclient.set(beat, str(time.time()))
        obs = await check.probe()
    finally:
        await pg.close()
    assert obs.status is Status.HEALTHY
    assert obs.observed["queues"][name]["workers"] == 1


async def _both_states(dsn: str, spec: QueueSpec, client) -> tuple[dict, dict]:
    """The queue's state as the check sees it and as the exporter's collector sees it."""
    from telltale.exporter.collectors.base import PgPool
    from telltale.exporter.collectors.queues import QueueCollector

    check, pg = await _pg_queue_check(dsn, [spec], client=client)
    pool = PgPool(dsn, 2.0)
    try:
        obs = await check.probe()
        exported = await QueueCollector([spec], client=client, pg=pool)._sql_state(spec, time.time())
    finally:
        await pg.close()
        await pool.aclose()
    return obs.observed["queues"][spec.name], exported


@pytest.mark.parametrize("beat", ["not-a-time", "nan", "\xff"])
async def test_sql_queue_garbage_heartbeat_is_a_dead_worker_for_check_and_exporter(
    queue_db: str, rclient, beat: str
) -> None:
    """The exporter used to raise on a heartbeat that is not a timestamp (the whole queues collector down);
    both now read it as no live worker, with the same state."""
    name, key = qname(), f"hb:{uuid.uuid4().hex}"
    await rclient.set(key, beat)
    spec = QueueSpec(name=name, backend="sql", heartbeat_key=key)
    checked, exported = await _both_states(queue_db, spec, rclient)
    assert checked == exported
    assert (exported["workers"], exported["heartbeat_age_seconds"]) == (0, None)


async def test_sql_queue_a_delayed_job_is_waiting_but_not_late_for_check_and_exporter(
    postgres: PostgresServer, queue_db: str, rclient
) -> None:
    """`available_at` in the future: counted in the depth, but the oldest due job's age is 0 (the check
    used to take the delayed job's time, the exporter reported no age at all)."""
    name = qname()
    now = int(time.time())
    postgres.psql(
        "insert into jobs (queue, payload, attempts, reserved_at, available_at, created_at) values "
        f"('{name}', '{{}}', 0, null, {now + 600}, {now - 50})",
        db=queue_db.rsplit("/", 1)[1],
    )
    beat = f"hb:{uuid.uuid4().hex}"
    await rclient.set(beat, str(time.time() - 3))
    spec = QueueSpec(name=name, backend="sql", heartbeat_key=beat)
    checked, exported = await _both_states(queue_db, spec, rclient)
    assert checked["depth"] == exported["depth"] == 1
    assert checked["oldest_job_age_seconds"] == exported["oldest_job_age_seconds"] == 0.0
    assert checked["workers"] == exported["workers"] == 1
    assert 2 <= exported["heartbeat_age_seconds"] <= 6


# failures through the runner ------------------------------------------------------------------------


async def test_unreachable_redis_is_unhealthy_and_the_password_never_shows() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    client = make_client(url, 0.5)
    runner = CheckRunner(
        [QueueCheck("queue", [QueueSpec(name="default")], client=client, timeout=0.5)], secrets=["hunter2-secret"]
    )
    try:
        result = (await runner.run()).results["queue"]
    finally:
        await runner.close()
        await client.aclose()

    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("queue check failed: ")
    assert result.error and result.error.startswith("ConnectionError: Error 111")
    assert "hunter2" not in json.dumps(result.to_dict(time.time()))


async def test_unreachable_database_for_a_sql_queue_is_unhealthy_without_the_password() -> None:
    dsn = f"postgresql://app:hunter2-secret@127.0.0.1:{free_port()}/app"
    check, pg = await _pg_queue_check(dsn, [QueueSpec(name="default", backend="sql")])
    runner = CheckRunner([check], secrets=["hunter2-secret"])
    try:
        result = (await runner.run()).results["queue"]
    finally:
        await runner.close()
        await pg.close()

    assert result.status is Status.UNHEALTHY
    assert result.error
    assert "hunter2" not in json.dumps(result.to_dict(time.time()))


async def test_hung_redis_is_unhealthy_within_the_check_timeout(own_redis: RedisServer) -> None:
    client = make_client(own_redis.url, 5.0)
    await client.ping()  # connected before the freeze: the probe hangs on a live socket
    check = QueueCheck("queue", [QueueSpec(name="default")], client=client, timeout=0.3)
    runner = CheckRunner([check])
    own_redis.freeze()
    try:
        started = time.perf_counter()
        result = (await runner.run()).results["queue"]
        elapsed = time.perf_counter() - started
    finally:
        own_redis.resume()
        await runner.close()
        await client.aclose()

    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"
    assert elapsed < 0.5


# wiring ----------------------------------------------------------------------------------------------


async def _built(**settings) -> dict:
    checks = build_checks(load_settings(**settings))
    try:
        return {c.name: c for c in checks}
    finally:
        for c in checks:
            await c.close()


async def test_build_checks_wires_the_queue_check_only_when_queues_are_configured(
    clean_env: None, redis_server: RedisServer, postgres: PostgresServer
) -> None:
    assert "queue" not in await _built(redis_url=redis_server.url)

    built = await _built(
        redis_url=redis_server.url,
        database_url=postgres.dsn,
        queues=[{"name": "emails", "backend": "rq", "require_workers": True}, {"name": "default", "backend": "sql"}],
        queue_depth_degraded=7,
    )
    queue = built["queue"]
    assert isinstance(queue, QueueCheck)
    assert [s.name for s in queue.specs] == ["emails", "default"]
    assert queue.client is not None and queue.pg_check is built["postgres"]
    assert queue.depth_degraded == 7
    assert not queue.critical


async def test_sql_queue_without_a_database_says_which_setting_is_missing() -> None:
    """It used to fail with `'NoneType' object has no attribute '_get_pool'`."""
    check = QueueCheck("queue", [QueueSpec(name="jobs", backend="sql")], client=None, timeout=1.0)
    runner = CheckRunner([check])
    try:
        result = (await runner.run()).results["queue"]
    finally:
        await runner.close()
    assert result.status is Status.UNHEALTHY
    assert "TELLTALE_DATABASE_URL" in (result.error or result.message)
