"""Business-event alerts and the Alertmanager webhook receiver, against a real Alertmanager."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from telltale.alerting.alertmanager import Alert, AlertSender
from telltale.alerting.events import EventAlerts

from tests.apps import service
from tests.servers import AlertmanagerServer, WebhookRecorder, free_port

AM_CONFIG = """
route:
  receiver: sink
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
"""


@pytest.fixture
def recorder() -> Iterator[WebhookRecorder]:
    rec = WebhookRecorder()
    yield rec
    rec.close()


@pytest.fixture
def alertmanager(recorder: WebhookRecorder) -> Iterator[AlertmanagerServer]:
    am = AlertmanagerServer(AM_CONFIG.format(url=recorder.url)).start()
    yield am
    am.destroy()


def ev(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def test_failed_deployment_becomes_a_warning_with_organization_and_runbook() -> None:
    now = 1_800_000_000.0
    [alert] = EventAlerts(environment="prod").alerts_for(
        ev(type="deployment.failed", organization="acme", provider="aws"), now
    )
    assert alert.labels == {
        "alertname": "DeploymentFailed",
        "severity": "warning",
        "team": "platform",
        "component": "deployments",
        "service": "telltale",
        "source": "events",
        "organization": "acme",
        "environment": "prod",
        "provider": "aws",
    }
    assert alert.annotations["runbook_url"].endswith("docs/runbook.md#deploymentfailed")
    assert "acme" in alert.annotations["summary"]
    assert alert.ends_at == now + 3600  # bounded: resolves by itself


def test_license_expiry_alerts_only_within_the_warning_window() -> None:
    rules = EventAlerts(license_warning_days=7)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    soon = ev(type="license.expiry", organization="acme", expires_at=now + timedelta(days=3))
    later = ev(type="license.expiry", organization="acme", expires_at=now + timedelta(days=30))
    tomorrow = ev(type="license.expiry", organization="acme", expires_at=now + timedelta(hours=12))
    [info] = rules.alerts_for(soon, now.timestamp())
    assert info.labels["severity"] == "info" and info.labels["alertname"] == "LicenseExpiringSoon"
    assert rules.alerts_for(later, now.timestamp()) == []
    assert rules.alerts_for(tomorrow, now.timestamp())[0].labels["severity"] == "warning"


def test_payment_failure_spike_fires_once_per_window() -> None:
    rules = EventAlerts(payment_spike_failures=3, payment_spike_window=60)
    failed = ev(type="payment.failed", organization="acme", provider="stripe")
    t = 1_800_000_000.0
    assert rules.alerts_for(failed, t) == []
    assert rules.alerts_for(failed, t + 1) == []
    [spike] = rules.alerts_for(failed, t + 2)
    assert spike.labels["alertname"] == "PaymentFailureSpike" and spike.labels["severity"] == "critical"
    assert rules.alerts_for(failed, t + 3) == []  # not re-sent within a minute
    assert rules.alerts_for(ev(type="payment.failed", organization="other", provider="stripe"), t + 3) == []
    assert rules.alerts_for(failed, t + 200) == []  # the window slid: one failure only


def test_other_events_raise_no_alert() -> None:
    rules = EventAlerts()
    for kind in ("deployment.completed", "payment.succeeded", "login.failed"):
        assert rules.alerts_for(ev(type=kind, organization="acme", provider="x")) == []


async def test_sender_posts_to_alertmanager_v2(alertmanager: AlertmanagerServer, recorder: WebhookRecorder) -> None:
    sender = AlertSender(alertmanager.url)
    await sender.start()
    now = time.time()
    sender.submit(
        [
            Alert(
                {"alertname": "DeploymentFailed", "severity": "warning", "organization": "acme"},
                {"summary": "failed"},
                now,
                now + 600,
            )
        ]
    )
    await sender.flush()
    await sender.close()
    async with httpx.AsyncClient() as c:
        alerts = (await c.get(f"{alertmanager.url}/api/v2/alerts")).json()
    [alert] = alerts
    assert alert["labels"]["organization"] == "acme"
    ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
    assert abs(ends - (now + 600)) < 2
    for _ in range(50):
        if recorder.received("/hook"):
            break
        await asyncio.sleep(0.1)
    assert recorder.received("/hook")[0][2]["alerts"][0]["labels"]["alertname"] == "DeploymentFailed"


async def test_sender_retries_until_alertmanager_is_up(recorder: WebhookRecorder) -> None:
    port = free_port()
    sender = AlertSender(f"http://127.0.0.1:{port}", max_backoff=0.5)
    await sender.start()
    now = time.time()
    sender.submit([Alert({"alertname": "Late", "severity": "info"}, {}, now, now + 600)])
    await asyncio.sleep(1.0)
    assert sender.failures._value.get() >= 1
    am = AlertmanagerServer(AM_CONFIG.format(url=recorder.url), port=port).start()
    try:
        await sender.flush(10)
        async with httpx.AsyncClient() as c:
            assert [a["labels"]["alertname"] for a in (await c.get(f"{am.url}/api/v2/alerts")).json()] == ["Late"]
    finally:
        await sender.close()
        am.destroy()


WEBHOOK = {
    "version": "4",
    "receiver": "telltale",
    "status": "firing",
    "groupKey": '{}:{alertname="RedisDown"}',
    "groupLabels": {"alertname": "RedisDown"},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "RedisDown", "severity": "critical"},
            "annotations": {"summary": "Redis is down"},
            "startsAt": "2026-11-23T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "abc123",
        }
    ],
}


async def test_webhook_records_each_notification_once() -> None:
    auth = {"Authorization": "Bearer hook-token"}
    async with service(alert_webhook_token="hook-token") as c:
        assert (await c.post("/api/v1/alerts/webhook", json=WEBHOOK)).status_code == 401
        first = await c.post("/api/v1/alerts/webhook", json=WEBHOOK, headers=auth)
        again = await c.post("/api/v1/alerts/webhook", json=WEBHOOK, headers=auth)
        assert first.status_code == again.status_code == 200
        assert first.json()["duplicate"] is False and again.json() == {"id": first.json()["id"], "duplicate": True}
        resolved = {
            **WEBHOOK,
            "status": "resolved",
            "alerts": [{**WEBHOOK["alerts"][0], "status": "resolved", "endsAt": "2026-11-23T10:05:00Z"}],
        }
        assert (await c.post("/api/v1/alerts/webhook", json=resolved, headers=auth)).json()["duplicate"] is False
        listed = (await c.get("/api/v1/alerts/notifications", headers=auth)).json()
        assert listed["total"] == 2
        assert [n["status"] for n in listed["notifications"]] == ["resolved", "firing"]
        assert listed["notifications"][0]["alertnames"] == ["RedisDown"]


@pytest.mark.parametrize("body", [b"not json", b'{"receiver": "x"}', b'{"receiver":"x","status":"bogus"}'])
async def test_webhook_rejects_bad_payloads_with_422(body: bytes) -> None:
    async with service(alert_webhook_token="hook-token") as c:
        r = await c.post(
            "/api/v1/alerts/webhook",
            content=body,
            headers={"Authorization": "Bearer hook-token", "Content-Type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("not an Alertmanager webhook payload")


async def test_webhook_without_configured_token_is_refused() -> None:
    async with service() as c:
        r = await c.post("/api/v1/alerts/webhook", json=WEBHOOK, headers={"Authorization": "Bearer x"})
        assert r.status_code == 401 and "TELLTALE_ALERT_WEBHOOK_TOKEN" in r.json()["detail"]


async def test_events_reach_alertmanager(alertmanager: AlertmanagerServer, recorder: WebhookRecorder) -> None:
    """A failed deployment and a license about to expire, posted to the events API, become alerts."""
    expires = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    batch = {
        "events": [
            {"type": "deployment.failed", "organization": "acme", "provider": "aws"},
            {"type": "deployment.completed", "organization": "acme", "provider": "aws"},
            {"type": "license.expiry", "organization": "globex", "expires_at": expires},
            {
                "type": "sla.violation",
                "organization": "initech",
                "objective": "availability",
                "target": 99.9,
                "actual": 99.2,
            },
        ]
    }
    async with service(alertmanager_url=alertmanager.url, ingest_token="ingest-tok") as c:
        r = await c.post("/api/v1/events", json=batch, headers={"Authorization": "Bearer ingest-tok"})
        assert r.status_code == 202, r.text
        await c.app.state.telltale.alerting.sender.flush()  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as client:
        alerts = (await client.get(f"{alertmanager.url}/api/v2/alerts")).json()
    got = {(a["labels"]["alertname"], a["labels"]["organization"], a["labels"]["severity"]) for a in alerts}
    assert got == {
        ("DeploymentFailed", "acme", "warning"),
        ("LicenseExpiringSoon", "globex", "info"),
        ("OrganizationSLAViolation", "initech", "warning"),
    }
