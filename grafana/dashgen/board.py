"""A thin layer over grafana-foundation-sdk that makes the conventions hard to forget.

Every panel is given a description and a unit (they are required arguments), the `datasource` variable on
the panel and on each query, and an id and grid position; a query may say why it can legitimately return
nothing, and a panel whose thresholds come from an alert rule says which (tests check both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode, StackingMode

from . import rules

DATASOURCE_UID = "telltale-prometheus"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "telltale"
# The exporter runs beside every Telltale replica, so each of its platform-wide series (PostgreSQL, Redis,
# queues, SQL queries, deployments) exists once per replica: a sum keeps one copy first (tests/replica_lint.py).
ONCE = "max without (instance, pod)"


def once(expr: str) -> str:
    return f"{ONCE} ({expr})"


# The `organization` variable's selector, on every per-tenant board.
ORG = 'organization=~"$organization"'


def payment_failure_ratio() -> str:
    """Failed payments / all payments per organization; 0 (not empty) for an organization with no failure yet."""
    payments = f"sum by (organization) (rate(telltale_payments_total{{{ORG}}}[$__rate_interval]))"
    failed = f'sum by (organization) (rate(telltale_payments_total{{{ORG}, status="failed"}}[$__rate_interval]))'
    return f"({failed} or {payments} * 0) / {payments}"


GREEN, ORANGE, RED, YELLOW, DARK_RED = "green", "orange", "red", "yellow", "dark-red"
_SEVERITY_COLOUR = {"info": YELLOW, "warning": ORANGE, "critical": RED}


@dataclass(frozen=True)
class Q:
    """One PromQL query of a panel; `empty` says why it may return no series on a healthy system."""

    expr: str
    legend: str = ""
    empty: str | None = None
    exemplars: bool = False  # show the histogram's exemplars: a click on one opens its trace in Tempo


@dataclass(frozen=True)
class Thresholds:
    """Threshold steps (the first is the base, value None) and the alert rules they were read from."""

    steps: tuple[tuple[float | None, str], ...]
    alerts: tuple[str, ...] = ()

    def builder(self) -> sdk.ThresholdsConfig:
        return (
            sdk.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in self.steps])
        )


def _severities(alert: str, nth: int = 0) -> list[tuple[str, float]]:
    found = []
    for severity in _SEVERITY_COLOUR:
        try:
            found.append((severity, rules.threshold(alert, severity, nth)))
        except KeyError:
            continue
    if not found:
        raise KeyError(f"no alert {alert}")
    return found


def above(alert: str, nth: int = 0) -> Thresholds:
    """Green below the alert's warning number, orange from it, red from its critical one (`nth`: which
    comparison of the rule's expression, when it has several)."""
    steps: list[tuple[float | None, str]] = [(None, GREEN)]
    steps += [(value, _SEVERITY_COLOUR[sev]) for sev, value in sorted(_severities(alert, nth), key=lambda s: s[1])]
    return Thresholds(tuple(steps), (alert,))


def below(alert: str, nth: int = 0) -> Thresholds:
    """For alerts on a value falling (cache hit ratio, days to expiry): the most severe colour at the
    bottom, each rule's number the start of the next, milder colour."""
    levels = sorted(_severities(alert, nth), key=lambda s: s[1])  # lowest number = most severe
    colours = [_SEVERITY_COLOUR[sev] for sev, _ in levels] + [GREEN]
    steps: list[tuple[float | None, str]] = [(None, colours[0])]
    steps += [(value, colours[i + 1]) for i, (_, value) in enumerate(levels)]
    return Thresholds(tuple(steps), (alert,))


def burn_rate_thresholds(alert: str) -> Thresholds:
    """Burn-rate colours at the factors of the multi-window alert (ticket 1x and 3x, page 6x and 14.4x)."""
    factors = sorted(set(rules.burn_rates(alert, "warning")) | set(rules.burn_rates(alert, "critical")))
    colours = [YELLOW, ORANGE, RED, DARK_RED]
    steps: list[tuple[float | None, str]] = [(None, GREEN)]
    steps += [(f, colours[min(i, len(colours) - 1)]) for i, f in enumerate(factors)]
    return Thresholds(tuple(steps), (alert,))


def fixed(*steps: tuple[float | None, str]) -> Thresholds:
    """Thresholds that no alert rule defines (a status colour: 1 is up, 0 is down)."""
    return Thresholds(tuple(steps))


UP_DOWN = fixed((None, RED), (1, GREEN))


