"""`POST /api/v1/events`: the watched platform reports business and security events.

A batch is `{"events": [...]}`, each event typed by `type` (a pydantic discriminated union).
All or nothing: the whole batch is validated, and each event turned into the series updates it makes,
before anything is recorded; if any event is invalid, or valid but not recordable, the answer is 422
listing every bad index with its reasons and nothing was recorded, so a client fixes and resends the
whole batch and never double-counts. All valid: 202 with `accepted`. See docs/api.md.

Series are bounded twice. Each label's value set: `organization` by `TELLTALE_ORGANIZATION_LABEL_CAP`
(1,000; beyond it values fold into `other`, counted by `telltale_organization_labels_folded_total`),
`provider`, `currency`, `resource` and `objective` by small fixed caps (`LABEL_CAPS`); the other labels
are enumerations. And each metric's label sets together, by a series budget (`SERIES_BUDGET`, at
least the organization cap + 2): a new label set beyond it folds into the all-`other` series, counted
by `telltale_event_series_folded_total{metric}`. docs/metrics.md has the worst case.
`telltale_organization_requests_total` (organization x a 3-value `outcome`) gets 3 (C + 2) + 1 instead, so a
tenant the cap admitted always has all three of its outcomes.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from telltale.app.auth import require_bearer
from telltale.app.body import BadBody, json_response, openapi_body, problem, read_json
from telltale.app.instrumentation._compat import histogram_add_counts
from telltale.app.instrumentation.http_metrics import LATENCY_BUCKETS as HTTP_LATENCY_BUCKETS
from telltale.app.instrumentation.logs import set_organization_id

router = APIRouter()

OTHER = "other"
UNKNOWN = "unknown"
LABEL_CAPS = {"provider": 20, "currency": 20, "resource": 50, "objective": 50}
SERIES_BUDGET = 2000
MAX_DURATIONS = 1000  # durations one `requests.summary` may carry (a sample of its window's requests)
OUTCOMES = ("success", "client_error", "server_error")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    """Naive means UTC; and the instant must be a Unix time a metric can carry: from 1970 (year 1 has
    no timestamp in every zone, and nothing a platform reports is older than its clock)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        if value < EPOCH:
            raise ValueError
        value.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("date is out of range (1970-01-01 and later)") from None
    return value


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")]
OrgId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
# Numbers are JSON numbers: no booleans, no strings, no NaN or Infinity (strict, finite).
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=7 * 24 * 3600)]
Amount = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1e12)]
Quantity = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1e18)]
Count = Annotated[int, Field(strict=True, ge=0, le=100_000_000)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    organization: OrgId | None = None
    timestamp: Timestamp | None = None  # informational; metrics are stamped at ingestion


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
    expires_at: Timestamp


class Payment(_Event):
    type: Literal["payment.succeeded", "payment.failed"]
    provider: Name
    currency: Currency
    amount: Amount


class WebsocketConnections(_Event):
    type: Literal["websocket.connections"]
    connections: Count


class QuotaUsage(_Event):
    type: Literal["quota.usage"]
    organization: OrgId
    resource: Name
    used: Quantity
    limit: Quantity


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
    target: Finite
    actual: Finite
    severe: Annotated[bool, Field(strict=True)] = False


class RequestsSummary(_Event):
    """The platform's requests for one organization over a short window (10-60 s), already counted by the
    platform: one event per request would be thousands of events a second for a busy tenant."""

    type: Literal["requests.summary"]
    requests: Count
    client_errors: Count = 0  # answered 4xx
    server_errors: Count = 0  # answered 5xx
    # a sample of the window's request durations (all of them when there were at most MAX_DURATIONS)
    durations_seconds: Annotated[tuple[Seconds, ...], Field(max_length=MAX_DURATIONS)] = ()

    @field_validator("server_errors")
    @classmethod
    def _errors_within_requests(cls, value: int, info: ValidationInfo) -> int:
        requests, client = info.data.get("requests"), info.data.get("client_errors")
        if requests is not None and client is not None and client + value > requests:
            raise ValueError("client_errors + server_errors exceed requests")
        return value

    @field_validator("durations_seconds")
    @classmethod
    def _sample_within_requests(cls, value: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        requests = info.data.get("requests")
        if requests is not None and len(value) > requests:
            raise ValueError("more durations than requests")
        return value


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
    | SlaViolation
    | RequestsSummary,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)
EVENT_TYPES = sorted(
    t
    for m in Event.__origin__.__args__  # type: ignore[attr-defined]
    for t in m.model_fields["type"].annotation.__args__
)


class EventBatch(BaseModel):
    """The request body (documentation only: the endpoint validates each event itself, to name each bad one)."""

    events: list[Event] = Field(description="at most TELLTALE_EVENTS_MAX_BATCH events (1,000 by default)")


class FieldError(BaseModel):
    field: str
    message: str


class RejectedEvent(BaseModel):
    index: int = Field(description="position in `events`")
    errors: list[FieldError]


class Accepted(BaseModel):
    accepted: int


class Rejected(BaseModel):
    detail: str
    accepted: Literal[0] = Field(description="always 0: a batch with a bad event records nothing")
    rejected: list[RejectedEvent]


class Problem(BaseModel):
    detail: str


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


Fold = Callable[[str], str] | None


class Series:
    """One event metric with its series budget.

    At most `budget` label sets, the all-`other` one included (its slot is reserved): a new label set
    beyond that is recorded in the all-`other` series and counted in `folded`. `labels` names the
    metric's labels, `folds` each one's value cap (None: an enumeration, nothing to fold)."""

    def __init__(self, metric: Any, labels: tuple[str, ...], folds: tuple[Fold, ...], budget: int, folded: Any) -> None:
        self.metric, self.labels, self.folds, self.budget, self.folded = metric, labels, folds, budget, folded
        self.others = (OTHER,) * len(labels)
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def child(self, values: tuple[str, ...]) -> Any:
        """The child for already folded label values, or the all-`other` one past the budget."""
        child = self._children.get(values)
        if child is not None:
            return child
        with self._lock:
            if values not in self._children and values != self.others:
                used = len(self._children) - (self.others in self._children)
                if used >= self.budget - 1:
                    self.folded.inc()
                    values = self.others
            child = self._children.get(values)
            if child is None:
                child = self._children[values] = self.metric.labels(*values)
        return child

    def __len__(self) -> int:
        return len(self._children)


class Observations:
    """Many histogram observations as bucket counts and a sum: a summary's 1,000 durations are then one
    update per bucket, not 1,000 observations (each takes prometheus-client's lock: 2.8 us apiece)."""

    __slots__ = ("counts", "total", "values")

    def __init__(self, bounds: tuple[float, ...], values: tuple[float, ...]) -> None:
        ordered = sorted(values)
        # values <= each bound (`le` is inclusive, as observe()'s), then +Inf; per bucket, as the child keeps them
        cumulative = [*(bisect_right(ordered, bound) for bound in bounds), len(ordered)]
        self.counts = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
        self.total = math.fsum(ordered)
        self.values = values

    def add_to(self, child: Any) -> None:
        """Adds the observations to a histogram child as its own `observe` would, one value at a time
        (tests/test_events.py compares the two); in bulk where the client allows (`_compat`)."""
        if not histogram_add_counts(child, self.counts, self.total):
            for value in self.values:
                child.observe(value)


# One series update: the metric, its raw label values (folded when applied), the method and the value
# (for `observe_all`, the Observations).
Op = tuple[Series, tuple[str, ...], str, float | Observations]

DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EventMetrics:
    """The event metrics, each behind its `Series`; `plan` turns an event into updates without
    touching anything, `apply` records planned updates and cannot fail."""

    def __init__(self, registry: CollectorRegistry, organization_cap: int, series_budget: int | None = None) -> None:
        r = registry
        self.budget = max(SERIES_BUDGET if series_budget is None else series_budget, organization_cap + 2)
        self.rejected = Counter("telltale_events_rejected", "Events refused as invalid", registry=r)
        self.org_folded = Counter(
            "telltale_organization_labels_folded",
            "Events whose organization was folded into `other` by the cap",
            registry=r,
        )
        self.label_folded = Counter(
            "telltale_event_label_values_folded",
            "Label values folded into `other` by their label's cap (provider, currency, resource, objective)",
            ["label"],
            registry=r,
        )
        self.series_folded = Counter(
            "telltale_event_series_folded",
            "Updates recorded in the all-`other` series because the metric's series budget was spent",
            ["metric"],
            registry=r,
        )
        self.organization = LabelCap(organization_cap, self.org_folded)
        caps: dict[str, Callable[[str], str]] = {
            name: LabelCap(cap, self.label_folded.labels(name)) for name, cap in LABEL_CAPS.items()
        }
        caps["organization"] = self._organization
        self.series: dict[str, Series] = {}

        def add(kind: type, name: str, doc: str, labels: list[str], budget: int | None = None, **kw: Any) -> Series:
            metric = kind(name, doc, labels, registry=r, **kw)
            folds = tuple(caps.get(label) for label in labels)
            budget = self.budget if budget is None else budget
            series = Series(metric, tuple(labels), folds, budget, self.series_folded.labels(name))
            self.series[name] = series
            return series

        mostrecent: dict[str, Any] = {"multiprocess_mode": "mostrecent"}
        self.received = add(Counter, "telltale_events", "Events recorded, by type", ["type"])
        self.deployments = add(
            Counter, "telltale_deployments", "Deployment events", ["provider", "status", "organization"]
        )
        self.deployment_duration = add(
            Histogram,
            "telltale_deployment_duration_seconds",
            "Duration of finished deployments",
            ["provider", "status"],
            buckets=DURATION_BUCKETS,
        )
        self.license_validations = add(
            Counter, "telltale_license_validations", "License validations", ["result", "organization"]
        )
        self.license_latency = add(
            Histogram,
            "telltale_license_validation_duration_seconds",
            "Validation latency",
            ["result"],
            buckets=LATENCY_BUCKETS,
        )
        self.license_expiry = add(
            Gauge,
            "telltale_license_expiry_timestamp_seconds",
            "When the organization's license expires",
            ["organization"],
            **mostrecent,
        )
        self.payments = add(
            Counter, "telltale_payments", "Payments", ["provider", "currency", "status", "organization"]
        )
        self.payment_amount = add(
            Counter,
            "telltale_payment_amount",
            "Sum of payment amounts, in the currency's major unit",
            ["provider", "currency", "status"],
        )
        self.websockets = add(
            Gauge,
            "telltale_websocket_connections",
            "Open websocket connections reported by the platform",
            ["organization"],
            **mostrecent,
        )
        self.quota_used = add(
            Gauge, "telltale_organization_quota_used", "Quota used", ["organization", "resource"], **mostrecent
        )
        self.quota_limit = add(
            Gauge, "telltale_organization_quota_limit", "Quota limit", ["organization", "resource"], **mostrecent
        )
        self.login_failures = add(Counter, "telltale_login_failures", "Failed logins", ["organization"])
        self.rate_limit_hits = add(
            Counter, "telltale_rate_limit_hits", "Requests refused by rate limiting", ["organization"]
        )
        self.suspicious = add(
            Counter, "telltale_suspicious_activity", "Suspicious activity reports", ["kind", "organization"]
        )
        self.sla_violations = add(
            Counter,
            "telltale_sla_violations",
            "SLA violations reported by the platform",
            ["organization", "objective"],
        )
        # every organization the cap admits (and `other`, `unknown`) with each outcome, and the reserved
        # all-`other` slot (no outcome is `other`, so it stays unused): this metric never folds by budget
        self.org_requests = add(
            Counter,
            "telltale_organization_requests",
            "Requests the platform served, per organization and outcome (requests.summary events)",
            ["organization", "outcome"],
            budget=len(OUTCOMES) * (organization_cap + 2) + 1,
        )
        self.org_request_duration = add(
            Histogram,
            "telltale_organization_request_duration_seconds",
            "Durations of the platform's requests, per organization (the sample of requests.summary events)",
            ["organization"],
            buckets=HTTP_LATENCY_BUCKETS,
        )

    def _organization(self, value: str) -> str:
        """`unknown` (no organization given) is not one of the capped values."""
        return value if value == UNKNOWN else self.organization(value)

    def plan(self, e: Any) -> list[Op]:
        """The updates `e` makes, computed without recording anything; raises on a value that cannot be
        recorded (the caller turns that into the event's 422 entry)."""
        kind = e.type
        org = UNKNOWN if e.organization is None else e.organization
        ops: list[Op] = [(self.received, (kind,), "inc", 1.0)]
        if isinstance(e, Deployment):
            status = kind.split(".", 1)[1]
            ops.append((self.deployments, (e.provider, status, org), "inc", 1.0))
            if e.duration_seconds is not None and status != "started":
                ops.append((self.deployment_duration, (e.provider, status), "observe", e.duration_seconds))
        elif isinstance(e, LicenseValidated):
            ops.append((self.license_validations, (e.result, org), "inc", 1.0))
            ops.append((self.license_latency, (e.result,), "observe", e.latency_seconds))
        elif isinstance(e, LicenseExpiry):
            ops.append((self.license_expiry, (org,), "set", e.expires_at.timestamp()))
        elif isinstance(e, Payment):
            status = kind.split(".", 1)[1]
            ops.append((self.payments, (e.provider, e.currency, status, org), "inc", 1.0))
            ops.append((self.payment_amount, (e.provider, e.currency, status), "inc", e.amount))
        elif isinstance(e, WebsocketConnections):
            ops.append((self.websockets, (org,), "set", float(e.connections)))
        elif isinstance(e, QuotaUsage):
            ops.append((self.quota_used, (org, e.resource), "set", e.used))
            ops.append((self.quota_limit, (org, e.resource), "set", e.limit))
        elif isinstance(e, LoginFailed):
            ops.append((self.login_failures, (org,), "inc", 1.0))
        elif isinstance(e, RateLimitHit):
            ops.append((self.rate_limit_hits, (org,), "inc", 1.0))
        elif isinstance(e, SuspiciousActivity):
            ops.append((self.suspicious, (e.kind, org), "inc", 1.0))
        elif isinstance(e, SlaViolation):
            ops.append((self.sla_violations, (org, e.objective), "inc", 1.0))
        elif isinstance(e, RequestsSummary):
            # all three outcomes, zeros too: each tenant's error ratio exists (0) before its first error
            success = e.requests - e.client_errors - e.server_errors
            for outcome, count in zip(OUTCOMES, (success, e.client_errors, e.server_errors), strict=True):
                ops.append((self.org_requests, (org, outcome), "inc", float(count)))
            if e.durations_seconds:
                observed = Observations(HTTP_LATENCY_BUCKETS, e.durations_seconds)
                ops.append((self.org_request_duration, (org,), "observe_all", observed))
        for _, _, method, amount in ops:
            value = amount.total if isinstance(amount, Observations) else amount
            if not math.isfinite(value) or (method != "set" and value < 0):
                raise ValueError("value out of range")
        return ops

    @staticmethod
    def apply(ops: list[Op]) -> None:
        """Records one event's planned updates; each label value is folded once per event, so the
        folded counters count events, whatever the number of series an event updates."""
        folded: dict[tuple[str, str], str] = {}
        for series, raw, method, amount in ops:
            values = []
            for label, fold, value in zip(series.labels, series.folds, raw, strict=True):
                if fold is not None:
                    key = (label, value)
                    if key not in folded:
                        folded[key] = fold(value)
                    value = folded[key]
                values.append(value)
            child = series.child(tuple(values))
            if isinstance(amount, Observations):
                amount.add_to(child)
            else:
                getattr(child, method)(amount)

    def record(self, e: Any) -> None:
        self.apply(self.plan(e))


def _message(err: Any) -> str:
    """pydantic's message, without the input (an unknown tag would be echoed whole)."""
    if err["type"] == "union_tag_invalid":
        return f"unknown type; expected one of: {', '.join(EVENT_TYPES)}"
    if err["type"] == "union_tag_not_found":
        return "type is required"
    return str(err["msg"])[:300]


MAX_ERRORS = 10  # reasons listed per event: 1,000 bad durations would otherwise be 1,000 entries


def _reason(exc: ValidationError) -> list[dict[str, Any]]:
    reasons = [
        {
            "field": (
                ".".join(str(p) for p in err["loc"][1:] if not isinstance(p, int))
                or ".".join(str(p) for p in err["loc"])
                or "type"
            )[:100],  # an unknown key is named, but never at length
            "message": _message(err),
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]
    ]
    if exc.error_count() > MAX_ERRORS:
        reasons.append({"field": "", "message": f"and {exc.error_count() - MAX_ERRORS} more errors"})
    return reasons


_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "every event was recorded"},
    400: {"model": Problem, "description": "the body is not JSON"},
    401: {"model": Problem, "description": "missing or wrong bearer token, or TELLTALE_INGEST_TOKEN not set"},
    413: {"model": Problem, "description": "body over 4 MiB, or more events than TELLTALE_EVENTS_MAX_BATCH"},
    422: {
        "model": Rejected,
        "description": "some events are invalid or not recordable (each named by index), or the body is not "
        "an object with an `events` array, or JSON nested deeper than 64 levels: nothing was recorded",
    },
}


