"""Organization: one tenant's view, for customer success or the tenant itself."""

from __future__ import annotations

from ..board import ONCE, ORG, Board, Q, above, below, fixed, payment_failure_ratio

EXPIRY = '{__name__=~"telltale_license_expiry_timestamp_seconds|telltale_sql_license_expiry_timestamp_seconds", ' + ORG
ORG_METRICS = (
    "telltale_deployments_total|telltale_payments_total|telltale_organization_quota_limit|"
    "telltale_websocket_connections|telltale_sql_organization_servers|telltale_license_validations_total|"
    "telltale_organization_requests_total"
)
REQUESTS = f"telltale_organization_requests_total{{{ORG}}}"
DURATION = f"telltale_organization_request_duration_seconds_bucket{{{ORG}}}"


def build() -> Board:
    b = Board(
        uid="telltale-organization",
        title="Organization",
        folder="Business",
        description="Everything Telltale knows about one organization (tenant): its requests to the platform "
        "(rate, errors, latency), activity, quota, deployments, licenses, payments and security. Choose it in the "
        "organization variable.",
        refresh="1m",
        tags=("business", "organization", "historical"),
        time_from="now-24h",
    )
    b.variable(
        "organization",
        "Organization",
        f'label_values({{__name__=~"{ORG_METRICS}"}}, organization)',
        "Organizations seen in events or in the platform's database.",
    )

    b.row("Activity and service")
    b.stat(
        "Servers",
        "Servers the organization owns (platform database, exporter SQL query organization_servers).",
        "short",
        [
            Q(
                f"sum by (organization) ({ONCE} (telltale_sql_organization_servers{{{ORG}}}))",
                "{{organization}}",
            )
        ],
    )
    b.stat(
        "Applications running",
        "Applications running / all applications of the organization (platform database).",
        "short",
        [
            Q(
                f"sum by (organization) ({ONCE} (telltale_sql_organization_applications_running{{{ORG}}}))",
                "running",
            ),
            Q(
                f"sum by (organization) ({ONCE} (telltale_sql_organization_applications{{{ORG}}}))",
                "all",
            ),
        ],
    )
    b.stat(
        "Websocket connections",
        "Open websocket connections the platform reports for the organization.",
        "short",
        [Q(f"sum by (organization) (telltale_websocket_connections{{{ORG}}})", "{{organization}}")],
    )
    b.stat(
        "License time left",
        "Time until the organization's license expires (events or database, the earliest); LicenseExpiringSoon "
        "tells the business team inside its threshold.",
        "s",
        [Q(f"min by (organization) ({EXPIRY}}} > 0) - time()", "{{organization}}")],
        thresholds=below("LicenseExpiringSoon", nth=1),
    )

    b.row("Requests: rate, errors, duration")
    b.timeseries(
        "Requests per second by outcome",
        "The platform's requests for the organization per second: success (answers below 400), client_error "
        "(4xx), server_error (5xx). From the requests.summary events the platform sends every 10-60 s, so the "
        "line moves in steps of its window.",
        "reqps",
        [Q(f"sum by (outcome) (rate({REQUESTS}[$__rate_interval]))", "{{outcome}}")],
        stack=True,
    )
    b.timeseries(
        "Request error ratio",
        "Share of the organization's requests that answered a 5xx, and a 4xx (client errors: the client's doing, "
        "no alert). OrganizationErrorRate warns when the 5xx share stays above its threshold for 10 minutes "
        "(10-minute window, at least 100 requests).",
        "percentunit",
        [
            Q(
                f'sum by (organization) (rate(telltale_organization_requests_total{{{ORG}, outcome="server_error"}}'
                f"[$__rate_interval])) / sum by (organization) (rate({REQUESTS}[$__rate_interval]))",
                "{{organization}} 5xx",
            ),
            Q(
                f'sum by (organization) (rate(telltale_organization_requests_total{{{ORG}, outcome="client_error"}}'
                f"[$__rate_interval])) / sum by (organization) (rate({REQUESTS}[$__rate_interval]))",
                "{{organization}} 4xx",
            ),
        ],
        thresholds=above("OrganizationErrorRate"),
        min_value=0,
    )
    b.timeseries(
        "Request latency p50, p95, p99",
        "The organization's request durations at the 50th, 95th and 99th percentile, from the durations the "
        "platform sampled (at most 1,000 a summary), over the HTTP buckets (5 ms to 10 s: above 10 s reads as "
        "10 s). No alert rule: compare with the tenant's SLA.",
        "s",
        [
            Q(
                f"histogram_quantile({q}, sum by (organization, le) (rate({DURATION}[$__rate_interval])))",
                f"{{{{organization}}}} p{round(q * 100)}",
            )
            for q in (0.5, 0.95, 0.99)
        ],
        width=24,
    )
    b.timeseries(
        "Requests refused by rate limiting",
        "The organization's requests refused by the platform's rate limiter, per minute; RateLimitSpike warns "
        "above its threshold.",
        "short",
        [
            Q(
                f"sum by (organization) (rate(telltale_rate_limit_hits_total{{{ORG}}}[$__rate_interval])) * 60",
                "{{organization}}",
            )
        ],
        thresholds=above("RateLimitSpike"),
    )
    b.timeseries(
        "SLA violations",
        "Service-level objectives of the organization the platform reported missed (errors, latency...), per "
        "objective and interval.",
        "short",
        [
            Q(
                f"sum by (organization, objective) "
                f"(increase(telltale_sla_violations_total{{{ORG}}}[$__rate_interval]))",
                "{{organization}} {{objective}}",
                empty="no SLA violation reported for the organization",
            )
        ],
    )

    b.row("Quota")
    b.timeseries(
        "Quota used",
        "Share of each quota the organization uses (used / limit per resource). No alert rule: 80% and 95% "
        "are the customer-success conventions.",
        "percentunit",
        [
            Q(
                f"telltale_organization_quota_used{{{ORG}}} / telltale_organization_quota_limit{{{ORG}}}",
                "{{organization}} {{resource}}",
            )
        ],
        thresholds=fixed((None, "green"), (0.8, "orange"), (0.95, "red")),
        min_value=0,
    )
    b.timeseries(
        "Quota used and limit",
        "Quota used and its limit per resource, in the resource's own unit.",
        "short",
        [
            Q(f"telltale_organization_quota_used{{{ORG}}}", "used {{resource}}"),
            Q(f"telltale_organization_quota_limit{{{ORG}}}", "limit {{resource}}"),
        ],
    )

    b.row("Deployments and licenses")
    b.timeseries(
        "Deployments by status",
        "The organization's deployment events per interval by status.",
        "short",
        [
            Q(
                f"sum by (status) (increase(telltale_deployments_total{{{ORG}}}[$__rate_interval]))",
                "{{status}}",
            )
        ],
        stack=True,
    )
    b.timeseries(
        "License validations by result",
        "License validations of the organization per interval: valid, invalid, expired, error.",
        "short",
        [
            Q(
                f"sum by (result) (increase(telltale_license_validations_total{{{ORG}}}[$__rate_interval]))",
                "{{result}}",
            )
        ],
        stack=True,
    )

    b.row("Payments and security")
    b.timeseries(
        "Payment failure ratio",
        "Share of the organization's payments that failed; PaymentFailureRate warns and pages at its numbers "
        "(15-minute window, at least 10 payments).",
        "percentunit",
        [
            Q(
                payment_failure_ratio(),
                "{{organization}}",
            )
        ],
        thresholds=above("PaymentFailureRate"),
        min_value=0,
    )
    b.timeseries(
        "Failed logins per minute",
        "Failed logins of the organization's users per minute; FailedLoginSpike warns above its threshold.",
        "short",
        [
            Q(
                f"sum by (organization) (rate(telltale_login_failures_total{{{ORG}}}[$__rate_interval])) * 60",
                "{{organization}}",
            )
        ],
        thresholds=above("FailedLoginSpike"),
    )
    b.timeseries(
        "Suspicious activity",
        "Suspicious activity reports for the organization by kind, per interval.",
        "short",
        [
            Q(
                f"sum by (kind) (increase(telltale_suspicious_activity_total{{{ORG}}}[$__rate_interval]))",
                "{{kind}}",
                empty="no suspicious activity reported for the organization",
            )
        ],
    )
    b.timeseries(
        "Payments by status",
        "The organization's payments per interval, succeeded and failed.",
        "short",
        [
            Q(
                f"sum by (status) (increase(telltale_payments_total{{{ORG}}}[$__rate_interval]))",
                "{{status}}",
            )
        ],
        stack=True,
    )
    return b