@dataclass
class Board:
    """One dashboard being built; `build()` gives the JSON document."""

    uid: str
    title: str
    folder: str
    description: str
    refresh: str
    tags: tuple[str, ...] = ()
    time_from: str = "now-1h"
    empty: dict[tuple[str, str], str] = field(default_factory=dict)
    threshold_alerts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _variables: list[sdk.QueryVariable] = field(default_factory=list)
    _items: list[tuple[str, Any]] = field(default_factory=list)
    _titles: set[str] = field(default_factory=set)

    # --- variables --------------------------------------------------------------------------------
    def variable(self, name: str, label: str, query: str, description: str, *, include_all: bool = True) -> None:
        """A multi-value query variable over the `datasource` variable, 'All' meaning any value (`.*`)."""
        var = (
            sdk.QueryVariable(name)
            .label(label)
            .description(description)
            .datasource(DS)
            .query(query)  # a string Grafana's Prometheus plugin parses itself (label_values(selector, label))
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(include_all)
        )
        if include_all:
            var = var.all_value(".*").current(model.VariableOption(selected=True, text="All", value="$__all"))
        self._variables.append(var)

    # --- panels -----------------------------------------------------------------------------------
    def row(self, title: str) -> None:
        self._items.append(("row", sdk.Row(title)))

    def _targets(self, title: str, queries: list[Q], instant: bool) -> list[prometheus.Dataquery]:
        if title in self._titles:
            raise ValueError(f"{self.uid}: two panels titled {title!r}")
        self._titles.add(title)
        targets = []
        for i, q in enumerate(queries):
            ref = chr(ord("A") + i)
            t = prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(ref).datasource(DS)
            t = t.instant() if instant else t.range()
            if q.exemplars:
                t = t.exemplar(True)
            if q.empty:
                self.empty[(title, ref)] = q.empty
            targets.append(t)
        return targets

    def _common(self, panel: Any, title: str, description: str, unit: str, th: Thresholds | None) -> Any:
        panel = panel.title(title).description(description).unit(unit).datasource(DS)
        if th is not None:
            panel = panel.thresholds(th.builder())
            if th.alerts:
                self.threshold_alerts[title] = th.alerts
        return panel

    def timeseries(
        self,
        title: str,
        description: str,
        unit: str,
        queries: list[Q],
        *,
        width: int = 12,
        height: int = 8,
        thresholds: Thresholds | None = None,
        stack: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        p = timeseries.Panel().span(width).height(height).fill_opacity(10 if not stack else 40)
        p = self._common(p, title, description, unit, thresholds)
        if thresholds is not None:
            p = p.thresholds_style(sdk_common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        if stack:
            p = p.stacking(sdk_common.StackingConfig().mode(StackingMode.NORMAL))
        if min_value is not None:
            p = p.min(min_value)
        if max_value is not None:
            p = p.max(max_value)
        self._items.append(("panel", p.targets(self._targets(title, queries, instant=False))))

    def stat(
        self,
        title: str,
        description: str,
        unit: str,
        queries: list[Q],
        *,
        width: int = 6,
        height: int = 4,
        thresholds: Thresholds | None = None,
        mappings: list[model.ValueMapping] | None = None,
    ) -> None:
        p = stat.Panel().span(width).height(height)
        p = self._common(p, title, description, unit, thresholds or fixed((None, GREEN)))
        if mappings:
            p = p.mappings(mappings)
        self._items.append(("panel", p.targets(self._targets(title, queries, instant=True))))

    # --- the document -----------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        d = (
            sdk.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags([TAG, *self.tags])
            .refresh(self.refresh)
            .time(self.time_from, "now")
            .timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .editable()
            .link(
                sdk.DashboardLink("Telltale dashboards")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
            .with_variable(
                sdk.DatasourceVariable("datasource")
                .label("Data source")
                .description("The Prometheus (or long-term store) every panel queries.")
                .type("prometheus")
                .current(model.VariableOption(selected=True, text=DATASOURCE_UID, value=DATASOURCE_UID))
            )
        )
        for var in self._variables:
            d = d.with_variable(var)
        for kind, item in self._items:
            d = d.with_row(item) if kind == "row" else d.with_panel(item)
        doc: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
        for i, panel in enumerate(doc["panels"], start=1):
            panel["id"] = i
        return doc


def value_map(mapping: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Value mappings: raw value -> (text, colour), e.g. {"1": ("up", "green")}."""
    options = {
        k: model.ValueMappingResult(text=text, color=colour, index=i)
        for i, (k, (text, colour)) in enumerate(mapping.items())
    }
    return [model.ValueMap(options=options)]
