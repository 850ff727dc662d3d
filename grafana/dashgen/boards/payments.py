"""Payments: do payments succeed, per provider and organization, and how much money moves by currency."""

from __future__ import annotations

from ..board import ONCE, ORG, Board, Q, above, payment_failure_ratio

NO_FAILURE = "no payment has failed yet (the failed series appears with the first failure)"


def build() -> Board:
    b = Board(
        uid="telltale-payments",
        title="Payments",
        folder="Business",
        description="Payment events from the platform: success ratio by provider, failures, amounts by currency.",
        refresh="1m",
        tags=("business", "historical"),
        time_from="now-24h",
    )
    b.variable(
        "organization", "Organization", "label_values(telltale_payments_total, organization)", "Paying organizations."
    )
    b.row("Success")
    b.timeseries(
        "Success ratio by provider",
        "Share of payments that succeeded, per payment provider.",
        "percentunit",
        [
            Q(
                f'sum by (provider) (rate(telltale_payments_total{{{ORG}, status="succeeded"}}[$__rate_interval]))'
                f" / sum by (provider) (rate(telltale_payments_total{{{ORG}}}[$__rate_interval]))",
                "{{provider}}",
            )
        ],
        min_value=0,
        max_value=1,
    )
    b.timeseries(
        "Failure ratio by organization",
        "Share of each organization's payments that failed; PaymentFailureRate warns and pages at its numbers "
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
        "Payments by status",
        "Payments per second, succeeded and failed.",
        "ops",
        [Q(f"sum by (status) (rate(telltale_payments_total{{{ORG}}}[$__rate_interval]))", "{{status}}")],
        stack=True,
    )
    b.timeseries(
        "Failures by provider",
        "Failed payments per interval and provider: which provider is failing.",
        "short",
        [
            Q(
                f'sum by (provider) (increase(telltale_payments_total{{{ORG}, status="failed"}}[$__rate_interval]))',
                "{{provider}}",
                empty=NO_FAILURE,
            )
        ],
    )
    b.row("Amounts")
    b.stat(
        "Amount succeeded over the range by currency",
        "Sum of succeeded payment amounts over the dashboard's time range, in each currency's major unit (all "
        "organizations: the amount counter has no organization label).",
        "short",
        [
            Q(
                'sum by (currency) (increase(telltale_payment_amount_total{status="succeeded"}[$__range]))',
                "{{currency}}",
            )
        ],
        width=12,
    )
    b.timeseries(
        "Amount per second by currency",
        "Succeeded and failed payment amounts per second, in each currency's major unit (all organizations).",
        "short",
        [
            Q(
                "sum by (currency, status) (rate(telltale_payment_amount_total[$__rate_interval]))",
                "{{currency}} {{status}}",
            )
        ],
    )
    b.timeseries(
        "Payments in the last hour (platform database)",
        "Payments recorded in the platform's database in the last hour (exporter SQL query payments_last_hour).",
        "short",
        [Q(f"sum by (status) ({ONCE} (telltale_sql_payments_last_hour))", "{{status}}")],
    )
    b.timeseries(
        "Payments per hour",
        "Payment events per hour by status (recording rule organization_status:telltale_payments:increase1h, "
        "kept a year in the long-term store).",
        "short",
        [Q(f"sum by (status) (organization_status:telltale_payments:increase1h{{{ORG}}})", "{{status}}")],
    )
    return b
