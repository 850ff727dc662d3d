"""The Grafana dashboards (grafana/dashgen -> grafana/dashboards): the committed JSON is what the code
generates, a lint in the spirit of grafana/dashboard-linter, and thresholds equal to the alert rules'.

Grafana itself cannot run here; every expression is parsed by the real promtool instead, and
tests/test_dashboard_queries.py evaluates them against a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.dashgen.catalog import known_metrics
from grafana.dashgen.generate import boards, write
from grafana.dashgen.queries import panel_queries, to_promql
from tests.replica_lint import per_replica, replica_counted

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "grafana" / "dashboards"
RULES = ROOT / "prometheus" / "rules"
RATE_LIKE = ("rate", "irate", "increase")
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
               "offset", "inf", "nan"}  # fmt: skip


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.relative_to(COMMITTED).as_posix(): json.loads(p.read_text()) for p in sorted(COMMITTED.glob("*/*.json"))}


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p["type"] != "row"]


DASHBOARDS = _dashboards()


def _targets() -> list[tuple[str, str, str]]:
    """(uid, panel title, expression) of every panel query of the committed JSON."""
    return [(d["uid"], p["title"], t["expr"]) for d in DASHBOARDS.values() for p in _panels(d) for t in p["targets"]]


def _variable_selectors() -> list[tuple[str, str, str]]:
    """(uid, variable name, series selector) of every `label_values(selector, label)` query variable."""
    out = []
    for d in DASHBOARDS.values():
        for var in d["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]\w*)\)", var["query"])
                assert m, f"{d['uid']}: variable {var['name']}: {var['query']}"
                out.append((d["uid"], var["name"], m.group(1)))
    return out


def _call_arguments(expr: str, functions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(function, argument text) of every call to one of `functions`, parentheses balanced."""
    found = []
    for m in re.finditer(r"\b(" + "|".join(functions) + r")\s*\(", expr):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            i += 1
        found.append((m.group(1), expr[m.end() : i - 1]))
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: bare names, and `__name__` matchers' alternatives."""
    names: set[str] = set()
    for alternatives in re.findall(r'__name__\s*=~?\s*"([^"]*)"', expr):
        names.update(alternatives.split("|"))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        if m.group(1).lower() not in NOT_METRICS:
            names.add(m.group(1))
    return names


# --- (1) drift ------------------------------------------------------------------------------------
def test_the_committed_dashboards_are_what_the_code_generates(tmp_path: Path) -> None:
    write(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in sorted(tmp_path.glob("*/*.json"))}
    committed = {p.relative_to(COMMITTED).as_posix(): p.read_text() for p in sorted(COMMITTED.glob("*/*.json"))}
    assert generated.keys() == committed.keys(), "run `make dashboards` and commit grafana/dashboards"
    for rel, text in generated.items():
        assert text == committed[rel], f"{rel} differs from the code: run `make dashboards` and commit it"


def test_generation_removes_dashboards_the_code_no_longer_makes(tmp_path: Path) -> None:
    (tmp_path / "Old").mkdir()
    (tmp_path / "Old" / "gone.json").write_text("{}")
    write(tmp_path)
    assert not (tmp_path / "Old" / "gone.json").exists()


def test_the_issue_dashboards_are_all_there() -> None:
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert titles >= {"System overview", "Resources", "Queues", "Terraform / deployments", "Organization",
                      "Payments", "Security", "Business", "Database", "SLO", "Telltale itself"}  # fmt: skip
    organization = next(d for d in DASHBOARDS.values() if d["title"] == "Organization")
    assert "organization" in {v["name"] for v in organization["templating"]["list"]}


