"""POST /api/v1/events: accepted whole or refused whole (422 naming each bad event), no 500 from any input,
bounded label values and a series budget per metric."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from telltale.app.events import EVENT, LABEL_CAPS, MAX_DURATIONS, OUTCOMES, EventMetrics
from telltale.app.instrumentation.http_metrics import LATENCY_BUCKETS
from telltale.app.main import create_app
from telltale.config.settings import Settings

from tests.worst_case import worst_case_events

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
    {
        "type": "requests.summary",
        "organization": "acme",
        "requests": 40,
        "server_errors": 1,
        "durations_seconds": [0.2],
    },
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


def series(app: FastAPI, name: str) -> list[dict[str, str]]:
    return [s.labels for f in app.state.telltale.registry.collect() for s in f.samples if s.name == name]


async def test_a_batch_with_a_bad_event_records_nothing_and_names_every_bad_one() -> None:
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
        assert body["accepted"] == 0 and "nothing was recorded" in body["detail"]
        rejected = {item["index"]: item["errors"] for item in body["rejected"]}
        assert sorted(rejected) == [1, 2, 3, 4, 5]
        assert rejected[1][0]["field"] == "currency"
        assert rejected[2][0]["field"] == "type" and "login.failed" in rejected[2][0]["message"]
        assert rejected[3][0]["field"] == "type"
        assert rejected[4][0]["field"] == "duration_seconds"
        assert rejected[5][0]["field"] == "password" and "hunter2" not in r.text
        # nothing at all was recorded: not the good events either, and no series appeared
        assert series(app, "telltale_login_failures_total") == []
        assert series(app, "telltale_rate_limit_hits_total") == []
        assert series(app, "telltale_events_total") == []
        assert value(app, "telltale_events_rejected_total") == 5
        # the client fixes the bad ones and resends the whole batch: each event counted exactly once
        fixed = [batch[0], batch[6], {"type": "login.failed", "organization": "acme"}]
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": fixed})).status_code == 202
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": [batch[2]]})).status_code == 422
    assert value(app, "telltale_login_failures_total", organization="acme") == 2
    assert value(app, "telltale_rate_limit_hits_total", organization="acme") == 1
    assert value(app, "telltale_events_total", type="login.failed") == 2


@pytest.mark.parametrize(
    "expires_at",
    ["0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "0001-01-01"],
)
async def test_a_valid_looking_date_that_cannot_be_recorded_is_a_422_entry(expires_at: str) -> None:
    """Year 1 (naive: no Unix time in a zone east of UTC) gave a 500 with half the batch counted."""
    app = make_app()
    batch = [
        {"type": "login.failed", "organization": "acme"},
        {"type": "license.expiry", "organization": "globex", "expires_at": expires_at},
        {"type": "rate_limit.hit"},
    ]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": batch})
    assert r.status_code == 422, r.text
    assert [(e["index"], e["errors"][0]["field"]) for e in r.json()["rejected"]] == [(1, "expires_at")]
    assert series(app, "telltale_license_expiry_timestamp_seconds") == []  # no phantom series
    assert series(app, "telltale_login_failures_total") == []


async def test_naive_timestamps_are_utc() -> None:
    app = make_app()
    event = {"type": "license.expiry", "organization": "acme", "expires_at": "2030-01-01T00:00:00"}
    async with client(app) as c:
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": [event]})).status_code == 202
    assert value(app, "telltale_license_expiry_timestamp_seconds", organization="acme") == 1893456000


def test_an_event_that_validates_but_cannot_be_planned_is_refused_by_plan() -> None:
    """The last line of defence: plan() refuses a value no series can take, before anything is recorded."""
    metrics = EventMetrics(CollectorRegistry(), 10)
    event = EVENT.validate_python({"type": "login.failed"})
    ops = metrics.plan(event)
    with pytest.raises(ValueError):
        metrics.plan(
            EVENT.validate_python({"type": "websocket.connections", "connections": 1}).model_copy(
                update={"connections": float("inf")}
            )
        )
    metrics.apply(ops)
    assert metrics.received.child(("login.failed",))._value.get() == 1


NOT_NUMBERS = [True, False, "5", None, [], {}, float("nan"), float("inf"), float("-inf"), 10**400, "NaN"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "payment.succeeded", "provider": "stripe", "currency": "EUR"}, "amount"),
        ({"type": "websocket.connections"}, "connections"),
        ({"type": "quota.usage", "organization": "a", "resource": "r", "limit": 1}, "used"),
        ({"type": "quota.usage", "organization": "a", "resource": "r", "used": 1}, "limit"),
        ({"type": "license.validated", "result": "valid"}, "latency_seconds"),
        ({"type": "deployment.completed", "provider": "aws"}, "duration_seconds"),
        ({"type": "sla.violation", "organization": "a", "objective": "o", "target": 1}, "actual"),
        ({"type": "sla.violation", "organization": "a", "objective": "o", "actual": 1}, "target"),
        ({"type": "requests.summary"}, "requests"),
        ({"type": "requests.summary", "requests": 5}, "client_errors"),
        ({"type": "requests.summary", "requests": 5}, "server_errors"),
    ],
)
async def test_numbers_are_finite_json_numbers_not_booleans_or_strings(event: dict[str, Any], field: str) -> None:
    app = make_app()
    bad = [{**event, field: v} for v in NOT_NUMBERS if not (v is None and field == "duration_seconds")]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, content=json_bytes({"events": bad}))
        assert r.status_code == 422, r.text
        assert [e["index"] for e in r.json()["rejected"]] == list(range(len(bad)))
        assert all(e["errors"][0]["field"] == field for e in r.json()["rejected"])
        good = {**event, field: 2}
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": [good]})).status_code == 202
    assert value(app, "telltale_events_total", type=event["type"]) == 1


def json_bytes(body: Any) -> bytes:
    """json.dumps writes NaN/Infinity as Python does (what a careless client sends)."""
    return json.dumps(body, default=str).encode()


async def test_a_count_refuses_booleans_and_fractions() -> None:
    app = make_app()
    batch = [{"type": "websocket.connections", "connections": v} for v in (True, 1.5, 2.0, -1, 10**9)]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": batch})
    assert r.status_code == 422 and [e["index"] for e in r.json()["rejected"]] == [0, 1, 2, 3, 4]
    assert value(app, "telltale_websocket_connections", organization="unknown") is None


HOSTILE_EVENTS: list[Any] = [
    None,
    1,
    "login.failed",
    [],
    [{"type": "login.failed"}],
    {},
    {"type": None},
    {"type": 1},
    {"type": ["login.failed"]},
    {"type": {"a": 1}},
    {"type": "login.failed", "organization": None},
    {"type": "login.failed", "organization": ""},
    {"type": "login.failed", "organization": "x" * 129},
    {"type": "login.failed", "organization": "\u00e9cole"},
    {"type": "login.failed", "organization": "a b"},
    {"type": "login.failed", "organization": "\ud800"},
    {"type": "login.failed", "organization": 12},
    {"type": "login.failed", "\ud800": 1},
    {"type": "\ud800"},
    {"type": "x" * 100_000},
    {"type": "login.failed", "k" * 100_000: 1},
    {"type": "login.failed", "timestamp": "not a date"},
    {"type": "login.failed", "timestamp": 10**30},
    {"type": "login.failed", "timestamp": True},
    {"type": "license.expiry", "organization": "a", "expires_at": "9999-12-31T23:59:59-23:59"},
    {"type": "license.expiry", "organization": "a", "expires_at": -(10**12)},
    {"type": "license.expiry", "organization": "a", "expires_at": float("nan")},
    {"type": "payment.failed", "provider": "\u0000", "currency": "EUR", "amount": 1},
    {"type": "payment.failed", "provider": "p", "currency": "eur", "amount": 1e13},
    {"type": "payment.failed", "provider": "p", "currency": "EUR", "amount": -0.0001},
    {"type": "quota.usage", "organization": "a", "resource": "r", "used": 1e300, "limit": 1e300},
    {"type": "suspicious_activity", "kind": "everything"},
    {"type": "sla.violation", "organization": "a", "objective": "o", "target": 1, "actual": 2, "severe": "yes"},
    {"type": "deployment.started", "provider": "p" * 64},
    {"type": "deployment.started", "provider": "aws", "duration_seconds": 1e308},
    {"type": "requests.summary", "requests": 10**30},
    {"type": "requests.summary", "requests": 2, "durations_seconds": "0.1"},
    {"type": "requests.summary", "requests": 2, "durations_seconds": {"p99": 1}},
    {"type": "requests.summary", "requests": 2, "durations_seconds": [[0.1]]},
    {"type": "requests.summary", "requests": 10**6, "durations_seconds": [float("nan")] * 1000},
    {"type": "requests.summary", "requests": 10**6, "durations_seconds": [1e308] * 5000},
]


@pytest.mark.parametrize("item", HOSTILE_EVENTS, ids=range(len(HOSTILE_EVENTS)))
async def test_no_hostile_event_makes_a_500(item: Any) -> None:
    app = make_app()
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, content=json_bytes({"events": [item]}))
    assert r.status_code in (202, 422), (r.status_code, r.text[:300])
    json.loads(r.content)  # always JSON
    assert len(r.content) < 10_000  # no input echoed back at length


HOSTILE_BODIES: list[bytes] = [
    b"",
    b" ",
    b"null",
    b"[]",
    b'"events"',
    b"{}",
    b'{"events": null}',
    b'{"events": {}}',
    b'{"events": "x"}',
    b'{"events": [' + b"1," * 5000 + b"1]}",
    b'{"events": [NaN, Infinity, -Infinity]}',
    b'{"events": [' + b"9" * 5000 + b"]}",
    b'{"events": [1e999999]}',
    b'{"events": []',
    b"\xff\xfe{}",
    b'\xef\xbb\xbf{"events": []}',
    b'{"events": [], "events": [{"type": "login.failed"}]}',
    b'{"events": ["\\ud800"]}',
    b'{"\\u0000": 1, "events": []}',
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
async def test_no_hostile_body_makes_a_500(body: bytes) -> None:
    app = make_app(events_max_batch=1000)
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers={**AUTH, "Content-Type": "application/json"}, content=body)
    assert r.status_code in (202, 400, 413, 422), (r.status_code, r.text[:300])
    assert "detail" in r.json() if r.status_code != 202 else set(r.json()) == {"accepted"}


async def test_random_batches_never_make_a_500_and_are_all_or_nothing() -> None:
    """A seeded fuzz over mutations of good events: every answer 202 (all recorded) or 4xx (none)."""
    rng = random.Random(9)
    junk: list[Any] = [None, True, -1, 0, 2**63, 1e308, -1e-308, "", "\u202e", "a" * 300, [], {}, [[]], {"a": {}}]
    app = make_app()
    async with client(app) as c:
        for _ in range(150):
            batch = []
            for _ in range(rng.randint(1, 6)):
                event = dict(rng.choice(EVERY_TYPE))
                if rng.random() < 0.3:
                    key = rng.choice([*event, "extra"])
                    event[key] = rng.choice(junk)
                if rng.random() < 0.1:
                    event.pop(rng.choice(list(event)))
                batch.append(event)
            before = value(app, "telltale_events_total", type="login.failed") or 0.0
            total = sum(
                s.value
                for f in app.state.telltale.registry.collect()
                for s in f.samples
                if s.name == "telltale_events_total"
            )
            r = await c.post("/api/v1/events", headers=AUTH, content=json_bytes({"events": batch}))
            assert r.status_code in (202, 422), r.text
            after = sum(
                s.value
                for f in app.state.telltale.registry.collect()
                for s in f.samples
                if s.name == "telltale_events_total"
            )
            assert after - total == (len(batch) if r.status_code == 202 else 0)
            assert before <= (value(app, "telltale_events_total", type="login.failed") or 0.0)


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


async def test_provider_currency_resource_and_objective_are_capped() -> None:
    app = make_app()
    batch: list[dict[str, Any]] = []
    for i in range(120):
        batch.append(
            {
                "type": "payment.failed",
                "provider": f"p{i}",
                "currency": f"A{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}",
                "amount": 1,
            }
        )
        batch.append({"type": "quota.usage", "organization": "acme", "resource": f"r{i}", "used": 1, "limit": 2})
        batch.append({"type": "sla.violation", "organization": "acme", "objective": f"o{i}", "target": 1, "actual": 0})
    async with client(app) as c:
        for start in range(0, len(batch), 360):
            r = await c.post("/api/v1/events", headers=AUTH, json={"events": batch[start : start + 360]})
            assert r.status_code == 202, r.text
    providers = {s["provider"] for s in series(app, "telltale_payment_amount_total")}
    currencies = {s["currency"] for s in series(app, "telltale_payment_amount_total")}
    resources = {s["resource"] for s in series(app, "telltale_organization_quota_used")}
    objectives = {s["objective"] for s in series(app, "telltale_sla_violations_total")}
    assert len(providers) == LABEL_CAPS["provider"] + 1 and "other" in providers
    assert len(currencies) == LABEL_CAPS["currency"] + 1 and "other" in currencies
    assert len(resources) == LABEL_CAPS["resource"] + 1 and "other" in resources
    assert len(objectives) == LABEL_CAPS["objective"] + 1 and "other" in objectives
    assert value(app, "telltale_event_label_values_folded_total", label="provider") == 120 - LABEL_CAPS["provider"]
    assert value(app, "telltale_event_label_values_folded_total", label="objective") == 120 - LABEL_CAPS["objective"]
    assert value(app, "telltale_sla_violations_total", organization="acme", objective="other") == 120 - 50


def test_the_series_budget_folds_new_label_sets_into_all_other() -> None:
    registry = CollectorRegistry()
    metrics = EventMetrics(registry, organization_cap=3, series_budget=10)
    assert metrics.budget == 10
    for org in ("a", "b", "c"):
        for provider in ("p1", "p2", "p3", "p4"):
            metrics.record(
                EVENT.validate_python({"type": "deployment.failed", "provider": provider, "organization": org})
            )
    sets = [s.labels for f in registry.collect() for s in f.samples if s.name == "telltale_deployments_total"]
    assert len(sets) == 10
    others = {"provider": "other", "status": "other", "organization": "other"}
    assert others in sets
    assert registry.get_sample_value("telltale_deployments_total", others) == 12 - 9
    assert registry.get_sample_value("telltale_event_series_folded_total", {"metric": "telltale_deployments"}) == 3
    # an admitted label set keeps counting as itself
    metrics.record(EVENT.validate_python({"type": "deployment.failed", "provider": "p1", "organization": "a"}))
    labels = {"provider": "p1", "status": "failed", "organization": "a"}
    assert registry.get_sample_value("telltale_deployments_total", labels) == 2
    # the budget never folds what the organization cap admits, in an organization-only metric
    assert EventMetrics(CollectorRegistry(), organization_cap=5000, series_budget=10).budget == 5002


# Label sets per event metric when every label is flooded with new values, at the defaults (organization cap
# 1,000, series budget 2,000): docs/metrics.md "Series budget" has the same table.
WORST_CASE = {
    "telltale_events": 14,
    "telltale_deployments": 2000,
    "telltale_deployment_duration_seconds": 42,
    "telltale_license_validations": 2000,
    "telltale_license_validation_duration_seconds": 4,
    "telltale_license_expiry_timestamp_seconds": 1001,
    "telltale_payments": 2000,
    "telltale_payment_amount": 882,
    "telltale_websocket_connections": 1002,
    "telltale_organization_quota_used": 2000,
    "telltale_organization_quota_limit": 2000,
    "telltale_login_failures": 1002,
    "telltale_rate_limit_hits": 1002,
    "telltale_suspicious_activity": 2000,
    "telltale_sla_violations": 2000,
    "telltale_organization_requests": 3006,
    "telltale_organization_request_duration_seconds": 1002,
}
WORST_CASE_SAMPLES = 36_512  # no `_created` samples (app/metrics.py)


def test_the_worst_case_is_what_the_docs_say() -> None:
    """Every label of every event type flooded with new values: the series stop where docs/metrics.md says."""
    registry = CollectorRegistry()
    metrics = EventMetrics(registry, organization_cap=1000)
    for event in worst_case_events():
        metrics.record(EVENT.validate_python(event))
    got = {name: len(s) for name, s in metrics.series.items()}
    assert got == WORST_CASE
    samples = sum(len(f.samples) for f in registry.collect())
    assert samples == WORST_CASE_SAMPLES
    # a tenant's request series never fold by budget: only the organization cap makes `other`
    folded = {"metric": "telltale_organization_requests"}
    assert registry.get_sample_value("telltale_event_series_folded_total", folded) == 0


# --- requests.summary: the platform's per-organization requests ---------------------------------------


def summary(**fields: Any) -> dict[str, Any]:
    return {"type": "requests.summary", "organization": "acme", **fields}


def buckets(app: FastAPI, organization: str) -> dict[str, float]:
    return {
        s.labels["le"]: s.value
        for f in app.state.telltale.registry.collect()
        for s in f.samples
        if s.name == "telltale_organization_request_duration_seconds_bucket"
        and s.labels["organization"] == organization
    }


async def test_a_requests_summary_counts_each_outcome_and_observes_the_durations() -> None:
    app = make_app()
    batch = [
        summary(requests=100, client_errors=7, server_errors=3, durations_seconds=[0.004, 0.005, 0.3, 0.3, 12]),
        summary(requests=50, durations_seconds=[0.05]),
        {"type": "requests.summary", "requests": 4},  # guests: no organization
    ]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": batch})
    assert r.status_code == 202, r.text
    assert value(app, "telltale_organization_requests_total", organization="acme", outcome="success") == 140
    assert value(app, "telltale_organization_requests_total", organization="acme", outcome="client_error") == 7
    assert value(app, "telltale_organization_requests_total", organization="acme", outcome="server_error") == 3
    # no error yet is a 0, not a missing series: the error ratio of a healthy tenant is 0, not empty
    assert value(app, "telltale_organization_requests_total", organization="unknown", outcome="server_error") == 0
    assert value(app, "telltale_organization_requests_total", organization="unknown", outcome="success") == 4
    assert value(app, "telltale_events_total", type="requests.summary") == 3
    # cumulative buckets, `le` inclusive (0.005 lands in le=0.005), 12 s only in +Inf
    got = buckets(app, "acme")
    assert got["0.005"] == 2 and got["0.05"] == 3 and got["0.25"] == 3 and got["0.5"] == 5
    assert got["10.0"] == 5 and got["+Inf"] == 6
    assert list(got) == [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]  # the HTTP histogram's buckets
    assert value(app, "telltale_organization_request_duration_seconds_count", organization="acme") == 6
    assert value(app, "telltale_organization_request_duration_seconds_sum", organization="acme") == pytest.approx(
        12.659
    )
    assert buckets(app, "unknown") == {}  # no durations, no histogram series


@pytest.mark.parametrize("bulk", [True, False], ids=["bucket-counts", "observe-fallback"])
def test_summarised_durations_expose_exactly_what_observing_each_one_does(
    bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket counts are added to prometheus-client's internals (this fails if those change), and where
    they are gone the durations are observed one by one, with the same result."""
    if not bulk:
        monkeypatch.setattr("telltale.app.events.histogram_add_counts", lambda *_: False)
    rng = random.Random(3)
    values = [rng.choice([*LATENCY_BUCKETS, 0.0, 11.0]) for _ in range(300)] + [rng.random() * 3 for _ in range(700)]
    registry = CollectorRegistry()
    metrics = EventMetrics(registry, organization_cap=10)
    for start in range(0, len(values), 250):
        chunk = values[start : start + 250]
        metrics.record(EVENT.validate_python(summary(requests=len(chunk), durations_seconds=chunk)))
    reference = CollectorRegistry()
    histogram = Histogram(
        "telltale_organization_request_duration_seconds",
        "Durations of the platform's requests, per organization (the sample of requests.summary events)",
        ["organization"],
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    for v in values:
        histogram.labels("acme").observe(v)

    def lines(r: CollectorRegistry) -> list[str]:
        text = generate_latest(r).decode()
        return [line for line in text.splitlines() if line.startswith("telltale_organization_request_duration")]

    ours, theirs = lines(registry), lines(reference)
    assert len(ours) == 14
    sums = [line for line in ours if "_sum" in line], [line for line in theirs if "_sum" in line]
    assert float(sums[0][0].split()[-1]) == pytest.approx(float(sums[1][0].split()[-1]))
    assert [line for line in ours if "_sum" not in line] == [line for line in theirs if "_sum" not in line]


BAD_SUMMARIES: list[tuple[dict[str, Any], str]] = [
    (summary(requests=True), "requests"),
    (summary(requests=1.5), "requests"),
    (summary(requests=-1), "requests"),
    (summary(requests="10"), "requests"),
    (summary(requests=10, server_errors=False), "server_errors"),
    (summary(requests=10, client_errors=6, server_errors=5), "server_errors"),
    (summary(requests=10, server_errors=11), "server_errors"),
    (summary(requests=2, durations_seconds=[0.1, 0.2, 0.3]), "durations_seconds"),
    (summary(requests=10**6, durations_seconds=[0.1] * (MAX_DURATIONS + 1)), "durations_seconds"),
    (summary(requests=10, durations_seconds=[0.1, -0.1]), "durations_seconds"),
    (summary(requests=10, durations_seconds=[0.1, True]), "durations_seconds"),
    (summary(requests=10, durations_seconds=["0.1"]), "durations_seconds"),
    (summary(requests=10, durations_seconds=[float("nan")]), "durations_seconds"),
    (summary(requests=10, durations_seconds=[float("inf")]), "durations_seconds"),
    (summary(requests=10, durations_seconds=None), "durations_seconds"),
    (summary(requests=10, errors=1), "errors"),
]


async def test_bad_summaries_are_refused_with_their_reason_and_the_batch_records_nothing() -> None:
    app = make_app()
    good = summary(requests=10, server_errors=2, durations_seconds=[0.1])
    batch = [good, *(event for event, _ in BAD_SUMMARIES), good]
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, content=json_bytes({"events": batch}))
        assert r.status_code == 422, r.text
        rejected = {item["index"]: item["errors"] for item in r.json()["rejected"]}
        assert sorted(rejected) == list(range(1, len(BAD_SUMMARIES) + 1))
        for index, (_, field) in enumerate(BAD_SUMMARIES, start=1):
            assert [e["field"] for e in rejected[index]] == [field], (index, rejected[index])
        assert "exceed requests" in rejected[6][0]["message"]
        assert "more durations than requests" in rejected[8][0]["message"]
        # nothing of the batch was recorded, the good summaries included
        assert series(app, "telltale_organization_requests_total") == []
        assert series(app, "telltale_organization_request_duration_seconds_count") == []
        # the limits themselves are accepted: errors == requests, MAX_DURATIONS durations
        edge = [
            summary(requests=10, client_errors=4, server_errors=6),
            summary(requests=MAX_DURATIONS, durations_seconds=[0.0] * MAX_DURATIONS),
        ]
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": edge})).status_code == 202
    assert value(app, "telltale_organization_requests_total", organization="acme", outcome="success") == 1000
    assert value(app, "telltale_organization_request_duration_seconds_count", organization="acme") == 1000


