"""Business-event alerts and the Alertmanager webhook receiver, against a real Alertmanager."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from telltale.alerting.alertmanager import Alert, AlertSender
from telltale.alerting.events import EventAlerts
from telltale.alerting.notifications import MAX_STORE_BYTES, NotificationStore, WebhookPayload

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
        await c.app.state.telltale.alerting.flush()  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as client:
        alerts = (await client.get(f"{alertmanager.url}/api/v2/alerts")).json()
    got = {(a["labels"]["alertname"], a["labels"]["organization"], a["labels"]["severity"]) for a in alerts}
    assert got == {
        ("DeploymentFailed", "acme", "warning"),
        ("LicenseExpiringSoon", "globex", "info"),
        ("OrganizationSLAViolation", "initech", "warning"),
    }


def big_payload(i: int, size: int, receiver: str = "telltale") -> WebhookPayload:
    alert = {**WEBHOOK["alerts"][0], "annotations": {"description": "x" * size}, "fingerprint": f"f{i}"}  # type: ignore[dict-item]
    return WebhookPayload.model_validate({**WEBHOOK, "receiver": receiver, "groupKey": f"g{i}", "alerts": [alert]})


def test_the_store_is_bounded_by_bytes_evicting_the_oldest() -> None:
    """40 payloads of 2 MiB (80 MiB offered) stay within the byte budget, measured by tracemalloc too."""
    store = NotificationStore()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            store.record(big_payload(i, 2 * 1024 * 1024))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.bytes <= MAX_STORE_BYTES
    assert held <= MAX_STORE_BYTES + 8 * 1024 * 1024, f"{held / 2**20:.0f} MiB held"
    assert 25 <= len(store) < 40
    ids = [n.payload["groupKey"] for n in store.list(limit=1000)]
    assert ids[0] == "g39" and "g0" not in ids  # newest kept, oldest evicted
    assert store.record(big_payload(39, 2 * 1024 * 1024))[1] is False  # still idempotent


def test_pages_walk_newest_first_with_an_opaque_cursor() -> None:
    store = NotificationStore()
    for i in range(25):
        store.record(big_payload(i, 10, receiver="a" if i % 5 else "b"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.page(limit=10, cursor=cursor)
        seen += [n.group_key for n in page]
        pages += 1
        if cursor is None:
            break
        assert "g" not in cursor and cursor.isascii()  # opaque
    assert pages == 3 and seen == [f"g{i}" for i in reversed(range(25))]
    only_b, nxt = store.page(receiver="b", limit=2)
    assert [n.group_key for n in only_b] == ["g20", "g15"] and nxt is not None
    assert [n.group_key for n in store.page(receiver="b", limit=10, cursor=nxt)[0]] == ["g10", "g5", "g0"]
    big = NotificationStore()
    for i in range(10):
        big.record(big_payload(i, 300 * 1024))
    page, cursor = big.page(limit=100)
    assert len(page) == 3 and cursor is not None  # a page stops at 1 MiB, whatever the limit


async def test_the_listing_pages_over_http() -> None:
    auth = {"Authorization": "Bearer hook-token"}
    async with service(alert_webhook_token="hook-token") as c:
        for i in range(5):
            hook = {**WEBHOOK, "groupKey": f"g{i}"}
            assert (await c.post("/api/v1/alerts/webhook", json=hook, headers=auth)).status_code == 200
        first = (await c.get("/api/v1/alerts/notifications?limit=2", headers=auth)).json()
        assert [n["group_key"] for n in first["notifications"]] == ["g4", "g3"] and first["total"] == 5
        rest = (
            await c.get(f"/api/v1/alerts/notifications?limit=10&cursor={first['next_cursor']}", headers=auth)
        ).json()
        assert [n["group_key"] for n in rest["notifications"]] == ["g2", "g1", "g0"] and rest["next_cursor"] is None
        assert rest["notifications"][0]["payload"]["alerts"][0]["fingerprint"] == "abc123"
        for bad in ("nonsense!", "eDEyMw", "bi0x", "x" * 65):
            r = await c.get(f"/api/v1/alerts/notifications?cursor={bad}", headers=auth)
            assert r.status_code == 422, (bad, r.text)
        assert (await c.get("/api/v1/alerts/notifications?limit=0", headers=auth)).status_code == 422
        assert (await c.get("/api/v1/alerts/notifications?limit=5000", headers=auth)).status_code == 422
        assert (await c.get("/api/v1/alerts/notifications")).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing"}],"x":NaN}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing"}],"x":1e999}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing"}],"x":-Infinity}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing"}],"truncatedAlerts":true}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing","labels":{"a":1}}]}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[]}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[{"status":"firing","labels":{"'
        + b"k" * 100_000
        + b'":1}}]}',
        b'{"receiver":"r","status":"firing","groupKey":"g","alerts":[null]}',
        b"[]",
        b"null",
        b'"\xff"',
    ],
)
async def test_webhook_refuses_what_it_could_not_serve_back(body: bytes) -> None:
    """Non-finite numbers would make the listing invalid JSON (or a 500): refused, 422, nothing stored."""
    auth = {"Authorization": "Bearer hook-token", "Content-Type": "application/json"}
    async with service(alert_webhook_token="hook-token") as c:
        r = await c.post("/api/v1/alerts/webhook", content=body, headers=auth)
        assert r.status_code == 422, r.text
        assert len(r.content) < 1000  # nothing echoed at length
        listed = await c.get("/api/v1/alerts/notifications", headers=auth)
        assert listed.status_code == 200 and listed.json()["total"] == 0


async def test_unicode_is_kept_and_lone_surrogates_never_break_the_listing() -> None:
    """A lone surrogate cannot be encoded as UTF-8: stored or refused, the listing stays valid JSON."""
    auth = {"Authorization": "Bearer hook-token", "Content-Type": "application/json"}
    good = {**WEBHOOK, "groupKey": "gr\u00fcn \U0001f525 \u202e", "commonLabels": {"\u00e9t\u00e9": "\u2603"}}
    async with service(alert_webhook_token="hook-token") as c:
        assert (await c.post("/api/v1/alerts/webhook", json=good, headers=auth)).status_code == 200
        for bad in ({**WEBHOOK, "groupKey": "\ud800"}, {**WEBHOOK, "commonLabels": {"\udfff": "x"}}):
            r = await c.post("/api/v1/alerts/webhook", content=json.dumps(bad).encode(), headers=auth)
            assert r.status_code in (200, 422), r.text
        listed = await c.get("/api/v1/alerts/notifications", headers=auth)
        assert listed.status_code == 200
        items = json.loads(listed.content)["notifications"]
        item = items[-1]
        assert item["group_key"] == good["groupKey"] and item["payload"]["commonLabels"] == {"\u00e9t\u00e9": "\u2603"}


async def test_alerting_never_fails_an_accepted_batch() -> None:
    """The events are recorded before the alert rules run: a rule that raises is logged, not a 500."""
    async with service(alertmanager_url="http://127.0.0.1:9", ingest_token="ingest-tok") as c:
        alerting = c.app.state.telltale.alerting  # type: ignore[attr-defined]

        def broken(event: object, now: float | None = None) -> list[Alert]:
            raise RuntimeError("rule bug")

        alerting.rules.alerts_for = broken
        r = await c.post(
            "/api/v1/events",
            json={"events": [{"type": "deployment.failed", "provider": "aws"}]},
            headers={"Authorization": "Bearer ingest-tok"},
        )
        assert r.status_code == 202, r.text