# --- (2) lint -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", DASHBOARDS)
def test_every_panel_has_a_unit_and_a_description(rel: str) -> None:
    for panel in _panels(DASHBOARDS[rel]):
        assert panel.get("description", "").strip(), f"{rel}: {panel['title']} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{rel}: {panel['title']} has no unit"


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_a_datasource_variable_is_used_by_every_panel_target_and_variable(rel: str) -> None:
    doc = DASHBOARDS[rel]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == "telltale-prometheus"
    ref = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _panels(doc):
        assert panel["datasource"] == ref, f"{rel}: {panel['title']}"
        assert panel["targets"], f"{rel}: {panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == ref, f"{rel}: {panel['title']} {target['refId']}"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == ref, f"{rel}: variable {var['name']}"


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_rates_use_the_rate_interval(rel: str) -> None:
    """rate/irate/increase over `$__rate_interval`; `increase` may also total the dashboard's `$__range`."""
    for panel in _panels(DASHBOARDS[rel]):
        for target in panel["targets"]:
            for function, argument in _call_arguments(target["expr"], RATE_LIKE):
                window = re.findall(r"\[([^\]]*)\]\s*$", argument)
                allowed = {"$__rate_interval"} | ({"$__range"} if function == "increase" else set())
                assert window and window[0] in allowed, f"{rel}: {panel['title']}: {function}({argument})"


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_counters_are_only_used_inside_rate_functions(rel: str) -> None:
    for panel in _panels(DASHBOARDS[rel]):
        for target in panel["targets"]:
            expr = target["expr"]
            for _, argument in _call_arguments(expr, RATE_LIKE):
                expr = expr.replace(argument, "")
            bare = [n for n in metric_names(expr) if n.endswith(COUNTER_SUFFIXES)]
            assert not bare, f"{rel}: {panel['title']} uses counters {bare} outside rate/irate/increase"


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_platform_wide_exporter_series_are_counted_once_whatever_the_replicas(rel: str) -> None:
    """The exporter is a sidecar of every Telltale pod: sum/count/avg collapse its copies first."""
    for panel in _panels(DASHBOARDS[rel]):
        for target in panel["targets"]:
            problems = replica_counted(target["expr"])
            assert not problems, f"{rel}: {panel['title']}: {problems} in {target['expr']}"


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_platform_wide_exporter_series_are_drawn_once_unless_the_panel_is_per_exporter(rel: str) -> None:
    """Two pods would draw two identical lines (or two numbers in a stat) under one legend; a panel that
    means to show each exporter says so with `{{instance}}` in its legend."""
    for panel in _panels(DASHBOARDS[rel]):
        for target in panel["targets"]:
            if "{{instance}}" in target.get("legendFormat", ""):
                continue
            shown = per_replica(target["expr"])
            assert not shown, f"{rel}: {panel['title']}: {sorted(shown)} once per exporter in {target['expr']}"


def test_the_replica_lint_sees_what_it_must() -> None:
    counted = [
        "sum(telltale_queue_depth)",
        'sum by (status) (telltale_sql_payments_last_hour{status="failed"})',
        "count(telltale_sql_organization_servers > 0)",
        "sum(rate(telltale_redis_keyspace_hits_total[5m])) / sum(rate(telltale_redis_keyspace_misses_total[5m]))",
        "sum(max by (job, instance) (telltale_queue_depth))",  # keeps the replicas apart
        "sum(max without (instance) (telltale_queue_depth))",  # the pod label still differs
        '{__name__=~"x"} * on () group_left sum(telltale_terraform_deployments_active)',
        "topk(10, telltale_postgres_statement_mean_duration_seconds)",
    ]
    once = [
        "sum(max without (instance, pod) (telltale_queue_depth))",
        "sum by (queue) (max by (queue, backend) (telltale_queue_depth))",
        "count(max by (organization) (telltale_sql_organization_servers) > 0)",
        "sum by (job, instance) (telltale_postgres_connections)",  # one answer per exporter
        "max(telltale_postgres_max_connections)",
        "sum(telltale_disk_size_bytes)",  # per host
        "sum(telltale_terraform_up)",  # the local binary's
        "sum(rate(http_requests_total[5m]))",
    ]
    for expr in counted:
        assert replica_counted(expr), expr
    for expr in once:
        assert not replica_counted(expr), expr
    assert per_replica("telltale_queue_depth + telltale_disk_used_ratio") == {"telltale_queue_depth"}
    assert per_replica("rate(telltale_redis_commands_processed_total[5m])") == {
        "telltale_redis_commands_processed_total"
    }
    assert not per_replica("max without (instance, pod) (rate(telltale_redis_commands_processed_total[5m]))")
    assert not per_replica('min by (organization) ({__name__=~"telltale_sql_license_expiry_timestamp_seconds"})')


