"""Redis: one INFO per scrape."""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from telltale.exporter.collectors.base import Collector, described, gauge

_GAUGES = (
    ("used_memory", "telltale_redis_memory_used_bytes", "Memory used by Redis (used_memory)."),
    ("maxmemory", "telltale_redis_memory_max_bytes", "maxmemory; 0 means unlimited."),
    ("connected_clients", "telltale_redis_connected_clients", "Connected clients."),
    ("blocked_clients", "telltale_redis_blocked_clients", "Clients blocked on a blocking call."),
)
_COUNTERS = (
    ("rejected_connections", "telltale_redis_rejected_connections", "Connections rejected (maxclients)."),
    ("keyspace_hits", "telltale_redis_keyspace_hits", "Successful key lookups."),
    ("keyspace_misses", "telltale_redis_keyspace_misses", "Failed key lookups."),
    ("evicted_keys", "telltale_redis_evicted_keys", "Keys evicted by maxmemory."),
    ("expired_keys", "telltale_redis_expired_keys", "Keys expired."),
    ("total_commands_processed", "telltale_redis_commands_processed", "Commands processed."),
)


class RedisCollector(Collector):
    name = "redis"

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    def down(self) -> list[Metric]:
        return [gauge("telltale_redis_up", "1 when Redis answered.", 0)]

    def describe(self) -> list[Metric]:
        gauges = ["telltale_redis_up", "telltale_redis_info", "telltale_redis_db_keys"]
        return described(gauges + [name for _, name, _ in _GAUGES], [name for _, name, _ in _COUNTERS])

    async def collect(self) -> list[Metric]:
        try:
            fields = await self.client.info()
        except Exception:
            # Start the next scrape from fresh connections (redis-py drops the one it was using).
            await self.client.connection_pool.disconnect(inuse_connections=True)
            raise
        dbs = {
            k: int(v.get("keys", 0))
            for k, v in fields.items()
            if k.startswith("db") and k[2:].isdigit() and isinstance(v, dict)
        }
        out: list[Metric] = [gauge("telltale_redis_up", "1 when Redis answered.", 1)]
        info = GaugeMetricFamily("telltale_redis_info", "Redis server version and role.", labels=["version", "role"])
        info.add_metric([str(fields.get("redis_version", "")), str(fields.get("role", ""))], 1)
        out.append(info)
        for key, name, doc in _GAUGES:
            if key in fields:
                out.append(gauge(name, doc, float(fields[key])))
        for key, name, doc in _COUNTERS:
            if key in fields:
                out.append(CounterMetricFamily(name, doc, value=float(fields[key])))
        keys = GaugeMetricFamily("telltale_redis_db_keys", "Keys per database.", labels=["db"])
        for db, n in sorted(dbs.items()):
            keys.add_metric([db], n)
        out.append(keys)
        return out
