"""The events API's path to Alertmanager: rules decide, the sender delivers in the background."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from telltale.alerting.alertmanager import AlertSender
from telltale.alerting.events import EventAlerts
from telltale.config.settings import Settings

log = logging.getLogger("telltale.alerting")


class EventAlerting:
    def __init__(self, rules: EventAlerts, sender: AlertSender) -> None:
        self.rules, self.sender = rules, sender

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
        return cls(rules, AlertSender(str(s.alertmanager_url), registry=registry))

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
                self.sender.submit(alerts)

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()