@pytest.mark.parametrize("rel", DASHBOARDS)
def test_panels_fit_the_24_column_grid_without_overlapping(rel: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in DASHBOARDS[rel]["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, f"{rel}: {panel['title']} runs past the grid"
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in taken, f"{rel}: {panel['title']} overlaps {taken[cell]}"
            taken[cell] = panel["title"]


def test_uids_are_fixed_unique_and_name_the_file() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))
    for rel, doc in DASHBOARDS.items():
        assert re.fullmatch(r"telltale-[a-z-]+", doc["uid"]) and rel.endswith(f"/{doc['uid']}.json")


def test_refresh_is_5s_on_realtime_and_1m_on_historical_dashboards() -> None:
    for rel, doc in DASHBOARDS.items():
        expected = {"realtime": "5s", "historical": "1m"}
        kinds = [k for k in expected if k in doc["tags"]]
        assert len(kinds) == 1, f"{rel} is tagged neither realtime nor historical"
        assert doc["refresh"] == expected[kinds[0]], rel


def test_dashboards_link_to_each_other_by_tag_keeping_time_and_variables() -> None:
    for rel, doc in DASHBOARDS.items():
        assert "telltale" in doc["tags"]
        (link,) = doc["links"]
        assert link["type"] == "dashboards" and link["tags"] == ["telltale"], rel
        assert link["keepTime"] and link["includeVars"], rel


def test_every_metric_a_query_names_is_known() -> None:
    known = known_metrics()
    for uid, where, expr in _targets() + _variable_selectors():
        unknown = metric_names(expr) - known
        assert not unknown, f"{uid}: {where}: unknown metric(s) {unknown} in {expr}"


def test_the_metric_name_extraction_sees_what_it_must() -> None:
    expr = (
        'sum by (job, le) (rate(a_total{x="b_total"}[$__rate_interval])) / on (job) '
        '{__name__=~"c|d_total"} > bool 0 and time() - e'
    )
    assert metric_names(expr) == {"a_total", "c", "d_total", "e"}


