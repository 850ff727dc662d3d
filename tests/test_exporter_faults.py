"""Exporter under failure: targets stopped or frozen, broken queries, invalid configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily
from telltale.config.exporter import load_exporter_settings
from telltale.config.settings import SettingsError
from telltale.exporter.collectors.base import Collector
from telltale.exporter.collectors.sql import load_queries
from telltale.exporter.main import Exporter

from tests.servers import PostgresServer, RedisServer
from tests.test_exporter_support import make_exporter, promtool, samples, value

FAST = {"collector_timeout_seconds": 0.5}


async def scrape(app) -> tuple[dict, float]:
    started = time.monotonic()
    body = await app.exporter.scrape()
    return samples(body), time.monotonic() - started


async def test_stopped_postgres_then_back(own_postgres: PostgresServer, redis_server: RedisServer) -> None:
    """Postgres stopped: postgres_up 0, Redis still reported; restarted: metrics come back."""
    app = make_exporter(FAST, database_url=own_postgres.dsn, redis_url=redis_server.url)
    try:
        found, _ = await scrape(app)
        assert value(found, "telltale_postgres_up") == 1
        own_postgres.stop()
        found, took = await scrape(app)
        assert value(found, "telltale_postgres_up") == 0
        assert value(found, "telltale_exporter_collector_success", collector="postgres") == 0
        assert value(found, "telltale_redis_up") == 1
        assert value(found, "telltale_exporter_collector_success", collector="redis") == 1
        assert took < 1.5
        own_postgres.start()
        found, _ = await scrape(app)
        assert value(found, "telltale_postgres_up") == 1
        assert value(found, "telltale_exporter_collector_success", collector="postgres") == 1
    finally:
        await app.aclose()


async def test_stopped_redis_then_back(own_redis: RedisServer, postgres: PostgresServer) -> None:
    """Redis stopped: redis_up 0 and its queues fail, Postgres still reported; restarted: back."""
    app = make_exporter(
        FAST, database_url=postgres.dsn, redis_url=own_redis.url, queues=[{"name": "emails", "backend": "laravel"}]
    )
    try:
        own_redis.stop()
        found, _ = await scrape(app)
        assert value(found, "telltale_redis_up") == 0
        assert value(found, "telltale_exporter_collector_success", collector="queues") == 0
        assert value(found, "telltale_postgres_up") == 1
        own_redis.start()
        own_redis.cli("rpush", "queues:emails", "{}", "{}")
        found, _ = await scrape(app)
        assert value(found, "telltale_redis_up") == 1
        assert value(found, "telltale_queue_depth", queue="emails", backend="laravel") == 2
    finally:
        await app.aclose()


async def test_frozen_redis_is_bounded(own_redis: RedisServer, postgres: PostgresServer) -> None:
    """A hung Redis (SIGSTOP) costs the scrape at most its timeout; after SIGCONT it reports again."""
    app = make_exporter(FAST, database_url=postgres.dsn, redis_url=own_redis.url)
    try:
        await scrape(app)
        own_redis.freeze()
        found, took = await scrape(app)
        assert took < 0.5 + 0.5
        assert value(found, "telltale_redis_up") == 0
        assert value(found, "telltale_postgres_up") == 1
        own_redis.resume()
        found, _ = await scrape(app)
        assert value(found, "telltale_redis_up") == 1
    finally:
        own_redis.resume()
        await app.aclose()


async def test_frozen_postgres_is_bounded(own_postgres: PostgresServer, redis_server: RedisServer) -> None:
    """A hung Postgres costs at most its timeout, with connections already pooled or new; then it comes back."""
    app = make_exporter(FAST, database_url=own_postgres.dsn, redis_url=redis_server.url)
    try:
        await scrape(app)
        own_postgres.freeze()
        for _ in range(2):  # the pooled connection hangs, then a new connection hangs in its startup
            found, took = await scrape(app)
            assert took < 0.5 + 0.5
            assert value(found, "telltale_postgres_up") == 0
            assert value(found, "telltale_redis_up") == 1
        own_postgres.resume()
        found, _ = await scrape(app)
        if value(found, "telltale_postgres_up") != 1:  # a connect that began while frozen may still be finishing
            await asyncio.sleep(0.6)
            found, _ = await scrape(app)
        assert value(found, "telltale_postgres_up") == 1
    finally:
        own_postgres.resume()
        await app.aclose()


async def test_broken_query_fails_alone(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A query on a missing table gives success 0 and one log line; the good query still reports."""
    qf = tmp_path / "q.yml"
    qf.write_text(
        "queries:\n"
        "  - {name: answer, help: The answer., query: 'select 42 as v', values: [v]}\n"
        "  - {name: broken, help: Broken., query: 'select n from no_such_table', values: [n]}\n"
        "  - {name: slow, help: Slow., query: 'select pg_sleep(5), 1 as v', values: [v], timeout: 0.3}\n"
    )
    app = make_exporter({"queries_file": str(qf)}, database_url=postgres.dsn)
    try:
        with caplog.at_level(logging.WARNING, logger="telltale.exporter"):
            found, took = await scrape(app)
            found, _ = await scrape(app)
    finally:
        await app.aclose()
    assert took < 1.5
    assert value(found, "telltale_sql_answer") == 42
    assert value(found, "telltale_exporter_query_success", query="answer") == 1
    assert value(found, "telltale_exporter_query_success", query="broken") == 0
    assert value(found, "telltale_exporter_query_success", query="slow") == 0
    assert ("telltale_sql_broken", frozenset()) not in found
    assert value(found, "telltale_exporter_collector_success", collector="sql") == 1
    broken = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(broken) == 1 and "no_such_table" in broken[0].getMessage()
    assert "\n" not in broken[0].getMessage()


