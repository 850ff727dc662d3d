"""Every panel query of every dashboard, and how to turn one into plain PromQL.

`panel_queries()` lists each query with its dashboard uid, panel title, refId and, when it may
legitimately return nothing on a healthy system, why. `to_promql()` substitutes Grafana's variables
for given values, so a query can be sent to a real Prometheus (tests/test_dashboard_queries.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .generate import boards


@dataclass(frozen=True)
class PanelQuery:
    uid: str
    panel: str
    ref_id: str
    expr: str
    instant: bool
    may_be_empty: str | None  # the reason, or None: the query must return data


@dataclass(frozen=True)
class VariableQuery:
    """A query variable: Grafana asks the label-values API, `label_values(selector, label)`."""

    uid: str
    name: str
    selector: str
    label: str


def _panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[PanelQuery]:
    out = []
    for board in boards():
        doc = board.build()
        for panel in _panels(doc):
            for t in panel.get("targets", []):
                out.append(
                    PanelQuery(
                        uid=doc["uid"],
                        panel=panel["title"],
                        ref_id=t["refId"],
                        expr=t["expr"],
                        instant=bool(t.get("instant")),
                        may_be_empty=board.empty.get((panel["title"], t["refId"])),
                    )
                )
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


def variable_queries() -> list[VariableQuery]:
    out = []
    for board in boards():
        doc = board.build()
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = _LABEL_VALUES.match(var["query"])
            if not m:
                raise ValueError(f"{doc['uid']}: variable {var['name']} is not label_values(selector, label)")
            out.append(VariableQuery(doc["uid"], var["name"], m["selector"], m["label"]))
    return out


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", value)


def to_promql(
    expr: str,
    variables: Mapping[str, str | list[str]] | None = None,
    *,
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "1h",
) -> str:
    """The query Grafana would send, for the given variable values.

    A list value (multi-value variable) becomes a regex alternation of the escaped values; the string
    "$__all" (or a missing variable) becomes `.*`, the variables' "All" value. `$datasource` only
    chooses the data source and never appears in an expression."""
    variables = dict(variables or {})
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    range_s = int(float(range_[:-1]) * seconds[range_[-1]])
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }

    def value(name: str) -> str:
        if name in builtins:
            return builtins[name]
        v = variables.get(name, "$__all")
        if v == "$__all":
            return ".*"
        if isinstance(v, list):
            return "|".join(_regex_escape(x) for x in v) if len(v) != 1 else _regex_escape(v[0])
        return _regex_escape(v)

    def sub(m: re.Match[str]) -> str:
        return value(m.group(1) or m.group(2))

    # ${name}, ${name:format} and $name (longest names first through the regex's greediness).
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)
