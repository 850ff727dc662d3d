"""The events API's path to Alertmanager: rules decide, the senders deliver in the background, one per
Alertmanager peer (a cluster does not share alerts between peers: each must get every alert)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from telltale.alerting.alertmanager import AlertSender, SenderMetrics
from telltale.alerting.events import EventAlerts
from telltale.config.settings import Settings

log = logging.getLogger("telltale.alerting")


class EventAlerting:
    def __init__(self, rules: EventAlerts, senders: list[AlertSender]) -> None:
        self.rules, self.senders = rules, senders

    @classmethod
    def from_settings(cls, s: Settings, registry: CollectorRegistry) -> EventAlerting | None:
        if s.alertmanager_url is None:
            return None
        rules = EventAlerts(
            license_warning_days=s.license_warning_days,
            payment_spike_failures=s.payment_spike_failures,
            payment_spike_window=s.payment_spike_window_seconds,
            environment=s.environment,
            max_organizations=s.organization_label_cap,
        )
        metrics = SenderMetrics(registry)
        return cls(rules, [AlertSender(str(url), metrics=metrics) for url in s.alertmanager_url])

    def handle(self, events: Iterable[Any]) -> None:
        """Queues the alerts the events deserve. Never raises: the events are already recorded, and an
        exception here would answer 500 to a batch that was accepted (and the client would resend it)."""
        for event in events:
            try:
                alerts = self.rules.alerts_for(event)
            except Exception:
                log.exception("no alert for an accepted event", extra={"event_type": getattr(event, "type", "")})
                continue
            if alerts:
                for sender in self.senders:
                    sender.submit(alerts)

    async def start(self) -> None:
        for sender in self.senders:
            await sender.start()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every peer's sender has posted (or given up on) what is queued."""
        await asyncio.gather(*(sender.flush(timeout) for sender in self.senders))

    async def close(self) -> None:
        await asyncio.gather(*(sender.close() for sender in self.senders))