@pytest.mark.parametrize(
    "text, expect",
    [
        ("queries: [\n  - name: x\n", "is not valid YAML at line"),
        ("queries:\n  - {name: x, help: h, query: select 1}\n", "queries[0]: `values` is required"),
        ("queries:\n  - {name: x_total, help: h, query: select 1, values: [v]}\n", "queries[0].name"),
        ("queries:\n  - {name: x, help: h, query: select 1, values: [v], interval: -1}\n", "queries[0].interval"),
        ("nope: 1\n", "unknown key"),
    ],
)
def test_invalid_queries_file_is_one_line(tmp_path: Path, text: str, expect: str) -> None:
    """Invalid YAML or query specs are refused at start with one line naming the setting."""
    qf = tmp_path / "q.yml"
    qf.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_queries(str(qf))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("TELLTALE_EXPORTER_QUERIES_FILE") and expect in msg


def test_invalid_exporter_settings_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad TELLTALE_EXPORTER_* values raise a one-line SettingsError naming the variable."""
    monkeypatch.setenv("TELLTALE_EXPORTER_PORT", "0")
    with pytest.raises(SettingsError, match=r"^TELLTALE_EXPORTER_PORT: "):
        load_exporter_settings()
    monkeypatch.delenv("TELLTALE_EXPORTER_PORT")
    monkeypatch.setenv("TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS", "soon")
    with pytest.raises(SettingsError, match=r"^TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS: "):
        load_exporter_settings()
    monkeypatch.delenv("TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS")
    monkeypatch.setenv("TELLTALE_EXPORTER_TERRAFORM_DEPLOYMENTS_TABLE", "x; drop table y")
    with pytest.raises(SettingsError, match=r"^TELLTALE_EXPORTER_TERRAFORM_DEPLOYMENTS_TABLE: "):
        load_exporter_settings()
    monkeypatch.delenv("TELLTALE_EXPORTER_TERRAFORM_DEPLOYMENTS_TABLE")
    assert load_exporter_settings(port=9999).port == 9999


def test_cli_exits_2_on_bad_queries_file(tmp_path: Path) -> None:
    """`python -m exporter` with an invalid queries file prints one line and exits 2."""
    qf = tmp_path / "q.yml"
    qf.write_text("queries: [\n")
    env = {
        **os.environ,
        "TELLTALE_DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
        "TELLTALE_EXPORTER_QUERIES_FILE": str(qf),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "exporter"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not valid YAML" in proc.stderr


class _Fake(Collector):
    def __init__(self, name: str, behaviour: str) -> None:
        self.name, self.behaviour = name, behaviour

    async def collect(self):
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "fail":
            raise RuntimeError("boom")
        return [GaugeMetricFamily(f"telltale_fake_{self.name}", "A fake reading.", value=1)]


async def test_one_slow_or_failing_collector_never_blanks_the_others() -> None:
    """Collectors run concurrently under their timeout: a hung one and a failing one report success 0."""
    from telltale.config.settings import load_settings

    exp = Exporter(load_settings(disk_paths=[]), load_exporter_settings(collector_timeout_seconds=0.3))
    exp.collectors = [_Fake("ok", "ok"), _Fake("hang", "hang"), _Fake("fail", "fail")]
    started = time.monotonic()
    first, second = await asyncio.gather(exp.scrape(), exp.scrape())  # concurrent scrapes share one run
    took = time.monotonic() - started
    assert first == second and took < 0.8
    found = samples(first)
    assert value(found, "telltale_fake_ok") == 1
    assert value(found, "telltale_exporter_collector_success", collector="ok") == 1
    assert value(found, "telltale_exporter_collector_success", collector="hang") == 0
    assert value(found, "telltale_exporter_collector_success", collector="fail") == 0
    assert 0.29 <= value(found, "telltale_exporter_collector_duration_seconds", collector="hang") < 0.6
    assert promtool(first).returncode == 0
    await exp.aclose()
