"""The scheduler heartbeat check against a real Redis, and its wiring from settings."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from telltale.checks.base import Status
from telltale.checks.redis import make_client
from telltale.checks.registry import build_checks
from telltale.checks.runner import CheckRunner
from telltale.checks.scheduler import SchedulerCheck
from telltale.config.settings import load_settings

from tests.servers import RedisServer


@pytest.fixture
async def rclient(redis_server: RedisServer) -> AsyncIterator:
    client = make_client(redis_server.url, 1.0)
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    return f"schedule:heartbeat:{uuid.uuid4().hex}"


async def test_recent_heartbeat_is_healthy_with_its_age(rclient, key: str) -> None:
    last = time.time() - 30
    await rclient.set(key, str(last))

    obs = await SchedulerCheck("scheduler", rclient, key, max_age=120).probe()

    assert obs.status is Status.HEALTHY
    assert obs.message in {"last run 30s ago", "last run 31s ago"}
    assert obs.observed["key"] == key
    assert obs.observed["last_run_timestamp"] == pytest.approx(last)
    assert 30 <= obs.observed["age_seconds"] < 32
    assert obs.observed["max_age_seconds"] == 120


async def test_stale_heartbeat_is_unhealthy(rclient, key: str) -> None:
    await rclient.set(key, str(int(time.time()) - 300))

    obs = await SchedulerCheck("scheduler", rclient, key, max_age=120).probe()

    assert obs.status is Status.UNHEALTHY
    assert obs.message in {"last run 300s ago (limit 120s)", "last run 301s ago (limit 120s)"}
    assert obs.observed["age_seconds"] >= 300


async def test_missing_heartbeat_is_unhealthy(rclient, key: str) -> None:
    obs = await SchedulerCheck("scheduler", rclient, key).probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"no heartbeat at {key}"
    assert obs.observed == {"key": key}


@pytest.mark.parametrize("value", ["yesterday", "nan", "inf", ""])
async def test_a_value_that_is_not_a_timestamp_is_unhealthy(rclient, key: str, value: str) -> None:
    await rclient.set(key, value)
    obs = await SchedulerCheck("scheduler", rclient, key).probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.message == f"heartbeat at {key} is not a timestamp"


@pytest.mark.parametrize("fmt", ["iso_z", "iso_offset", "iso_naive_utc", "millis"])
async def test_heartbeat_formats_schedulers_write(rclient, key: str, fmt: str) -> None:
    last = time.time() - 10
    dt = datetime.fromtimestamp(last, UTC)
    value = {
        "iso_z": dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "iso_offset": dt.isoformat(),
        "iso_naive_utc": dt.replace(tzinfo=None).isoformat(),  # Laravel's now()->toDateTimeString() in UTC
        "millis": str(int(last * 1000)),  # JavaScript's Date.now()
    }[fmt]
    await rclient.set(key, value)

    obs = await SchedulerCheck("scheduler", rclient, key, max_age=60).probe()

    assert obs.status is Status.HEALTHY
    assert 9 <= obs.observed["age_seconds"] < 12


async def test_a_millisecond_heartbeat_still_goes_stale(rclient, key: str) -> None:
    await rclient.set(key, str(int((time.time() - 600) * 1000)))
    obs = await SchedulerCheck("scheduler", rclient, key, max_age=60).probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.observed["age_seconds"] >= 600


async def test_a_heartbeat_from_the_future_counts_as_just_now(rclient, key: str) -> None:
    await rclient.set(key, str(time.time() + 30))  # clock skew between hosts
    obs = await SchedulerCheck("scheduler", rclient, key).probe()
    assert obs.status is Status.HEALTHY
    assert obs.observed["age_seconds"] == 0


async def test_hung_redis_is_a_timeout(own_redis: RedisServer, key: str) -> None:
    client = make_client(own_redis.url, 5.0)
    await client.ping()
    runner = CheckRunner([SchedulerCheck("scheduler", client, key, timeout=0.3)])
    own_redis.freeze()
    try:
        result = (await runner.run()).results["scheduler"]
    finally:
        own_redis.resume()
        await runner.close()
        await client.aclose()
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"
    assert result.latency_seconds < 0.5


async def test_build_checks_wires_the_scheduler_check_only_with_a_heartbeat_key(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TELLTALE_"):
            monkeypatch.delenv(name)

    for settings, wired in [
        ({"redis_url": redis_server.url}, False),
        (
            {
                "redis_url": redis_server.url,
                "scheduler_heartbeat_key": "laravel:schedule",
                "scheduler_max_age_seconds": 90,
            },
            True,
        ),
    ]:
        checks = {c.name: c for c in build_checks(load_settings(**settings))}
        try:
            assert ("scheduler" in checks) is wired
            if wired:
                check = checks["scheduler"]
                assert isinstance(check, SchedulerCheck)
                assert (check.key, check.max_age) == ("laravel:schedule", 90)
                assert check.client is checks["redis"].client
        finally:
            for c in checks.values():
                await c.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1764621065", 1764621065.0),
        ("1764621065123", 1764621065.123),  # milliseconds
        (b"1764621065.5", 1764621065.5),  # a client that does not decode
        ("2025-12-01T20:31:05.123Z", 1764621065.123),
        ("2025-12-01T20:31:05.123", 1764621065.123),  # naive is UTC
        ("2025-12-01T21:31:05.123+01:00", 1764621065.123),
    ],
)
def test_one_timestamp_parser_for_every_heartbeat_form(value: str | bytes, expected: float) -> None:
    from telltale.config.timestamps import iso_utc, parse_timestamp

    assert parse_timestamp(value) == pytest.approx(expected, abs=1e-6)
    assert parse_timestamp(iso_utc(expected)) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("value", ["", "nan", "inf", "soon", b"\xff\xfe"])
def test_what_is_not_a_timestamp_is_a_value_error(value: str | bytes) -> None:
    from telltale.config.timestamps import parse_timestamp

    with pytest.raises(ValueError):
        parse_timestamp(value)
