"""Organization: one tenant's view, for customer success or the tenant itself."""

from __future__ import annotations

from ..board import Board, Q, above, below, fixed

ORG = 'organization=~"$organization"'
EXPIRY = '{__name__=~"telltale_license_expiry_timestamp_seconds|telltale_sql_license_expiry_timestamp_seconds", ' + ORG
ORG_METRICS = (
    "telltale_deployments_total|telltale_payments_total|telltale_organization_quota_limit|"
    "telltale_websocket_connections|telltale_sql_organization_servers|telltale_license_validations_total"
)


def build() -> Board:
    b = Board(
        uid="telltale-organization",
        title="Organization",
        folder="Business",
        description="Everything Telltale knows about one organization (tenant): activity, errors the platform "
        "reported, quota, deployments, licenses, payments and security. Choose it in the organization variable.",
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
        [Q(f"sum by (organization) (telltale_sql_organization_servers{{{ORG}}})", "{{organization}}")],
    )
    b.stat(
        "Applications running",
        "Applications running / all applications of the organization (platform database).",
        "short",
        [
            Q(f"sum by (organization) (telltale_sql_organization_applications_running{{{ORG}}})", "running"),
            Q(f"sum by (organization) (telltale_sql_organization_applications{{{ORG}}})", "all"),
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
                f'(sum by (organization) (rate(telltale_payments_total{{{ORG}, status="failed"}}[$__rate_interval]))'
                f" or sum by (organization) (rate(telltale_payments_total{{{ORG}}}[$__rate_interval])) * 0)"
                f" / sum by (organization) (rate(telltale_payments_total{{{ORG}}}[$__rate_interval]))",
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
