"""WebSocket server (e.g. Laravel Reverb): the opening handshake completes."""

from __future__ import annotations

import time

from telltale.checks.base import Check, Observation, Status, grade
from websockets.asyncio.client import connect


class WebSocketCheck(Check):
    component = "websocket"

    def __init__(self, name: str, url: str, *, degraded_seconds: float = 1.0, **kw) -> None:
        super().__init__(name, **kw)
        self.url, self.degraded_seconds = url, degraded_seconds

    async def probe(self) -> Observation:
        started = time.perf_counter()
        async with connect(self.url, open_timeout=self.timeout, close_timeout=0.2, ping_interval=None) as ws:
            latency = time.perf_counter() - started
            subprotocol = ws.subprotocol
        status = grade(latency, self.degraded_seconds, None)
        msg = f"handshake in {latency * 1000:.1f} ms"
        return Observation(
            status if status is Status.HEALTHY else Status.DEGRADED,
            msg,
            {"handshake_seconds": round(latency, 6), "subprotocol": subprotocol},
        )
