"""Terraform / deployments: what is running now, how often deployments succeed, how long they take."""

from __future__ import annotations

from ..board import ONCE, UP_DOWN, Board, Q, once

NO_FAILURE = "no deployment has failed yet (the failed series appears with the first failure)"


def build() -> Board:
    b = Board(
        uid="telltale-deployments",
        title="Terraform / deployments",
        folder="Platform",
        description="Deployments from the platform's database (exporter) and from deployment events: active, "
        "success ratio, duration.",
        refresh="1m",
        tags=("platform", "historical"),
        time_from="now-24h",
    )
    b.row("Now (platform database)")
    b.stat(
        "Active deployments",
        "Deployments started and not finished (deployments table: completed_at null).",
        "short",
        [Q(f"sum({ONCE} (telltale_terraform_deployments_active))", "active")],
    )
    b.stat(
        "Success ratio, last 24 h",
        "Completed / (completed + failed) among deployments finished in the last 24 hours.",
        "percentunit",
        [
            Q(
                f'sum({ONCE} (telltale_terraform_deployments_last_24h{{status="completed"}})) '
                f"/ sum({ONCE} (telltale_terraform_deployments_last_24h))",
                "success",
            )
        ],
    )
    b.stat(
        "Average duration, last 24 h",
        "Average duration of the deployments completed in the last 24 hours (0 when none).",
        "s",
        [Q(once("telltale_terraform_deployment_duration_seconds_avg"), "average")],
    )
    b.stat(
        "Terraform binary",
        "1 when `terraform version` ran on the exporter's host (TELLTALE_TERRAFORM_BINARY).",
        "none",
        [
            Q(
                "telltale_terraform_up",
                "{{instance}}",
                empty="present only when TELLTALE_TERRAFORM_BINARY is set",
            )
        ],
        thresholds=UP_DOWN,
    )
    b.timeseries(
        "Finished in the last 24 h by status",
        "Deployments finished in the last 24 hours, completed and failed (platform database).",
        "short",
        [Q(f"sum by (status) ({ONCE} (telltale_terraform_deployments_last_24h))", "{{status}}")],
    )
    b.timeseries(
        "Finished in the last hour by status",
        "Deployments finished in the last hour (exporter SQL query deployments_last_hour).",
        "short",
        [Q(f"sum by (status) ({ONCE} (telltale_sql_deployments_last_hour))", "{{status}}")],
    )

    b.row("Events (POST /api/v1/events)")
    b.timeseries(
        "Deployments by status",
        "Deployment events per second by status (started, completed, failed).",
        "ops",
        [Q("sum by (status) (rate(telltale_deployments_total[$__rate_interval]))", "{{status}}")],
        stack=True,
    )
    b.timeseries(
        "Deployment success ratio",
        "Completed / (completed + failed) deployment events in each interval.",
        "percentunit",
        [
            Q(
                'sum(rate(telltale_deployments_total{status="completed"}[$__rate_interval])) '
                '/ sum(rate(telltale_deployments_total{status=~"completed|failed"}[$__rate_interval]))',
                "success",
            )
        ],
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Deployment duration p50 / p95 by provider",
        "Duration quantiles of finished deployments, from the events' duration_seconds.",
        "s",
        [
            Q(
                "histogram_quantile(0.5, sum by (provider, le) "
                "(rate(telltale_deployment_duration_seconds_bucket[$__rate_interval])))",
                "p50 {{provider}}",
            ),
            Q(
                "histogram_quantile(0.95, sum by (provider, le) "
                "(rate(telltale_deployment_duration_seconds_bucket[$__rate_interval])))",
                "p95 {{provider}}",
            ),
        ],
    )
    b.timeseries(
        "Failed deployments by provider",
        "Failed deployment events per provider in each interval; DeploymentFailed warns on any.",
        "short",
        [
            Q(
                'sum by (provider) (increase(telltale_deployments_total{status="failed"}[$__rate_interval]))',
                "{{provider}}",
                empty=NO_FAILURE,
            )
        ],
    )
    b.timeseries(
        "Deployments per hour",
        "Deployment events per hour by status (recording rule organization_status:telltale_deployments:"
        "increase1h, kept a year in the long-term store).",
        "short",
        [Q("sum by (status) (organization_status:telltale_deployments:increase1h)", "{{status}}")],
        width=24,
    )
    return b
