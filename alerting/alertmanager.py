"""Posting alerts to Alertmanager's v2 API without ever slowing the request that caused them.

Alerts go through a bounded queue to one background sender that batches them, retries with backoff
while Alertmanager is unreachable (until the alert's own endsAt), and counts what it sent, retried
and dropped. A full queue drops the newest alert and counts it: the events API never waits on it.

An Alertmanager cluster does not gossip alerts between its peers, so a client posts every alert to
every peer (as Prometheus does): one sender per peer, each with its own queue, so a dead peer's
retries never hold back the live one. The senders share their counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from telltale.config.timestamps import iso_utc as _iso

log = logging.getLogger("telltale.alerting")


@dataclass(frozen=True)
class Alert:
    """One alert as Alertmanager's API takes it; `ends_at` is always set, so it resolves by itself."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    generator_url: str = ""

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at),
        }
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body


class SenderMetrics:
    """The senders' counters, registered once and shared by the sender of each Alertmanager peer."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.sent = Counter(
            "telltale_alerts_sent_total",
            "Alerts posted to Alertmanager (to each peer of a cluster)",
            ["alertname"],
            registry=registry,
        )
        self.failures = Counter(
            "telltale_alertmanager_post_failures_total",
            "Failed attempts to post alerts to Alertmanager (retried)",
            registry=registry,
        )
        self.dropped = Counter(
            "telltale_alerts_dropped_total",
            "Alerts dropped: queue full, or endsAt passed before Alertmanager answered",
            ["reason"],
            registry=registry,
        )


@dataclass
class AlertSender:
    """Background, batching, retrying client of one Alertmanager's `POST /api/v2/alerts`."""

    url: str
    registry: CollectorRegistry | None = None
    timeout: float = 2.0
    queue_size: int = 1000
    batch_size: int = 100
    max_backoff: float = 30.0
    metrics: SenderMetrics | None = None
    _queue: asyncio.Queue[Alert] = field(init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(self.queue_size)
        if self.metrics is None:
            self.metrics = SenderMetrics(self.registry)
        self.sent, self.failures, self.dropped = self.metrics.sent, self.metrics.failures, self.metrics.dropped

    def submit(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            try:
                self._queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.dropped.labels("queue_full").inc()
                log.warning("alert queue full; dropped alert", extra={"alertname": alert.labels.get("alertname")})

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.url.rstrip("/"), timeout=self.timeout)
        self._task = asyncio.create_task(self._run(), name="telltale-alert-sender")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued has been posted (or given up on)."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush(2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._deliver(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _deliver(self, batch: list[Alert]) -> None:
        assert self._client is not None
        backoff = 0.5
        while batch:
            try:
                response = await self._client.post("/api/v2/alerts", json=[a.to_api() for a in batch])
                if response.status_code < 300:
                    for alert in batch:
                        self.sent.labels(alert.labels.get("alertname", "")).inc()
                    return
                if 400 <= response.status_code < 500:  # Alertmanager refused the payload: retrying won't help
                    log.error(
                        "Alertmanager refused alerts",
                        extra={"status": response.status_code, "reason": response.text[:200]},
                    )
                    self.dropped.labels("refused").inc(len(batch))
                    return
            except httpx.HTTPError as exc:
                log.warning("Alertmanager unreachable; will retry", extra={"error": type(exc).__name__})
            self.failures.inc()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            now = time.time()
            expired = [a for a in batch if a.ends_at <= now]
            if expired:
                self.dropped.labels("expired").inc(len(expired))
            batch = [a for a in batch if a.ends_at > now]
