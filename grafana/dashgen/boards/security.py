"""Security: failed logins, rate limiting, suspicious activity and refused requests, as they happen."""

from __future__ import annotations

from ..board import ORG, Board, Q, above


def build() -> Board:
    b = Board(
        uid="telltale-security",
        title="Security",
        folder="Security",
        description="Failed logins, rate-limit refusals, suspicious activity (platform events) and the 401s "
        "Telltale itself answers.",
        refresh="5s",
        tags=("security", "realtime"),
    )
    b.variable(
        "organization",
        "Organization",
        'label_values({__name__=~"telltale_login_failures_total|telltale_rate_limit_hits_total|'
        'telltale_suspicious_activity_total"}, organization)',
        "Organizations with security events.",
    )
    b.row("Authentication")
    b.timeseries(
        "Failed logins per minute",
        "Failed logins per minute by organization; FailedLoginSpike warns above its threshold.",
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
        "401 and 403 answered by Telltale",
        "Requests Telltale refused for a missing or wrong token, per second and route (events API, webhook, "
        "/metrics with a token).",
        "reqps",
        [
            Q(
                'sum by (route, status) (rate(http_requests_total{job="telltale", status=~"401|403"}'
                "[$__rate_interval]))",
                "{{route}} {{status}}",
                empty="no request with a missing or wrong token yet",
            )
        ],
    )
    b.row("Abuse")
    b.timeseries(
        "Rate-limit refusals per minute",
        "Requests the platform's rate limiter refused, per minute and organization; RateLimitSpike warns above "
        "its threshold.",
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
        "Suspicious activity by kind",
        "Suspicious activity reports per interval by kind and organization; SuspiciousActivity warns on any.",
        "short",
        [
            Q(
                f"sum by (kind, organization) "
                f"(increase(telltale_suspicious_activity_total{{{ORG}}}[$__rate_interval]))",
                "{{kind}} {{organization}}",
                empty="no suspicious activity reported yet",
            )
        ],
    )
    b.timeseries(
        "Events refused as invalid",
        "Events the platform sent that Telltale refused (422) per second: a client bug, or someone probing the "
        "events API.",
        "ops",
        [Q("rate(telltale_events_rejected_total[$__rate_interval])", "{{instance}}")],
    )
    b.timeseries(
        "Failed logins per hour",
        "Failed logins per hour by organization (recording rule, kept a year in the long-term store).",
        "short",
        [Q(f"organization:telltale_login_failures:increase1h{{{ORG}}}", "{{organization}}")],
    )
    return b
