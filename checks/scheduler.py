"""Scheduler heartbeat: the platform's cron writes a timestamp to Redis each run; stale means stopped."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from telltale.checks.base import Check, Observation, Status
from telltale.config.timestamps import parse_timestamp


class SchedulerCheck(Check):
    component = "scheduler"

    def __init__(self, name: str, client: aioredis.Redis, key: str, *, max_age: float = 120, **kw) -> None:
        super().__init__(name, **kw)
        self.client, self.key, self.max_age = client, key, max_age

    async def probe(self) -> Observation:
        value = await self.client.get(self.key)
        if value is None:
            return Observation(Status.UNHEALTHY, f"no heartbeat at {self.key}", {"key": self.key})
        try:
            last = parse_timestamp(value)
        except ValueError:
            return Observation(Status.UNHEALTHY, f"heartbeat at {self.key} is not a timestamp", {"key": self.key})
        age = max(0.0, time.time() - last)
        observed = {
            "key": self.key,
            "last_run_timestamp": last,
            "age_seconds": round(age, 3),
            "max_age_seconds": self.max_age,
        }
        if age > self.max_age:
            return Observation(Status.UNHEALTHY, f"last run {age:.0f}s ago (limit {self.max_age:g}s)", observed)
        return Observation(Status.HEALTHY, f"last run {age:.0f}s ago", observed)
