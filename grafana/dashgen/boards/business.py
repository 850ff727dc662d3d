"""Business: deployments, licenses, payments and live connections across all organizations."""

from __future__ import annotations

from ..board import ONCE, Board, Q

EXPIRY = '{__name__=~"telltale_license_expiry_timestamp_seconds|telltale_sql_license_expiry_timestamp_seconds"}'


def build() -> Board:
    b = Board(
        uid="telltale-business",
        title="Business",
        folder="Business",
        description="The platform's business at a glance: deployments per hour, active licenses, payments, "
        "websocket connections, organizations.",
        refresh="1m",
        tags=("business", "historical"),
        time_from="now-24h",
    )
    b.row("Now")
    b.stat(
        "Active licenses",
        "Organizations whose latest license expires in the future (events or platform database).",
        "short",
        [Q(f"count(max by (organization) ({EXPIRY}) > time())", "active")],
    )
    b.stat(
        "Websocket connections",
        "Open websocket connections over all organizations, as the platform reports them.",
        "short",
        [Q("sum(telltale_websocket_connections)", "connections")],
    )
    b.stat(
        "Organizations with servers",
        "Organizations owning at least one server (platform database).",
        "short",
        [Q(f"count({ONCE} (telltale_sql_organization_servers) > 0)", "organizations")],
    )
    b.stat(
        "Applications running",
        "Applications running over all organizations (platform database).",
        "short",
        [Q(f"sum({ONCE} (telltale_sql_organization_applications_running))", "running")],
    )
    b.row("Trends")
    b.timeseries(
        "Deployments per hour",
        "Deployment events per hour by status (recording rule organization_status:telltale_deployments:increase1h).",
        "short",
        [Q("sum by (status) (organization_status:telltale_deployments:increase1h)", "{{status}}")],
    )
    b.timeseries(
        "Payments per hour",
        "Payment events per hour by status (recording rule organization_status:telltale_payments:increase1h).",
        "short",
        [Q("sum by (status) (organization_status:telltale_payments:increase1h)", "{{status}}")],
    )
    b.timeseries(
        "License validations by result",
        "License validations per second: valid, invalid, expired, error.",
        "ops",
        [Q("sum by (result) (rate(telltale_license_validations_total[$__rate_interval]))", "{{result}}")],
        stack=True,
    )
    b.timeseries(
        "Websocket connections by organization",
        "The ten organizations with the most open websocket connections.",
        "short",
        [Q("topk(10, telltale_websocket_connections)", "{{organization}}")],
    )
    b.timeseries(
        "Events by type",
        "Events the platform reported, per second and type.",
        "ops",
        [Q("sum by (type) (rate(telltale_events_total[$__rate_interval]))", "{{type}}")],
        stack=True,
    )
    b.stat(
        "Payments succeeded over the range by currency",
        "Succeeded payment amounts over the dashboard's time range, per currency (major unit).",
        "short",
        [
            Q(
                'sum by (currency) (increase(telltale_payment_amount_total{status="succeeded"}[$__range]))',
                "{{currency}}",
            )
        ],
        width=12,
    )
    return b
