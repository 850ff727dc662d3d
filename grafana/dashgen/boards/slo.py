"""SLO: availability and latency SLIs, error budget left and burn rates per window, as Sloth shows them.

The objectives and burn-rate factors are the ones prometheus/rules/slo.yml alerts on, read from it."""

from __future__ import annotations

from ..board import GREEN, RED, Board, Q, Thresholds, burn_rate_thresholds
from ..rules import error_budget

WINDOWS = ("5m", "30m", "1h", "6h", "1d", "3d")
SLOS = (
    # (name, recorded ratio of bad requests, burn-rate alert, what "bad" means)
    ("Availability", "job:slo_errors_per_request", "ErrorBudgetBurn", "answered with a 5xx"),
    ("Latency", "job:slo_slow_requests", "LatencyBudgetBurn", "slower than 500 ms"),
)


def _objective(budget: float, alert: str) -> Thresholds:
    return Thresholds(((None, RED), (round(1 - budget, 6), GREEN)), (alert,))


def build() -> Board:
    b = Board(
        uid="telltale-slo",
        title="SLO",
        folder="Telltale",
        description="Service level objectives of the Telltale service over 30 days: the SLIs, the error budget "
        "left and how fast it burns per window (multi-window, multi-burn-rate alerts).",
        refresh="1m",
        tags=("service", "slo", "historical"),
        time_from="now-7d",
    )
    for name, ratio, alert, bad in SLOS:
        budget = error_budget(alert)
        sel = f'{ratio}:ratio_rate{{}}{{{{job="telltale"}}}}'
        b.row(f"{name}: objective {100 * (1 - budget):g}% over 30 days")
        b.stat(
            f"{name} SLI (5m)",
            f"Share of requests not {bad} over the last 5 minutes; the objective is {100 * (1 - budget):g}% "
            f"(1 - the error budget {alert} divides by).",
            "percentunit",
            [Q(f"1 - {sel.format('5m')}", "SLI")],
            width=8,
            thresholds=_objective(budget, alert),
        )
        b.stat(
            f"{name} error budget left (30d)",
            f"Share of the 30-day error budget ({100 * budget:g}% of requests {bad}) not yet spent: 1 - the "
            "mean bad ratio over 30 days / the budget. Below 0 the objective is missed. Colours (no alert rule): "
            "red when spent, orange under 25% left.",
            "percentunit",
            [Q(f"1 - avg_over_time({sel.format('5m')}[30d]) / {budget:g}", "budget left")],
            width=8,
            thresholds=Thresholds(((None, RED), (0, "orange"), (0.25, GREEN)), ()),
        )
        b.stat(
            f"{name} error budget left (time range)",
            "The same over the dashboard's time range only (colours: red when spent, orange under 25% left).",
            "percentunit",
            [Q(f"1 - avg_over_time({sel.format('5m')}[$__range]) / {budget:g}", "budget left")],
            width=8,
            thresholds=Thresholds(((None, RED), (0, "orange"), (0.25, GREEN)), ()),
        )
        b.stat(
            f"{name} burn rate now",
            "How many times faster than sustainable the budget burns, per window: 1x spends exactly the budget "
            f"in 30 days. {alert} pages at the two highest factors (1h with 5m, 6h with 30m) and tickets at "
            "the two lowest (1d with 2h, 3d with 6h).",
            "suffix:x",
            [Q(f"{sel.format(w)} / {budget:g}", w) for w in WINDOWS],
            width=24,
            thresholds=burn_rate_thresholds(alert),
        )
        b.timeseries(
            f"{name} SLI",
            f"Share of requests not {bad}, over 5 minutes and 1 hour, against the objective (1 - {alert}'s "
            "error budget).",
            "percentunit",
            [Q(f"1 - {sel.format(w)}", w) for w in ("5m", "1h")],
            thresholds=_objective(budget, alert),
        )
        b.timeseries(
            f"{name} burn rate",
            f"Burn rate over each window; the dashed lines are {alert}'s factors.",
            "suffix:x",
            [Q(f"{sel.format(w)} / {budget:g}", w) for w in WINDOWS],
            thresholds=burn_rate_thresholds(alert),
        )
    return b
