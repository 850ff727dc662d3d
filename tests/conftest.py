"""Shared fixtures: real PostgreSQL and Redis servers for the whole session, and fresh ones to break."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import PodmanService, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A session-wide PostgreSQL; tests must not stop or freeze it (use `own_postgres`)."""
    server = PostgresServer().init().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A session-wide Redis; tests must not stop or freeze it (use `own_redis`)."""
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL this test may stop, freeze and restart."""
    server = PostgresServer().init().start()
    yield server
    server.destroy()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis this test may stop, freeze and restart."""
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def podman() -> Iterator[PodmanService]:
    service = PodmanService().start()
    yield service
    service.destroy()
