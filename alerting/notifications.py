"""Alertmanager's webhook notifications, recorded once each.

Alertmanager retries a webhook until it gets a 2xx and may deliver the same notification more than
once (retries, HA peers); the idempotency key is the receiver, group key, status and the alerts'
fingerprints with their start and end, so a repeat is acknowledged without a second record.
The store is in memory and bounded; the incidents issue moves it to Postgres behind the same interface.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str = Field(pattern=r"^(firing|resolved)$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    endsAt: str = ""
    fingerprint: str = ""


class WebhookPayload(BaseModel):
    """Alertmanager webhook body, version 4."""

    model_config = ConfigDict(extra="allow")
    version: str = "4"
    receiver: str = Field(min_length=1, max_length=256)
    status: str = Field(pattern=r"^(firing|resolved)$")
    groupKey: str = Field(min_length=1, max_length=4096)
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=10_000)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = 0


@dataclass(frozen=True)
class Notification:
    id: str
    received_at: float
    receiver: str
    status: str
    group_key: str
    alertnames: tuple[str, ...]
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "receiver": self.receiver,
            "status": self.status,
            "group_key": self.group_key,
            "alertnames": list(self.alertnames),
            "payload": self.payload,
        }


def idempotency_key(p: WebhookPayload) -> str:
    alerts = sorted(
        (a.fingerprint or json.dumps(a.labels, sort_keys=True), a.status, a.startsAt, a.endsAt) for a in p.alerts
    )
    raw = json.dumps([p.receiver, p.groupKey, p.status, alerts], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class NotificationStore:
    """Bounded, insertion-ordered record of notifications, keyed for idempotency."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Notification] = OrderedDict()

    def record(self, payload: WebhookPayload) -> tuple[Notification, bool]:
        """Returns the notification and whether it was new."""
        key = idempotency_key(payload)
        if key in self._items:
            return self._items[key], False
        names = tuple(sorted({a.labels.get("alertname", "") for a in payload.alerts}))
        item = Notification(
            key, time.time(), payload.receiver, payload.status, payload.groupKey, names, payload.model_dump(mode="json")
        )
        self._items[key] = item
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item, True

    def list(self, receiver: str | None = None, limit: int = 100) -> list[Notification]:
        items = [n for n in reversed(self._items.values()) if receiver is None or n.receiver == receiver]
        return items[:limit]

    def __len__(self) -> int:
        return len(self._items)
