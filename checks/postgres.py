"""PostgreSQL: round-trip latency and connections in use against max_connections."""

from __future__ import annotations

import time

import asyncpg
from telltale.checks.base import Check, Observation, ProbeError, Status, grade, worst

_QUERY = """
select (select count(*) from pg_stat_activity where backend_type = 'client backend') as connections,
       current_setting('max_connections')::int as max_connections
"""


class PostgresCheck(Check):
    component = "database"

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        degraded_seconds: float = 1.0,
        connections_degraded: float = 0.8,
        connections_unhealthy: float = 0.95,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self._dsn = dsn
        self.degraded_seconds = degraded_seconds
        self.connections_degraded = connections_degraded
        self.connections_unhealthy = connections_unhealthy
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            # One small pool per process; connections open lazily (min_size=0) and are re-opened
            # after an outage. The runner's single flight means one probe at a time per check.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=2,
                max_inactive_connection_lifetime=60,
                timeout=self.timeout,
                command_timeout=self.timeout,
                server_settings={"application_name": "telltale-health"},
            )
        return self._pool

    async def probe(self) -> Observation:
        pool = await self._get_pool()
        started = time.perf_counter()
        # The message names the failing step and the server's reason (`connect failed: role "app" does
        # not exist`); the runner redacts it. Timeouts stay TimeoutError: the runner reports its budget.
        try:
            conn = await pool.acquire()
        except TimeoutError:
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.expire_connections()  # next probe starts from a fresh connection
            raise ProbeError(f"connect failed: {_reason(exc)}") from exc
        try:
            row = await conn.fetchrow(_QUERY)
        except TimeoutError:
            raise
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            await pool.expire_connections()
            raise ProbeError(f"connection lost: {_reason(exc)}") from exc
        except asyncpg.PostgresError as exc:
            raise ProbeError(f"query failed: {_reason(exc)}") from exc
        finally:
            await pool.release(conn)
        latency = time.perf_counter() - started
        ratio = row["connections"] / row["max_connections"] if row["max_connections"] else 0.0
        statuses = [
            grade(latency, self.degraded_seconds, None),
            grade(ratio, self.connections_degraded, self.connections_unhealthy),
        ]
        status = worst(statuses)
        observed = {
            "query_seconds": round(latency, 6),
            "connections": row["connections"],
            "max_connections": row["max_connections"],
            "connections_ratio": round(ratio, 4),
        }
        if status is Status.HEALTHY:
            msg = f"query in {latency * 1000:.1f} ms; {row['connections']}/{row['max_connections']} connections"
        elif statuses[1] is not Status.HEALTHY:
            msg = f"{row['connections']}/{row['max_connections']} connections in use"
        else:
            msg = f"slow query: {latency * 1000:.0f} ms"
        return Observation(status, msg, observed)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


def _reason(exc: BaseException) -> str:
    """The server's or the socket's own words, on one line (asyncpg's text for an empty one: its type)."""
    return " ".join(str(exc).split()) or type(exc).__name__
