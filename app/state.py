"""What the service holds while it runs: settings, the check runner, the registry, the drain flag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from telltale.alerting.notifications import NotificationStore
from telltale.alerting.service import EventAlerting
from telltale.checks.runner import CheckRunner
from telltale.config.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    runner: CheckRunner
    registry: CollectorRegistry
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    notifications: NotificationStore = field(default_factory=NotificationStore)
    alerting: EventAlerting | None = None

    def uptime(self) -> float:
        return time.time() - self.started_at
