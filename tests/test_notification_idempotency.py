"""The webhook store's idempotency across the peers of an Alertmanager cluster: the same alert delivered
by two peers is one record; a new firing of it is another. The real two-peer cluster is exercised in
tests/test_alertmanager_cluster.py; this pins the key on hand-written payloads."""

from __future__ import annotations

import copy
from typing import Any

from telltale.alerting.notifications import NotificationStore, WebhookPayload

from tests.apps import service

GROUP_KEY = '{}/{severity="critical"}:{alertname="RedisDown", cluster="c", service="redis"}'


def alert(fingerprint: str, starts_at: str, status: str = "firing", ends_at: str = "0001-01-01T00:00:00Z") -> dict:
    return {
        "status": status,
        "labels": {"alertname": "RedisDown", "severity": "critical", "instance": fingerprint},
        "annotations": {"summary": "Redis is down"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "fingerprint": fingerprint,
    }


def notification(alerts: list[dict], **overrides: Any) -> dict:
    body = {
        "version": "4",
        "receiver": "telltale",
        "status": "firing",
        "groupKey": GROUP_KEY,
        "groupLabels": {"alertname": "RedisDown", "cluster": "c", "service": "redis"},
        "commonLabels": {"alertname": "RedisDown"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-0:9093",
        "alerts": alerts,
    }
    body.update(overrides)
    return body


FIRST = [alert("aaa1", "2026-12-05T10:00:00Z"), alert("bbb2", "2026-12-05T10:00:01Z")]


def test_the_same_alerts_from_another_peer_are_one_record() -> None:
    """Peer B's copy: its own external URL, the alerts in another order, and (a config being rolled
    out) another receiver name; the group key, fingerprints and startsAt are the same."""
    store = NotificationStore()
    _, new = store.record(WebhookPayload.model_validate(notification(FIRST)))
    assert new
    from_peer_b = notification(
        list(reversed(copy.deepcopy(FIRST))), receiver="telltale-webhook", externalURL="http://alertmanager-1:9093"
    )
    item, new = store.record(WebhookPayload.model_validate(from_peer_b))
    assert not new
    assert len(store) == 1 and item.receiver == "telltale"


def test_a_new_firing_of_the_same_alert_is_recorded_again() -> None:
    store = NotificationStore()
    store.record(WebhookPayload.model_validate(notification(FIRST)))
    again = [alert("aaa1", "2026-12-05T11:30:00Z"), alert("bbb2", "2026-12-05T10:00:01Z")]
    _, new = store.record(WebhookPayload.model_validate(notification(again)))
    assert new and len(store) == 2


def test_the_resolution_is_its_own_record_whatever_endsat_each_peer_gives() -> None:
    store = NotificationStore()
    store.record(WebhookPayload.model_validate(notification(FIRST)))
    resolved = [
        alert("aaa1", "2026-12-05T10:00:00Z", "resolved", "2026-12-05T10:05:00Z"),
        alert("bbb2", "2026-12-05T10:00:01Z", "resolved", "2026-12-05T10:05:00Z"),
    ]
    _, new = store.record(WebhookPayload.model_validate(notification(resolved, status="resolved")))
    assert new
    # a peer that missed Prometheus' resolution resolves by its own timeout: another endsAt, same record
    late = copy.deepcopy(resolved)
    for a in late:
        a["endsAt"] = "2026-12-05T10:09:00Z"
    _, new = store.record(WebhookPayload.model_validate(notification(late, status="resolved")))
    assert not new and len(store) == 2


def test_another_group_with_the_same_alert_is_another_record() -> None:
    """A second route (continue: true) groups the same alert under its own group key: that is another
    notification, to another team, and is kept."""
    store = NotificationStore()
    store.record(WebhookPayload.model_validate(notification(FIRST)))
    dba = notification(FIRST, groupKey=GROUP_KEY.replace('{severity="critical"}', '{team="database"}'), receiver="dba")
    _, new = store.record(WebhookPayload.model_validate(dba))
    assert new and len(store) == 2


async def test_over_http_the_second_peer_is_acknowledged_as_a_duplicate() -> None:
    auth = {"Authorization": "Bearer hook"}
    async with service(alert_webhook_token="hook") as c:
        first = await c.post("/api/v1/alerts/webhook", json=notification(FIRST), headers=auth)
        second = await c.post(
            "/api/v1/alerts/webhook",
            json=notification(FIRST[::-1], externalURL="http://alertmanager-1:9093", receiver="other"),
            headers=auth,
        )
        assert first.json()["duplicate"] is False
        assert second.json() == {"id": first.json()["id"], "duplicate": True}
        assert (await c.get("/api/v1/alerts/notifications", headers=auth)).json()["total"] == 1
