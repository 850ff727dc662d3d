"""Builds the checks a configuration asks for: the local ones always, each dependency when configured."""

from __future__ import annotations

import httpx
from telltale.checks.base import Check
from telltale.checks.docker import DockerCheck
from telltale.checks.http import HttpCheck
from telltale.checks.postgres import PostgresCheck
from telltale.checks.queue import QueueCheck
from telltale.checks.redis import RedisCheck, make_client
from telltale.checks.scheduler import SchedulerCheck
from telltale.checks.system import CpuLoadCheck, DiskCheck, EventLoopLagCheck, MemoryCheck
from telltale.checks.terraform import TerraformCheck
from telltale.checks.tls import TlsCheck
from telltale.checks.websocket import WebSocketCheck
from telltale.config.settings import Settings

LIVE, READY = "live", "ready"


def build_checks(s: Settings) -> list[Check]:
    def common(name: str, *, critical: bool = False, tags: frozenset[str] = frozenset()) -> dict:
        return {
            "timeout": s.timeout_for(name),
            "critical": critical,
            "tags": tags,
            "failure_threshold": s.failure_threshold,
            "success_threshold": s.success_threshold,
        }

    checks: list[Check] = [
        DiskCheck(
            "disk",
            list(s.disk_paths),
            degraded=s.disk_degraded_ratio,
            unhealthy=s.disk_unhealthy_ratio,
            **common("disk"),
        ),
        MemoryCheck("memory", degraded=s.memory_degraded_ratio, unhealthy=s.memory_unhealthy_ratio, **common("memory")),
        CpuLoadCheck(
            "cpu", degraded=s.cpu_load_degraded_per_core, unhealthy=s.cpu_load_unhealthy_per_core, **common("cpu")
        ),
        EventLoopLagCheck(
            "event_loop",
            degraded=s.event_loop_lag_degraded_seconds,
            unhealthy=s.event_loop_lag_unhealthy_seconds,
            **common("event_loop"),
        ),
    ]
    pg: PostgresCheck | None = None
    if s.database_url is not None:
        pg = PostgresCheck(
            "postgres",
            str(s.database_url),
            degraded_seconds=s.postgres_degraded_seconds,
            connections_degraded=s.postgres_connections_degraded_ratio,
            connections_unhealthy=s.postgres_connections_unhealthy_ratio,
            **common("postgres", critical=True, tags=frozenset({READY})),
        )
        checks.append(pg)
    redis_client = None
    if s.redis_url is not None:
        redis_client = make_client(str(s.redis_url), s.timeout_for("redis"))
        checks.append(
            RedisCheck(
                "redis",
                redis_client,
                degraded_seconds=s.redis_degraded_seconds,
                memory_degraded=s.redis_memory_degraded_ratio,
                memory_unhealthy=s.redis_memory_unhealthy_ratio,
                **common("redis", critical=True, tags=frozenset({READY})),
            )
        )
    if s.queues:
        checks.append(
            QueueCheck(
                "queue",
                list(s.queues),
                client=redis_client,
                pg_check=pg,
                depth_degraded=s.queue_depth_degraded,
                depth_unhealthy=s.queue_depth_unhealthy,
                **common("queue"),
            )
        )
    if s.scheduler_heartbeat_key and redis_client is not None:
        checks.append(
            SchedulerCheck(
                "scheduler",
                redis_client,
                s.scheduler_heartbeat_key,
                max_age=s.scheduler_max_age_seconds,
                **common("scheduler"),
            )
        )
    if s.terraform_binary:
        checks.append(
            TerraformCheck(
                "terraform", s.terraform_binary, cache_seconds=s.terraform_cache_seconds, **common("terraform")
            )
        )
    if s.docker_socket:
        checks.append(DockerCheck("docker", s.docker_socket, **common("docker")))
    if s.websocket_url is not None:
        checks.append(WebSocketCheck("websocket", str(s.websocket_url), **common("websocket")))
    if s.tls_hosts:
        checks.append(
            TlsCheck(
                "tls",
                list(s.tls_hosts),
                ca_file=s.tls_ca_file,
                degraded_days=s.tls_degraded_days,
                unhealthy_days=s.tls_unhealthy_days,
                **common("tls"),
            )
        )
    if s.http_dependencies:
        client = httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": "telltale-health"})
        for dep in s.http_dependencies:
            kw = common(dep.name, critical=dep.critical)
            if dep.timeout_seconds is not None:
                kw["timeout"] = dep.timeout_seconds
            checks.append(
                HttpCheck(
                    dep.name,
                    str(dep.url),
                    client,
                    method=dep.method,
                    expected_status=list(dep.expected_status),
                    degraded_seconds=dep.degraded_seconds,
                    **kw,
                )
            )
    return checks
