"""Finds PromQL aggregations that count a platform-wide exporter series once per exporter replica.

The exporter runs beside every Telltale replica (a sidecar in Kubernetes, 2-6 pods), and each copy
reports the same database, Redis, queues and SQL results: the same series, once per `instance`/`pod`.
A `sum`, `count` or `avg` over them must first collapse the copies (`max without (instance, pod)`, or a
`max`/`min by` the series' own labels), or keep `instance` in its grouping (one answer per exporter).
Per-exporter series (disk, Docker engine, terraform binary, the exporter's own collector metrics)
differ by host and are summed as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the exporter reads from shared systems: PostgreSQL, Redis, the queues, the operator's SQL
# queries, and the deployments table (telltale_terraform_deployment*; terraform_up/info are the local
# binary's, per host).
PLATFORM_WIDE = re.compile(
    r"\btelltale_(?:postgres|redis|queue|sql)_[a-z0-9_]+|\btelltale_terraform_deployment[a-z0-9_]*"
)
REPLICA_LABELS = {"instance", "pod"}
SUMMING = {"sum", "count", "avg", "topk", "bottomk", "quantile", "stddev", "stdvar", "count_values", "group"}
COLLAPSING = {"max", "min"}
_AGGREGATION = re.compile(
    r"\b(?P<op>" + "|".join(sorted(SUMMING | COLLAPSING)) + r")\s*"
    r"(?:(?P<pre>by|without)\s*\((?P<pre_labels>[^)]*)\)\s*)?\("
)
_TRAILING = re.compile(r"\s*(?P<kind>by|without)\s*\((?P<labels>[^)]*)\)")


@dataclass(frozen=True)
class Aggregation:
    op: str
    grouping: str | None  # "by", "without" or None
    labels: frozenset[str]
    start: int  # of the operator
    arg_start: int  # after the opening parenthesis
    arg_end: int  # at the closing parenthesis

    def collapses_replicas(self) -> bool:
        """A max/min that leaves no replica label: one series per identity, whatever the replicas."""
        if self.op not in COLLAPSING:
            return False
        if self.grouping == "without":
            return REPLICA_LABELS <= self.labels
        return not (self.labels & REPLICA_LABELS)  # `by (...)` without them, or no grouping at all

    def keeps_instances(self) -> bool:
        return self.grouping == "by" and "instance" in self.labels


def _closing(expr: str, open_at: int) -> int:
    depth, quote = 0, ""
    for i in range(open_at, len(expr)):
        c = expr[i]
        if quote:
            if c == quote and expr[i - 1] != "\\":
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _labels(text: str) -> frozenset[str]:
    return frozenset(x.strip() for x in text.split(",") if x.strip())


def aggregations(expr: str) -> list[Aggregation]:
    out = []
    for m in _AGGREGATION.finditer(expr):
        open_at = m.end() - 1
        end = _closing(expr, open_at)
        grouping, labels = m["pre"], m["pre_labels"]
        if grouping is None and (t := _TRAILING.match(expr, end + 1)):
            grouping, labels = t["kind"], t["labels"]
        out.append(Aggregation(m["op"], grouping, _labels(labels or ""), m.start(), open_at + 1, end))
    return out


def replica_counted(expr: str) -> list[str]:
    """The summing aggregations of `expr` that see a platform-wide series once per exporter replica."""
    found = aggregations(expr)
    problems = []
    for agg in found:
        if agg.op not in SUMMING or agg.keeps_instances():
            continue
        argument = list(expr[agg.arg_start : agg.arg_end])
        for inner in found:
            if agg.arg_start <= inner.start < agg.arg_end and inner.collapses_replicas():
                argument[inner.start - agg.arg_start : inner.arg_end + 1 - agg.arg_start] = " " * (
                    inner.arg_end + 1 - inner.start
                )
        if names := PLATFORM_WIDE.findall("".join(argument)):
            problems.append(f"{agg.op}(...) over {sorted(set(names))} counts each exporter replica")
    return problems


def per_replica(expr: str) -> set[str]:
    """The platform-wide series `expr` shows once per exporter replica: those outside every max/min that
    collapses the replicas. A panel showing them draws the same line or number once per pod."""
    text = list(expr)
    for agg in aggregations(expr):
        if agg.collapses_replicas():
            text[agg.start : agg.arg_end + 1] = " " * (agg.arg_end + 1 - agg.start)
    return set(PLATFORM_WIDE.findall("".join(text)))
