"""`POST /api/v1/events`: the watched platform reports business and security events.

A batch is `{"events": [...]}`, each event typed by `type` (a pydantic discriminated union).
Partial acceptance: every valid event is recorded; if any event is invalid the answer is 422 with
`accepted` (how many were recorded) and `rejected` (index and reason of each bad one), so a client
retries nothing that was recorded. All valid: 202 with `accepted`. See docs/api.md.

Label values are bounded: `organization` by a cap (`TELLTALE_ORGANIZATION_LABEL_CAP`, 1,000 by default;
beyond it values fold into `other`, counted by `telltale_organization_labels_folded_total`), and
`provider`, `currency`, `resource` by a smaller fixed cap each.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from telltale.app.auth import require_bearer
from telltale.app.instrumentation.logs import set_organization_id

router = APIRouter()

OTHER = "other"
UNKNOWN = "unknown"
MAX_BODY_BYTES = 4 * 1024 * 1024
SMALL_CAP = 100

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")]
OrgId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Seconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    organization: OrgId | None = None
    timestamp: datetime | None = None  # informational; metrics are stamped at ingestion


class Deployment(_Event):
    type: Literal["deployment.started", "deployment.completed", "deployment.failed"]
    provider: Name
    duration_seconds: Seconds | None = None


class LicenseValidated(_Event):
    type: Literal["license.validated"]
    result: Literal["valid", "invalid", "expired", "error"]
    latency_seconds: Seconds


class LicenseExpiry(_Event):
    type: Literal["license.expiry"]
    organization: OrgId
    expires_at: datetime


class Payment(_Event):
    type: Literal["payment.succeeded", "payment.failed"]
    provider: Name
    currency: Currency
    amount: Annotated[float, Field(ge=0, le=1e12)]


class WebsocketConnections(_Event):
    type: Literal["websocket.connections"]
    connections: Annotated[int, Field(ge=0, le=100_000_000)]


class QuotaUsage(_Event):
    type: Literal["quota.usage"]
    organization: OrgId
    resource: Name
    used: Annotated[float, Field(ge=0)]
    limit: Annotated[float, Field(ge=0)]


class LoginFailed(_Event):
    type: Literal["login.failed"]


class RateLimitHit(_Event):
    type: Literal["rate_limit.hit"]


class SuspiciousActivity(_Event):
    type: Literal["suspicious_activity"]
    kind: Literal[
        "brute_force",
        "credential_stuffing",
        "account_takeover",
        "impossible_travel",
        "token_reuse",
        "scanner",
        "fraud",
        "other",
    ]


class SlaViolation(_Event):
    """An organization's service-level objective was missed (measured by the platform)."""

    type: Literal["sla.violation"]
    organization: OrgId
    objective: Name
    target: float
    actual: float
    severe: bool = False


Event = Annotated[
    Deployment
    | LicenseValidated
    | LicenseExpiry
    | Payment
    | WebsocketConnections
    | QuotaUsage
    | LoginFailed
    | RateLimitHit
    | SuspiciousActivity
    | SlaViolation,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)
EVENT_TYPES = sorted(
    t
    for m in Event.__origin__.__args__  # type: ignore[attr-defined]
    for t in m.model_fields["type"].annotation.__args__
)


class LabelCap:
    """Remembers the first `cap` distinct values of a label; later new values become `other`."""

    def __init__(self, cap: int, folded: Any) -> None:
        self.cap = cap
        self.folded = folded
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        with self._lock:
            if value in self.seen:
                return value
            if len(self.seen) < self.cap:
                self.seen.add(value)
                return value
        self.folded.inc()
        return OTHER


DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EventMetrics:
    def __init__(self, registry: CollectorRegistry, organization_cap: int) -> None:
        r = registry
        self.received = Counter("telltale_events", "Events recorded, by type", ["type"], registry=r)
        self.rejected = Counter("telltale_events_rejected", "Events refused as invalid", registry=r)
        self.deployments = Counter(
            "telltale_deployments", "Deployment events", ["provider", "status", "organization"], registry=r
        )
        self.deployment_duration = Histogram(
            "telltale_deployment_duration_seconds",
            "Duration of finished deployments",
            ["provider", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.license_validations = Counter(
            "telltale_license_validations", "License validations", ["result", "organization"], registry=r
        )
        self.license_latency = Histogram(
            "telltale_license_validation_duration_seconds",
            "Validation latency",
            ["result"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.license_expiry = Gauge(
            "telltale_license_expiry_timestamp_seconds",
            "When the organization's license expires",
            ["organization"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.payments = Counter(
            "telltale_payments", "Payments", ["provider", "currency", "status", "organization"], registry=r
        )
        self.payment_amount = Counter(
            "telltale_payment_amount",
            "Sum of payment amounts, in the currency's major unit",
            ["provider", "currency", "status"],
            registry=r,
        )
        self.websockets = Gauge(
            "telltale_websocket_connections",
            "Open websocket connections reported by the platform",
            ["organization"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.quota_used = Gauge(
            "telltale_organization_quota_used",
            "Quota used",
            ["organization", "resource"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.quota_limit = Gauge(
            "telltale_organization_quota_limit",
            "Quota limit",
            ["organization", "resource"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.login_failures = Counter("telltale_login_failures", "Failed logins", ["organization"], registry=r)
        self.rate_limit_hits = Counter(
            "telltale_rate_limit_hits", "Requests refused by rate limiting", ["organization"], registry=r
        )
        self.suspicious = Counter(
            "telltale_suspicious_activity", "Suspicious activity reports", ["kind", "organization"], registry=r
        )
        self.sla_violations = Counter(
            "telltale_sla_violations",
            "SLA violations reported by the platform",
            ["organization", "objective"],
            registry=r,
        )
        self.org_folded = Counter(
            "telltale_organization_labels_folded",
            "Events whose organization was folded into `other` by the cap",
            registry=r,
        )
        self.label_folded = Counter(
            "telltale_event_label_values_folded",
            "Events whose provider, currency or resource was folded into `other`",
            ["label"],
            registry=r,
        )
        self.organization = LabelCap(organization_cap, self.org_folded)
        self.provider = LabelCap(SMALL_CAP, self.label_folded.labels("provider"))
        self.currency = LabelCap(SMALL_CAP, self.label_folded.labels("currency"))
        self.resource = LabelCap(SMALL_CAP, self.label_folded.labels("resource"))

    def org(self, event: _Event) -> str:
        return UNKNOWN if event.organization is None else self.organization(event.organization)

    def record(self, e: Any) -> None:
        kind = e.type
        self.received.labels(kind).inc()
        if isinstance(e, Deployment):
            status = kind.split(".", 1)[1]
            provider = self.provider(e.provider)
            self.deployments.labels(provider, status, self.org(e)).inc()
            if e.duration_seconds is not None and status != "started":
                self.deployment_duration.labels(provider, status).observe(e.duration_seconds)
        elif isinstance(e, LicenseValidated):
            self.license_validations.labels(e.result, self.org(e)).inc()
            self.license_latency.labels(e.result).observe(e.latency_seconds)
        elif isinstance(e, LicenseExpiry):
            self.license_expiry.labels(self.org(e)).set(e.expires_at.timestamp())
        elif isinstance(e, Payment):
            status = kind.split(".", 1)[1]
            provider, currency = self.provider(e.provider), self.currency(e.currency)
            self.payments.labels(provider, currency, status, self.org(e)).inc()
            self.payment_amount.labels(provider, currency, status).inc(e.amount)
        elif isinstance(e, WebsocketConnections):
            self.websockets.labels(self.org(e)).set(e.connections)
        elif isinstance(e, QuotaUsage):
            org, resource = self.org(e), self.resource(e.resource)
            self.quota_used.labels(org, resource).set(e.used)
            self.quota_limit.labels(org, resource).set(e.limit)
        elif isinstance(e, LoginFailed):
            self.login_failures.labels(self.org(e)).inc()
        elif isinstance(e, RateLimitHit):
            self.rate_limit_hits.labels(self.org(e)).inc()
        elif isinstance(e, SuspiciousActivity):
            self.suspicious.labels(e.kind, self.org(e)).inc()
        elif isinstance(e, SlaViolation):
            self.sla_violations.labels(self.org(e), self.resource(e.objective)).inc()


def _reason(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"][1:] if not isinstance(p, int))
            or ".".join(str(p) for p in err["loc"])
            or "type",
            "message": err["msg"],
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def _problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


@router.post("/api/v1/events", status_code=202, summary="Report business and security events (bearer token)")
async def ingest(request: Request) -> JSONResponse:
    state = request.app.state.telltale
    require_bearer(request, state.settings.ingest_token, "TELLTALE_INGEST_TOKEN")
    metrics: EventMetrics = request.app.state.event_metrics
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return _problem(413, f"batch larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _problem(400, "body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return _problem(422, 'body must be an object with an "events" array', accepted=0, rejected=[])
    items = body["events"]
    limit = state.settings.events_max_batch
    if len(items) > limit:
        return _problem(413, f"batch of {len(items)} events exceeds the limit of {limit}")
    good: list[Any] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            good.append(EVENT.validate_python(item))
        except ValidationError as exc:
            rejected.append({"index": index, "errors": _reason(exc)})
    orgs = {e.organization for e in good if e.organization is not None}
    if len(orgs) == 1:
        set_organization_id(next(iter(orgs)))
    for event in good:
        metrics.record(event)
    if state.alerting is not None:
        state.alerting.handle(good)  # queued; never waits on Alertmanager
    if rejected:
        metrics.rejected.inc(len(rejected))
        return _problem(
            422,
            f"{len(rejected)} of {len(items)} events rejected; the others were recorded",
            accepted=len(good),
            rejected=rejected,
        )
    return JSONResponse({"accepted": len(good)}, status_code=202)
