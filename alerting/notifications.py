"""Alertmanager's webhook notifications, recorded once each.

Alertmanager retries a webhook until it gets a 2xx and may deliver the same notification more than
once: retries, and the peers of a cluster, whose deduplication through the gossiped notification log is
best-effort (a slow or partitioned peer sends too). The idempotency key is therefore what every peer
agrees on: the group key and each alert's fingerprint, startsAt and status. Not the receiver name,
the external URL (each peer's own) or the alerts' order, which may differ between peers; not endsAt,
which a peer that missed Prometheus' resolution sets from its own timeout. A repeat is acknowledged
without a second record; a new firing of the same alert has a new startsAt and is recorded again.

The store is in memory and bounded by count and by bytes (`MAX_STORE_BYTES`), evicting the oldest:
each notification is kept as its serialized JSON (measured exactly, served as is), never as the
parsed payload (a 4 MiB payload is several times that as Python objects). Listing pages newest first
with an opaque cursor and a byte bound per page, so no listing serializes the store on the event loop.
The incidents issue moves it to Postgres behind the same interface.
"""

from __future__ import annotations

import base64
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
    truncatedAlerts: int = Field(0, strict=True, ge=0)


MAX_STORE_BYTES = 64 * 1024 * 1024
MAX_STORE_ITEMS = 10_000
PAGE_BYTES = 1024 * 1024  # a page holds at most this many bytes of items (always at least one item)
ITEM_OVERHEAD = 512  # bookkeeping per item (key, object, dict slot), counted against the budget


@dataclass(frozen=True)
class Notification:
    id: str
    seq: int
    received_at: float
    receiver: str
    status: str
    group_key: str
    alertnames: tuple[str, ...]
    json: bytes  # the whole item as served by the listing, payload included

    @property
    def size(self) -> int:
        return len(self.json) + ITEM_OVERHEAD

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.json)["payload"]
        return payload

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(self.json)
        return item


def idempotency_key(p: WebhookPayload) -> str:
    """Equal for the same notification from any peer of an Alertmanager cluster (see the module doc)."""
    alerts = sorted({(a.fingerprint or json.dumps(a.labels, sort_keys=True), a.startsAt, a.status) for a in p.alerts})
    raw = json.dumps([p.groupKey, alerts], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class BadCursor(ValueError):
    """A cursor this store did not issue."""


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"n{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith("n") or not raw[1:].isdigit() or len(raw) > 20:
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this server issued") from None


class NotificationStore:
    """Insertion-ordered record of notifications, keyed for idempotency, bounded by count and bytes."""

    def __init__(self, capacity: int = MAX_STORE_ITEMS, max_bytes: int = MAX_STORE_BYTES) -> None:
        self.capacity, self.max_bytes = capacity, max_bytes
        self.bytes = 0
        self._seq = 0
        self._items: OrderedDict[str, Notification] = OrderedDict()

    def record(self, payload: WebhookPayload) -> tuple[Notification, bool]:
        """Returns the notification and whether it was new."""
        key = idempotency_key(payload)
        if key in self._items:
            return self._items[key], False
        names = tuple(sorted({a.labels.get("alertname", "") for a in payload.alerts}))
        self._seq += 1
        received_at = time.time()
        document = {
            "id": key,
            "received_at": received_at,
            "receiver": payload.receiver,
            "status": payload.status,
            "group_key": payload.groupKey,
            "alertnames": list(names),
            "payload": payload.model_dump(mode="json"),
        }
        encoded = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
        item = Notification(
            key, self._seq, received_at, payload.receiver, payload.status, payload.groupKey, names, encoded
        )
        self._items[key] = item
        self.bytes += item.size
        while len(self._items) > self.capacity or (self.bytes > self.max_bytes and len(self._items) > 1):
            _, old = self._items.popitem(last=False)
            self.bytes -= old.size
        return item, True

    def page(
        self, receiver: str | None = None, limit: int = 100, cursor: str | None = None, max_bytes: int = PAGE_BYTES
    ) -> tuple[list[Notification], str | None]:
        """Newest first: up to `limit` items older than `cursor`, stopping after `max_bytes`; and the
        cursor of the next page (None on the last)."""
        before = decode_cursor(cursor) if cursor else None
        out: list[Notification] = []
        size = 0
        more = False
        for n in reversed(self._items.values()):
            if before is not None and n.seq >= before:
                continue
            if receiver is not None and n.receiver != receiver:
                continue
            if len(out) >= limit or (out and size + len(n.json) > max_bytes):
                more = True
                break
            out.append(n)
            size += len(n.json)
        return out, (encode_cursor(out[-1].seq) if more else None)

    def list(self, receiver: str | None = None, limit: int = 100) -> list[Notification]:
        return self.page(receiver, limit, max_bytes=self.max_bytes)[0]

    def __len__(self) -> int:
        return len(self._items)
