"""Job queues: depth, oldest waiting job, failed jobs and live workers for each configured queue."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.checks.queue import redis_queue_state, sql_queue_state
from telltale.checks.sqlident import quote_ident
from telltale.config.settings import QueueSpec
from telltale.config.timestamps import parse_timestamp
from telltale.exporter.collectors.base import Collector, PgPool, described

log = logging.getLogger("telltale.exporter")


class QueueCollector(Collector):
    name = "queues"

    def __init__(self, specs: list[QueueSpec], *, client: aioredis.Redis | None, pg: PgPool | None) -> None:
        self.specs, self.client, self.pg = specs, client, pg
        self._failed_table_broken: set[str] = set()

    async def _redis_state(self, spec: QueueSpec, now: float) -> dict[str, Any]:
        assert self.client is not None
        state = await redis_queue_state(self.client, spec, now)
        state["oldest_job_age_seconds"] = await self._oldest_redis(spec, now)
        if spec.backend == "laravel" and self.pg is not None:
            # Laravel records failed jobs in its database whatever the queue driver.
            state["failed"] = await self._laravel_failed(spec)
        return state

    async def _oldest_redis(self, spec: QueueSpec, now: float) -> float | None:
        """Age of the head of the list where the job says when it was queued (RQ, Laravel >= 11)."""
        assert self.client is not None
        head = await self.client.lindex(spec.redis_key(), 0)
        if head is None:
            return None
        if isinstance(head, bytes):  # the client decodes replies (make_client); a raw one would not
            head = head.decode(errors="replace")
        try:
            if spec.backend == "rq":
                enqueued = await self.client.hget(f"rq:job:{head}", "enqueued_at")
                return max(0.0, now - parse_timestamp(enqueued)) if enqueued else None
            payload = json.loads(head)
            for key in ("pushedAt", "createdAt", "created_at"):
                if isinstance(payload, dict) and payload.get(key) is not None:
                    return max(0.0, now - parse_timestamp(str(payload[key])))
        except (ValueError, TypeError):
            return None
        return None

    async def _laravel_failed(self, spec: QueueSpec) -> int | None:
        if spec.failed_table in self._failed_table_broken:
            return None
        assert self.pg is not None
        try:
            rows = await self.pg.fetch(
                f"select count(*) as n from {quote_ident(spec.failed_table)} where queue = $1", spec.name
            )
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
            # No Laravel failed-jobs table in this database: stop asking (an outage still raises).
            self._failed_table_broken.add(spec.failed_table)
            log.warning("exporter queues: cannot count %s for %s: %s", spec.failed_table, spec.name, exc)
            return None
        return rows[0]["n"]

    async def _sql_state(self, spec: QueueSpec, now: float) -> dict[str, Any]:
        assert self.pg is not None
        pg = self.pg

        async def fetchrow(sql: str, *args: Any) -> asyncpg.Record:
            return (await pg.fetch(sql, *args))[0]

        return await sql_queue_state(fetchrow, spec, now, self.client)

    def describe(self) -> list[Metric]:
        return described(f"telltale_queue_{n}" for n in ("depth", "oldest_job_age_seconds", "failed_jobs", "workers"))

    async def collect(self) -> list[Metric]:
        now = time.time()
        states = await asyncio.gather(
            *(self._sql_state(s, now) if s.backend == "sql" else self._redis_state(s, now) for s in self.specs)
        )
        labels = ["queue", "backend"]
        depth = GaugeMetricFamily("telltale_queue_depth", "Jobs waiting.", labels=labels)
        oldest = GaugeMetricFamily(
            "telltale_queue_oldest_job_age_seconds", "Age of the oldest waiting job.", labels=labels
        )
        failed = GaugeMetricFamily("telltale_queue_failed_jobs", "Failed jobs.", labels=labels)
        workers = GaugeMetricFamily("telltale_queue_workers", "Live workers.", labels=labels)
        for spec, st in zip(self.specs, states, strict=True):
            key = [spec.name, spec.backend]
            depth.add_metric(key, st["depth"])
            if st.get("oldest_job_age_seconds") is not None:
                oldest.add_metric(key, st["oldest_job_age_seconds"])
            elif st["depth"] == 0:
                oldest.add_metric(key, 0.0)
            if st.get("failed") is not None:
                failed.add_metric(key, st["failed"])
            if st.get("workers") is not None:
                workers.add_metric(key, st["workers"])
        return [depth, oldest, failed, workers]
