"""Docker: the Engine API over its unix socket — ping, version and containers whose health check fails."""

from __future__ import annotations

import json

import httpx

from checks.base import Check, Observation, Status


def docker_client(socket_path: str, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path), base_url="http://docker",
                             timeout=timeout)


class DockerCheck(Check):
    component = "docker"

    def __init__(self, name: str, socket_path: str, **kw) -> None:
        super().__init__(name, **kw)
        self.socket_path = socket_path
        self.client = docker_client(socket_path, self.timeout)

    async def probe(self) -> Observation:
        ping = await self.client.get("/_ping")
        ping.raise_for_status()
        version = (await self.client.get("/version")).json()
        unhealthy = (await self.client.get(
            "/containers/json", params={"all": "true", "filters": json.dumps({"health": ["unhealthy"]})}
        )).json()
        names = [(c.get("Names") or ["?"])[0].lstrip("/") for c in unhealthy]
        observed = {"version": version.get("Version"), "api_version": version.get("ApiVersion"),
                    "unhealthy_containers": names}
        if names:
            return Observation(Status.DEGRADED, f"unhealthy containers: {', '.join(names[:10])}", observed)
        return Observation(Status.HEALTHY, f"engine {version.get('Version')}", observed)

    async def close(self) -> None:
        await self.client.aclose()
