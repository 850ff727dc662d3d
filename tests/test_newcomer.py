"""What a newcomer sees: the install's output, the README's example DSN, and check messages that say why."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import telltale.checks.postgres as postgres_check
from telltale.checks.base import Check, Status
from telltale.checks.http import HttpCheck
from telltale.checks.postgres import PostgresCheck
from telltale.checks.redis import RedisCheck, make_client
from telltale.checks.runner import CheckRunner

from tests.servers import PostgresServer, free_port

ROOT = Path(__file__).resolve().parent.parent


async def run_one(check: Check, secrets: list[str] | None = None):
    runner = CheckRunner([check], secrets=secrets or [])
    try:
        return (await runner.run()).results[check.name]
    finally:
        await runner.close()


def readme_dsn() -> str:
    match = re.search(r"TELLTALE_DATABASE_URL=(\S+)", (ROOT / "README.md").read_text())
    assert match, "README.md has no TELLTALE_DATABASE_URL example"
    return match.group(1)


# The install step ------------------------------------------------------------------------------------


def test_make_deps_prints_one_line_per_step_and_the_log_tail_when_pip_fails(tmp_path: Path) -> None:
    """pip's ~50 lines go to VENV/install.log; a failure shows the end of that log, not nothing."""
    venv = tmp_path / "venv"
    links = tmp_path / "no-packages"
    links.mkdir()
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links)}  # pip fails fast, offline
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "deps", f"VENV={venv}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert proc.stdout.splitlines() == [
        f"telltale: creating {venv}",
        f"telltale: installing dependencies (log: {venv}/install.log)",
    ]
    assert f"failed; the last lines of {venv}/install.log:" in proc.stderr
    assert "No matching distribution found" in proc.stderr  # the reason, from the log's tail
    log = (venv / "install.log").read_text()
    assert "No matching distribution found" in log and "Obtaining file://" in log
    assert not (venv / ".installed").exists()


# The README's example DSN and the postgres check's message ----------------------------------------------


def test_readme_example_dsn_is_a_stock_postgres_role_and_database() -> None:
    parts = urlsplit(readme_dsn())
    # initdb (and Debian's postgresql package) create exactly one role and one database: postgres.
    assert (parts.scheme, parts.username, parts.password, parts.path) == ("postgresql", "postgres", None, "/postgres")
    assert (parts.hostname, parts.port) == ("127.0.0.1", 5432)


async def test_readme_example_dsn_passes_the_check_on_a_fresh_cluster(postgres: PostgresServer) -> None:
    """The fixture is a plain `initdb -U postgres -A trust`; only the port differs from the README's."""
    dsn = readme_dsn().replace(":5432/", f":{postgres.port}/")
    result = await run_one(PostgresCheck("postgres", dsn, timeout=3))
    assert result.status is Status.HEALTHY, result.message
    assert result.message.startswith("query in ")


async def test_unknown_role_says_so_and_the_password_never_shows(postgres: PostgresServer) -> None:
    dsn = postgres.dsn_for("postgres", user="app", password="hunter2-secret")
    result = await run_one(PostgresCheck("postgres", dsn, timeout=3))
    assert result.status is Status.UNHEALTHY
    assert result.message == 'connect failed: role "app" does not exist'
    assert result.error == 'InvalidAuthorizationSpecificationError: role "app" does not exist'
    assert "hunter2" not in json.dumps(result.to_dict(time.time())) + repr(result)


async def test_unknown_database_says_so(postgres: PostgresServer) -> None:
    result = await run_one(PostgresCheck("postgres", postgres.dsn_for("platform"), timeout=3))
    assert result.message == 'connect failed: database "platform" does not exist'


async def test_refused_connection_says_so() -> None:
    dsn = f"postgresql://postgres:hunter2-secret@127.0.0.1:{free_port()}/postgres"
    result = await run_one(PostgresCheck("postgres", dsn, timeout=3), secrets=["hunter2-secret"])
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("connect failed: ") and "Connect call failed" in result.message
    assert "hunter2" not in json.dumps(result.to_dict(time.time()))


async def test_failing_query_says_so(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connected, then the query fails: the server's error, marked as the query's, not a connect failure."""
    monkeypatch.setattr(postgres_check, "_QUERY", "select 1 / 0 as connections")
    result = await run_one(PostgresCheck("postgres", postgres.dsn, timeout=3))
    assert result.status is Status.UNHEALTHY
    assert result.message == "query failed: division by zero"


# Other checks keep their reason too ----------------------------------------------------------------------


async def test_unreachable_redis_says_why_without_the_password() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    client = make_client(url, 0.5)
    try:
        result = await run_one(RedisCheck("redis", client, timeout=0.5), secrets=["hunter2-secret"])
    finally:
        await client.aclose()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("cache check failed: ConnectionError: Error 111 connecting to 127.0.0.1:")
    assert "hunter2" not in json.dumps(result.to_dict(time.time()))


async def test_refused_http_dependency_says_why_without_credentials() -> None:
    url = f"http://deploy:hunter2-secret@127.0.0.1:{free_port()}/status?api_key=k3y-secret"
    async with httpx.AsyncClient() as client:
        result = await run_one(HttpCheck("payments", url, client))
    assert result.message == "http check failed: ConnectError: All connection attempts failed"
    text = json.dumps(result.to_dict(time.time()))
    assert "hunter2" not in text and "k3y-secret" not in text