@router.post(
    "/api/v1/events",
    status_code=202,
    summary="Report business and security events (bearer token)",
    response_model=None,
    responses=_ANSWERS,
    openapi_extra=openapi_body(EventBatch),
)
async def ingest(request: Request) -> Response:
    state = request.app.state.telltale
    require_bearer(request, state.settings.ingest_token, "TELLTALE_INGEST_TOKEN")
    metrics: EventMetrics = request.app.state.event_metrics
    try:
        body = await read_json(request)
    except BadBody as exc:
        return problem(exc.status, exc.detail)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return problem(422, 'body must be an object with an "events" array', accepted=0, rejected=[])
    items = body["events"]
    limit = state.settings.events_max_batch
    if len(items) > limit:
        return problem(413, f"batch of {len(items)} events exceeds the limit of {limit}")
    good: list[Any] = []
    planned: list[list[Op]] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            event = EVENT.validate_python(item)
        except ValidationError as exc:
            rejected.append({"index": index, "errors": _reason(exc)})
            continue
        try:
            planned.append(metrics.plan(event))
        except (ArithmeticError, ValueError, TypeError) as exc:  # valid but not recordable: this event's 422
            rejected.append(
                {"index": index, "errors": [{"field": "", "message": f"cannot be recorded: {type(exc).__name__}"}]}
            )
            continue
        good.append(event)
    if rejected:
        metrics.rejected.inc(len(rejected))
        return problem(
            422,
            f"{len(rejected)} of {len(items)} events rejected; nothing was recorded: fix them and resend the batch",
            accepted=0,
            rejected=rejected,
        )
    orgs = {e.organization for e in good if e.organization is not None}
    if len(orgs) == 1:
        set_organization_id(next(iter(orgs)))
    for ops in planned:
        metrics.apply(ops)
    if state.alerting is not None:
        state.alerting.handle(good)  # queued; never waits on Alertmanager, never raises
    return json_response({"accepted": len(good)}, 202)
