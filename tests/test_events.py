"""POST /api/v1/events: accepted, partially rejected (422 naming each bad event), capped organizations."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from telltale.app.main import create_app
from telltale.config.settings import Settings

AUTH = {"Authorization": "Bearer ingest-token"}


def make_app(**overrides: object) -> FastAPI:
    return create_app(Settings(otel_enabled=False, access_log=False, ingest_token="ingest-token", **overrides))  # type: ignore[arg-type]


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def value(app: FastAPI, name: str, **labels: str) -> float | None:
    return app.state.telltale.registry.get_sample_value(name, labels)


EVERY_TYPE = [
    {"type": "deployment.started", "provider": "aws", "organization": "acme"},
    {"type": "deployment.completed", "provider": "aws", "duration_seconds": 95.5, "organization": "acme"},
    {"type": "deployment.failed", "provider": "hetzner", "duration_seconds": 12, "organization": "acme"},
    {"type": "license.validated", "result": "valid", "latency_seconds": 0.04, "organization": "acme"},
    {"type": "license.expiry", "organization": "acme", "expires_at": "2030-01-01T00:00:00Z"},
    {"type": "payment.succeeded", "provider": "stripe", "currency": "EUR", "amount": 49.0, "organization": "acme"},
    {"type": "payment.failed", "provider": "stripe", "currency": "EUR", "amount": 10},
    {"type": "websocket.connections", "connections": 321},
    {"type": "quota.usage", "organization": "acme", "resource": "servers", "used": 8, "limit": 10},
    {"type": "login.failed", "organization": "acme"},
    {"type": "rate_limit.hit"},
    {"type": "suspicious_activity", "kind": "brute_force", "organization": "acme"},
]


async def test_every_type_accepted_and_recorded() -> None:
    app = make_app()
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": EVERY_TYPE})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": len(EVERY_TYPE)}
    assert value(app, "telltale_deployments_total", provider="aws", status="started", organization="acme") == 1
    assert value(app, "telltale_deployment_duration_seconds_sum", provider="aws", status="completed") == 95.5
    assert value(app, "telltale_deployment_duration_seconds_count", provider="hetzner", status="failed") == 1
    assert value(app, "telltale_license_validations_total", result="valid", organization="acme") == 1
    assert value(app, "telltale_license_validation_duration_seconds_count", result="valid") == 1
    assert value(app, "telltale_license_expiry_timestamp_seconds", organization="acme") == 1893456000
    assert (
        value(
            app, "telltale_payments_total", provider="stripe", currency="EUR", status="succeeded", organization="acme"
        )
        == 1
    )
    assert value(app, "telltale_payment_amount_total", provider="stripe", currency="EUR", status="failed") == 10
    assert value(app, "telltale_websocket_connections", organization="unknown") == 321
    assert value(app, "telltale_organization_quota_used", organization="acme", resource="servers") == 8
    assert value(app, "telltale_organization_quota_limit", organization="acme", resource="servers") == 10
    assert value(app, "telltale_login_failures_total", organization="acme") == 1
    assert value(app, "telltale_rate_limit_hits_total", organization="unknown") == 1
    assert value(app, "telltale_suspicious_activity_total", kind="brute_force", organization="acme") == 1
    assert value(app, "telltale_events_total", type="payment.failed") == 1


async def test_partial_acceptance_names_each_bad_event() -> None:
    app = make_app()
    batch = [
        {"type": "login.failed", "organization": "acme"},
        {"type": "payment.succeeded", "provider": "stripe", "currency": "euro", "amount": 5},
        {"type": "no.such.type"},
        {"provider": "aws"},
        {"type": "deployment.completed", "provider": "aws", "duration_seconds": -1},
        {"type": "login.failed", "organization": "acme", "password": "hunter2"},
        {"type": "rate_limit.hit", "organization": "acme"},
    ]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": batch})
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 2
    rejected = {item["index"]: item["errors"] for item in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5]
    assert rejected[1][0]["field"] == "currency"
    assert "no.such.type" in rejected[2][0]["message"]
    assert rejected[3][0]["field"] == "type"
    assert rejected[4][0]["field"] == "duration_seconds"
    assert rejected[5][0]["field"] == "password" and "hunter2" not in r.text
    # the good ones were recorded, the bad ones not at all
    assert value(app, "telltale_login_failures_total", organization="acme") == 1
    assert value(app, "telltale_rate_limit_hits_total", organization="acme") == 1
    assert (
        value(
            app,
            "telltale_payments_total",
            provider="stripe",
            currency="euro",
            status="succeeded",
            organization="unknown",
        )
        is None
    )
    assert value(app, "telltale_events_rejected_total") == 5


async def test_auth_and_malformed_bodies() -> None:
    app = make_app(events_max_batch=3)
    async with client(app) as c:
        assert (await c.post("/api/v1/events", json={"events": []})).status_code == 401
        assert (
            await c.post("/api/v1/events", headers={"Authorization": "Bearer wrong"}, json={"events": []})
        ).status_code == 401
        assert (await c.post("/api/v1/events", headers=AUTH, content=b"{not json")).status_code == 400
        assert (await c.post("/api/v1/events", headers=AUTH, json=[1, 2])).status_code == 422
        assert (
            await c.post("/api/v1/events", headers=AUTH, json={"events": [{"type": "rate_limit.hit"}] * 4})
        ).status_code == 413
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": []})).json() == {"accepted": 0}
    no_token = create_app(Settings(otel_enabled=False, access_log=False))
    async with client(no_token) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": []})
        assert r.status_code == 401 and "TELLTALE_INGEST_TOKEN" in r.text


async def test_organization_label_capped_and_folded_counted() -> None:
    app = make_app(organization_label_cap=3)
    events = [{"type": "login.failed", "organization": f"org-{i}"} for i in range(10)]
    events += [{"type": "login.failed", "organization": "org-0"}]  # an admitted value stays itself
    async with client(app) as c:
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": events})).status_code == 202
    for i in range(3):
        assert value(app, "telltale_login_failures_total", organization=f"org-{i}") == (2 if i == 0 else 1)
    assert value(app, "telltale_login_failures_total", organization="org-3") is None
    assert value(app, "telltale_login_failures_total", organization="other") == 7
    assert value(app, "telltale_organization_labels_folded_total") == 7
    orgs = {
        s.labels["organization"]
        for f in app.state.telltale.registry.collect()
        for s in f.samples
        if s.name == "telltale_login_failures_total"
    }
    assert orgs == {"org-0", "org-1", "org-2", "other"}
