"""Redis: PING latency and used memory against maxmemory."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from telltale.checks.base import Check, Observation, Status, grade, worst


def make_client(
    url: str, timeout: float, *, max_connections: int = 4, health_check_interval: float = 0
) -> aioredis.Redis:
    """The one way Telltale connects to Redis (the checks and the exporter): every call bounded by
    `timeout`, no retry that would double it, a small pool, text replies."""
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=health_check_interval,
        retry_on_timeout=False,
        max_connections=max_connections,
        decode_responses=True,
    )


class RedisCheck(Check):
    component = "cache"

    def __init__(
        self,
        name: str,
        client: aioredis.Redis,
        *,
        degraded_seconds: float = 0.1,
        memory_degraded: float = 0.8,
        memory_unhealthy: float = 0.95,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self.client = client
        self.degraded_seconds = degraded_seconds
        self.memory_degraded = memory_degraded
        self.memory_unhealthy = memory_unhealthy

    async def probe(self) -> Observation:
        started = time.perf_counter()
        await self.client.ping()
        latency = time.perf_counter() - started
        info = await self.client.info("memory")
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        ratio = used / limit if limit else 0.0
        statuses = [
            grade(latency, self.degraded_seconds, None),
            grade(ratio, self.memory_degraded, self.memory_unhealthy) if limit else Status.HEALTHY,
        ]
        observed = {
            "ping_seconds": round(latency, 6),
            "used_memory_bytes": used,
            "maxmemory_bytes": limit,
            "memory_ratio": round(ratio, 4),
        }
        status = worst(statuses)
        if statuses[1] is not Status.HEALTHY:
            msg = f"memory {ratio:.0%} of maxmemory"
        elif status is not Status.HEALTHY:
            msg = f"slow PING: {latency * 1000:.0f} ms"
        else:
            msg = f"PING in {latency * 1000:.1f} ms"
        return Observation(status, msg, observed)

    async def close(self) -> None:
        await self.client.aclose()
