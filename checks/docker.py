"""Docker: the Engine API over its unix socket — ping, version and containers whose health check fails."""

from __future__ import annotations

import json
import os

import httpx
from telltale.checks.base import Check, Observation, Status


def docker_client(socket_path: str, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=socket_path), base_url="http://docker", timeout=timeout
    )


class DockerCheck(Check):
    component = "docker"

    def __init__(self, name: str, socket_path: str, **kw) -> None:
        super().__init__(name, **kw)
        self.socket_path = socket_path
        self.client = docker_client(socket_path, self.timeout)

    async def probe(self) -> Observation:
        if not os.path.exists(self.socket_path):  # noqa: ASYNC240 - one stat of a local path
            return Observation(
                Status.UNHEALTHY, f"docker socket {self.socket_path} not found", {"socket": self.socket_path}
            )
        try:
            ping = await self.client.get("/_ping")
            ping.raise_for_status()
            version = (await self.client.get("/version")).raise_for_status().json()
            unhealthy = (
                (
                    await self.client.get(
                        "/containers/json", params={"all": "true", "filters": json.dumps({"health": ["unhealthy"]})}
                    )
                )
                .raise_for_status()
                .json()
            )
        except httpx.TimeoutException as exc:  # the runner reports it as the timeout it is
            raise TimeoutError(str(exc)) from exc
        names = [(c.get("Names") or ["?"])[0].lstrip("/") for c in unhealthy]
        observed = {
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "unhealthy_containers": names,
        }
        if names:
            return Observation(Status.DEGRADED, f"unhealthy containers: {', '.join(names[:10])}", observed)
        return Observation(Status.HEALTHY, f"engine {version.get('Version')}", observed)

    async def close(self) -> None:
        await self.client.aclose()
