"""HTTP dependencies (cloud provider APIs, payment gateways): status code and latency per named URL."""

from __future__ import annotations

import time

import httpx
from telltale.checks.base import Check, Observation, Status, grade


class HttpCheck(Check):
    component = "http"

    def __init__(
        self,
        name: str,
        url: str,
        client: httpx.AsyncClient,
        *,
        method: str = "GET",
        expected_status: list[int] | None = None,
        degraded_seconds: float = 1.0,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self.url, self.client, self.method = url, client, method
        self.expected = expected_status or [200, 204]
        self.degraded_seconds = degraded_seconds

    async def probe(self) -> Observation:
        started = time.perf_counter()
        try:
            response = await self.client.request(self.method, self.url, timeout=self.timeout)
        except httpx.TimeoutException as exc:  # the runner reports it as the timeout it is
            raise TimeoutError(str(exc)) from exc
        latency = time.perf_counter() - started
        observed = {"status_code": response.status_code, "response_seconds": round(latency, 6)}
        if response.status_code not in self.expected:
            expected = ", ".join(map(str, self.expected))
            return Observation(Status.UNHEALTHY, f"HTTP {response.status_code} (expected {expected})", observed)
        status = grade(latency, self.degraded_seconds, None)
        return Observation(status, f"HTTP {response.status_code} in {latency * 1000:.0f} ms", observed)

    async def close(self) -> None:
        await self.client.aclose()  # shared by the http checks; closing twice is harmless
