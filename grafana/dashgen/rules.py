"""The alert rules' own numbers, read from prometheus/rules/*.yml, so a dashboard's thresholds move with them.

An alert's threshold is the number its expression compares against (`> 0.05`, `< 3 * 86400`); alerts with a
warning and a critical twin give one number per severity. The SLO error budgets are the divisors of the
burn-rate alerts (`ratio_rate1h / 0.001 > 14.4`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "prometheus" / "rules"

# A comparison against a constant: `> 0.05`, `>= 10`, `< 3 * 86400` (a product of numbers at most).
_COMPARISON = re.compile(r"(?<![=!<>])(>=|<=|>|<|==)\s*(\d+(?:\.\d+)?(?:\s*\*\s*\d+(?:\.\d+)?)*)(?![\w.])")


def _product(text: str) -> float:
    value = 1.0
    for factor in text.split("*"):
        value *= float(factor)
    return value


@cache
def alert_rules() -> tuple[dict[str, Any], ...]:
    """Every alerting rule of the shipped rule files."""
    rules: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return tuple(rules)


@cache
def recorded_series() -> frozenset[str]:
    """Names of the series the recording rules write."""
    names: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return frozenset(names)


def comparisons(expr: str) -> list[float]:
    """The constants an expression compares against, in order."""
    return [_product(m.group(2)) for m in _COMPARISON.finditer(expr)]


def threshold(alert: str, severity: str, nth: int = 0) -> float:
    """The number the alert of that severity compares against (its threshold); `nth` picks one of several
    (SlowDatabaseQueries: 60 s running, 1 s mean)."""
    for rule in alert_rules():
        if rule["alert"] == alert and rule["labels"]["severity"] == severity:
            found = comparisons(rule["expr"])
            if len(found) <= nth:
                raise ValueError(f"{alert} ({severity}) has no comparison #{nth}")
            return found[nth]
    raise KeyError(f"no {severity} alert named {alert} in {RULES_DIR}")


def burn_rates(alert: str, severity: str) -> list[float]:
    """The burn-rate factors of a multi-window SLO alert, one per (long, short) window pair, in order."""
    for rule in alert_rules():
        if rule["alert"] == alert and rule["labels"]["severity"] == severity:
            return list(dict.fromkeys(comparisons(rule["expr"])))
    raise KeyError(f"no {severity} alert named {alert}")


def error_budget(alert: str) -> float:
    """The error budget an SLO burn-rate alert divides by (`ratio / 0.001`)."""
    for rule in alert_rules():
        if rule["alert"] == alert:
            budgets = set(re.findall(r"ratio_rate\w+\s*/\s*(\d+(?:\.\d+)?)", rule["expr"]))
            if len(budgets) == 1:
                return float(budgets.pop())
    raise KeyError(f"no single error budget in alert {alert}")