async def test_a_thousand_bad_durations_are_reported_in_a_few_lines() -> None:
    app = make_app()
    bad = summary(requests=MAX_DURATIONS, durations_seconds=[-1] * MAX_DURATIONS)
    async with client(app) as c:
        r = await c.post("/api/v1/events", headers=AUTH, json={"events": [bad]})
    assert r.status_code == 422
    errors = r.json()["rejected"][0]["errors"]
    assert len(errors) == 11 and errors[-1]["message"] == f"and {MAX_DURATIONS - 10} more errors"
    assert len(r.content) < 3000


async def test_organizations_beyond_the_cap_fold_into_other_with_every_outcome() -> None:
    app = make_app(organization_label_cap=3)
    batch = [
        {
            "type": "requests.summary",
            "organization": f"org-{i}",
            "requests": 10,
            "server_errors": 1,
            "durations_seconds": [0.1],
        }
        for i in range(10)
    ]
    async with client(app) as c:
        assert (await c.post("/api/v1/events", headers=AUTH, json={"events": batch})).status_code == 202
    sets = {(s["organization"], s["outcome"]) for s in series(app, "telltale_organization_requests_total")}
    assert sets == {(o, k) for o in ("org-0", "org-1", "org-2", "other") for k in OUTCOMES}
    assert value(app, "telltale_organization_requests_total", organization="other", outcome="server_error") == 7
    assert value(app, "telltale_organization_requests_total", organization="other", outcome="success") == 63
    assert value(app, "telltale_organization_request_duration_seconds_count", organization="other") == 7
    # one fold per event (not one per series it updates), and none by the series budget
    assert value(app, "telltale_organization_labels_folded_total") == 7
    for metric in ("telltale_organization_requests", "telltale_organization_request_duration_seconds"):
        assert value(app, "telltale_event_series_folded_total", metric=metric) == 0


def test_every_admitted_organization_keeps_all_three_outcomes_at_the_cap() -> None:
    """The shared budget (2,000) would have folded the outcomes of the 667th organization on."""
    registry = CollectorRegistry()
    metrics = EventMetrics(registry, organization_cap=1000)
    for i in range(1000):
        metrics.record(EVENT.validate_python(summary(organization=f"org-{i}", requests=2, server_errors=1)))
    metrics.record(EVENT.validate_python({"type": "requests.summary", "requests": 1}))
    metrics.record(EVENT.validate_python(summary(organization="late", requests=1)))
    got = registry.get_sample_value
    assert got("telltale_organization_requests_total", {"organization": "org-999", "outcome": "server_error"}) == 1
    assert got("telltale_organization_requests_total", {"organization": "unknown", "outcome": "success"}) == 1
    assert got("telltale_organization_requests_total", {"organization": "other", "outcome": "success"}) == 1
    assert len(metrics.org_requests) == 3 * 1002
