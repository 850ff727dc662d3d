"""Docker: the Engine API over its unix socket — up, version, containers by state, health, restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.checks.docker import docker_client
from telltale.exporter.collectors.base import Collector, described, gauge

STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


class DockerCollector(Collector):
    name = "docker"

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.client: httpx.AsyncClient = docker_client(socket_path, timeout)
        self._sem = asyncio.Semaphore(8)

    def down(self) -> list[Metric]:
        return [gauge("telltale_docker_up", "1 when the Engine API answered.", 0)]

    def describe(self) -> list[Metric]:
        return described(
            f"telltale_docker_{n}" for n in ("up", "info", "containers", "containers_unhealthy", "container_restarts")
        )

    async def _inspect(self, cid: str) -> dict[str, Any]:
        async with self._sem:
            r = await self.client.get(f"/containers/{cid}/json")
        r.raise_for_status()
        return r.json()

    async def collect(self) -> list[Metric]:
        version_r, list_r = await asyncio.gather(
            self.client.get("/version"), self.client.get("/containers/json", params={"all": "true"})
        )
        version_r.raise_for_status()
        list_r.raise_for_status()
        containers = list_r.json()
        details = await asyncio.gather(*(self._inspect(c["Id"]) for c in containers), return_exceptions=True)
        out: list[Metric] = [gauge("telltale_docker_up", "1 when the Engine API answered.", 1)]
        info = GaugeMetricFamily("telltale_docker_info", "Engine version.", labels=["version"])
        info.add_metric([str(version_r.json().get("Version", ""))], 1)
        out.append(info)
        states = Counter(str(c.get("State", "")).lower() or "unknown" for c in containers)
        by_state = GaugeMetricFamily("telltale_docker_containers", "Containers by state.", labels=["state"])
        for state in sorted(set(STATES) | set(states)):
            by_state.add_metric([state], states.get(state, 0))
        out.append(by_state)
        restarts = GaugeMetricFamily(
            "telltale_docker_container_restarts", "Restart count per container.", labels=["container"]
        )
        unhealthy = 0
        for c, d in zip(containers, details, strict=True):
            name = ((c.get("Names") or ["?"])[0]).lstrip("/")
            if isinstance(d, BaseException):
                unhealthy += "(unhealthy)" in str(c.get("Status", ""))
                continue
            status = d.get("State") or {}
            health = status.get("Health") or status.get("Healthcheck") or {}
            unhealthy += health.get("Status") == "unhealthy"
            restarts.add_metric([name], d.get("RestartCount", 0) or 0)
        out.append(gauge("telltale_docker_containers_unhealthy", "Containers whose health check fails.", unhealthy))
        out.append(restarts)
        return out

    async def aclose(self) -> None:
        await self.client.aclose()
