"""Job queues: depth per queue (Laravel/Celery Redis lists, RQ, Laravel's SQL `jobs` table) and workers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from telltale.checks.base import Check, Observation, Status, grade, worst
from telltale.checks.postgres import PostgresCheck
from telltale.checks.sqlident import quote_ident
from telltale.config.settings import QueueSpec
from telltale.config.timestamps import parse_timestamp

# One row: waiting jobs (unreserved, delayed ones included), the oldest job that is due (its available_at
# has passed: a delayed job is not late), and failed jobs. Laravel's `jobs`/`failed_jobs` layout.
_SQL_STATE = (
    "select (select count(*) from {table} where queue = $1 and reserved_at is null) as depth,"
    " (select min(available_at) from {table} where queue = $1 and reserved_at is null"
    " and available_at <= $2) as oldest,"
    " (select count(*) from {failed} where queue = $1) as failed"
)

FetchRow = Callable[..., Awaitable[Mapping[str, Any]]]


async def sql_queue_state(
    fetchrow: FetchRow, spec: QueueSpec, now: float, client: aioredis.Redis | None = None
) -> dict[str, Any]:
    """Depth, failed jobs, the oldest due job's age (0 when none is due) and, with a heartbeat key in
    Redis, live workers of a SQL queue. `fetchrow(sql, *args)` runs one query (the check's pool, the
    exporter's PgPool): the same state for the check and the exporter."""
    sql = _SQL_STATE.format(table=quote_ident(spec.table), failed=quote_ident(spec.failed_table))
    row = await fetchrow(sql, spec.name, int(now))
    state: dict[str, Any] = {
        "depth": row["depth"],
        "failed": row["failed"],
        "oldest_job_age_seconds": max(0.0, now - float(row["oldest"])) if row["oldest"] is not None else 0.0,
    }
    if spec.heartbeat_key and client is not None:
        _add_heartbeat(state, spec, await client.get(spec.heartbeat_key), now)
    return state


async def redis_queue_state(client: aioredis.Redis, spec: QueueSpec, now: float) -> dict[str, Any]:
    """Depth, failed jobs and live workers of a Redis-backed queue, read in one round trip."""
    key = spec.redis_key()
    pipe = client.pipeline(transaction=False)
    pipe.llen(key)
    if spec.backend == "rq":
        pipe.zcard(f"rq:failed:{spec.name}")  # RQ's FailedJobRegistry
        pipe.smembers(f"rq:workers:{spec.name}")
    if spec.heartbeat_key:
        pipe.get(spec.heartbeat_key)
    replies = await pipe.execute()
    state: dict[str, Any] = {"depth": int(replies[0])}
    i = 1
    if spec.backend == "rq":
        state["failed"] = int(replies[1])
        workers = sorted(replies[2])
        i = 3
        if workers:
            # An RQ worker is alive while its hash exists and its last_heartbeat is recent.
            pipe = client.pipeline(transaction=False)
            for w in workers:
                pipe.hget(w if w.startswith("rq:worker:") else f"rq:worker:{w}", "last_heartbeat")
            beats = await pipe.execute()
            state["workers"] = sum(1 for b in beats if b and _fresh(b, now, spec.heartbeat_max_age_seconds))
        else:
            state["workers"] = 0
    if spec.heartbeat_key:
        _add_heartbeat(state, spec, replies[i], now)
    return state


def _add_heartbeat(state: dict[str, Any], spec: QueueSpec, beat: str | bytes | None, now: float) -> None:
    """Count the worker heartbeat at `spec.heartbeat_key` as one live worker while it is fresh."""
    try:
        age: float | None = max(0.0, now - parse_timestamp(beat)) if beat else None
    except ValueError:  # garbage in the key is a dead worker, not a failed probe
        age = None
    state["heartbeat_age_seconds"] = round(age, 3) if age is not None else None
    alive = age is not None and age <= spec.heartbeat_max_age_seconds
    state["workers"] = state.get("workers", 0) + (1 if alive else 0)


def _fresh(value: str | bytes, now: float, max_age: float) -> bool:
    try:
        return now - parse_timestamp(value) <= max_age
    except ValueError:
        return False


class QueueCheck(Check):
    component = "queue"

    def __init__(
        self,
        name: str,
        specs: list[QueueSpec],
        *,
        client: aioredis.Redis | None,
        pg_check: PostgresCheck | None = None,
        depth_degraded: int = 1000,
        depth_unhealthy: int = 10000,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self.specs = specs
        self.client = client
        self.pg_check = pg_check  # a PostgresCheck whose pool serves SQL queues
        self.depth_degraded, self.depth_unhealthy = depth_degraded, depth_unhealthy

    async def _sql_state(self, spec: QueueSpec, now: float) -> dict[str, Any]:
        if self.pg_check is None:
            raise RuntimeError(f"queue {spec.name}: a SQL queue needs TELLTALE_DATABASE_URL")
        pool = await self.pg_check._get_pool()
        return await sql_queue_state(pool.fetchrow, spec, now, self.client)

    async def probe(self) -> Observation:
        now = time.time()
        queues: dict[str, Any] = {}
        statuses: list[Status] = []
        problems: list[str] = []
        for spec in self.specs:
            if spec.backend == "sql":
                state = await self._sql_state(spec, now)
            else:
                assert self.client is not None
                state = await redis_queue_state(self.client, spec, now)
            queues[spec.name] = state
            degraded = spec.depth_degraded if spec.depth_degraded is not None else self.depth_degraded
            unhealthy = spec.depth_unhealthy if spec.depth_unhealthy is not None else self.depth_unhealthy
            status = grade(state["depth"], degraded + 1, unhealthy + 1)  # "over 1000" is degraded
            if status is not Status.HEALTHY:
                problems.append(f"{spec.name} depth {state['depth']}")
            if spec.require_workers and state.get("workers", 0) == 0:
                status = Status.UNHEALTHY
                problems.append(f"{spec.name} has no live worker")
            statuses.append(status)
        status = worst(statuses)
        msg = "; ".join(problems) if problems else ", ".join(f"{n}: {q['depth']}" for n, q in queues.items())
        return Observation(status, msg, {"queues": queues})