def test_every_expression_parses(tmp_path: Path) -> None:
    """Each panel query and variable selector, variables substituted, in a rule file promtool checks."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `make system-deps`")
    exprs = [to_promql(e, {"instance": ["a:1"], "organization": "$__all"}) for _, _, e in _targets()]
    exprs += [to_promql(selector) for _, _, selector in _variable_selectors()]
    rules = [{"record": f"dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_to_promql_substitutes_grafana_variables() -> None:
    expr = 'rate(x{o=~"$organization", i=~"${instance}"}[$__rate_interval]) + increase(y[$__range])'
    assert to_promql(expr, {"organization": ["a.b", "c"], "instance": "$__all"}, rate_interval="2m", range_="6h") == (
        'rate(x{o=~"a\\.b|c", i=~".*"}[2m]) + increase(y[6h])'
    )


def test_queries_that_may_be_empty_say_why() -> None:
    queries = panel_queries()
    empty = [q for q in queries if q.may_be_empty is not None]
    assert empty and len(empty) < len(queries) / 4
    print(f"\n{len(empty)} of {len(queries)} panel queries may legitimately be empty:")
    for q in empty:
        assert len(q.may_be_empty or "") > 10
        print(f"  {q.uid} / {q.panel} [{q.ref_id}]: {q.may_be_empty}")


# --- (3) thresholds are the alert rules' numbers ------------------------------------------------------
@cache
def _rules_by_alert() -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    by.setdefault(rule["alert"], []).append(rule)
    return by


def _numbers(expr: str) -> set[float]:
    """Every constant an expression compares against or divides by (`> 3 * 86400` gives 259200)."""
    out = set()
    for m in re.finditer(r"(?:[<>]=?|==|/)\s*([\d.]+(?:\s*\*\s*[\d.]+)*)(?![\w.])", expr):
        value = 1.0
        for factor in m.group(1).split("*"):
            value *= float(factor)
        out.add(value)
    return out


def _steps(doc: dict[str, Any], title: str) -> list[float]:
    panel = next(p for p in _panels(doc) if p["title"] == title)
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]


def test_thresholds_are_numbers_of_the_alert_rules_they_name() -> None:
    rules = _rules_by_alert()
    checked = 0
    for board in boards():
        doc = board.build()
        for title, alerts in board.threshold_alerts.items():
            allowed: set[float] = set()
            for alert in alerts:
                assert alert in rules, f"{board.uid}: {title} names unknown alert {alert}"
                for rule in rules[alert]:
                    numbers = _numbers(rule["expr"])
                    allowed |= numbers | {round(1 - n, 6) for n in numbers if n < 1}  # SLO objective
                assert alert in next(p for p in _panels(doc) if p["title"] == title)["description"]
            steps = _steps(doc, title)
            assert steps and set(steps) <= allowed, f"{board.uid}: {title}: {steps} not in {sorted(allowed)}"
            checked += 1
    assert checked >= 20


def _severity_threshold(alert: str, severity: str) -> float:
    (rule,) = [r for r in _rules_by_alert()[alert] if r["labels"]["severity"] == severity]
    m = re.search(r"[<>]\s*([\d.]+)\s*$", re.split(r"\band\b", rule["expr"])[0].strip())
    assert m, rule["expr"]
    return float(m.group(1))


@pytest.mark.parametrize(
    ("uid", "title", "alert"),
    [
        ("telltale-overview", "Error ratio", "HighErrorRate"),
        ("telltale-overview", "Latency p50 / p95 / p99 by route", "HighResponseTime"),
        ("telltale-resources", "CPU utilisation", "HighCPUUsage"),
        ("telltale-resources", "Memory utilisation", "HighMemoryUsage"),
        ("telltale-resources", "Disk used (exporter paths)", "DiskSpaceLow"),
        ("telltale-payments", "Failure ratio by organization", "PaymentFailureRate"),
        ("telltale-security", "Failed logins per minute", "FailedLoginSpike"),
        ("telltale-database", "Connections used", "DatabaseConnectionsHigh"),
        ("telltale-database", "Buffer cache hit ratio", "LowDatabaseCacheHitRatio"),
        ("telltale-queues", "Depth", "HighQueueDepth"),
    ],
)
def test_a_panel_has_exactly_its_alerts_warning_and_critical_numbers(uid: str, title: str, alert: str) -> None:
    doc = next(d for d in DASHBOARDS.values() if d["uid"] == uid)
    expected = sorted(_severity_threshold(alert, r["labels"]["severity"]) for r in _rules_by_alert()[alert])
    assert sorted(_steps(doc, title)) == expected


def test_burn_rate_panels_carry_the_slo_alerts_factors() -> None:
    doc = next(d for d in DASHBOARDS.values() if d["uid"] == "telltale-slo")
    factors: set[float] = set()
    for rule in _rules_by_alert()["ErrorBudgetBurn"]:
        factors |= {float(x) for x in re.findall(r">\s*([\d.]+)", rule["expr"])}
    assert sorted(_steps(doc, "Availability burn rate")) == sorted(factors) == [1, 3, 6, 14.4]
    windows = [t["legendFormat"] for p in _panels(doc) if p["title"] == "Availability burn rate" for t in p["targets"]]
    assert windows == ["5m", "30m", "1h", "6h", "1d", "3d"]
