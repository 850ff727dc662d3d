"""The Prometheus HA pair and the long-term store, with real processes: `Stack(replicas=2)` from
scripts/stack runs two Prometheus replicas (Debian's 2.42) on the shipped prometheus.yml, rules and
PROMETHEUS_REPLICA=A/B, one Alertmanager, VictoriaMetrics 1.79, the service, the exporter over a demo
PostgreSQL and Redis, node-exporter and blackbox-exporter. Scrapes and evaluations every second; the
long-term store deduplicates per 2 s. Slack, PagerDuty and email are local sinks (they cannot run here).

An always-firing rule file, added only here, gives both replicas the same alert to send.
Prints the figures docs/scaling.md quotes: series per scrape, scrape time, remote-write volume.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
import pytest
import yaml

from scripts.stack import FAST, Stack
from scripts.stack.render import PROMETHEUS_YML, RULES_DIR

pytestmark = pytest.mark.slow

DEDUP_SECONDS = 2
PROBE = "StackHAProbe"
PROBE_RULES = yaml.safe_dump(
    {
        "groups": [
            {
                "name": "stack-ha-probe",
                "rules": [
                    {
                        "alert": PROBE,
                        "expr": "vector(1)",
                        "labels": {"severity": "info", "team": "platform", "component": "prometheus"},
                        "annotations": {"summary": "always firing: the HA pair test's alert"},
                    }
                ],
            }
        ]
    }
)
CONFIG = yaml.safe_load(PROMETHEUS_YML.read_text())
[LONGTERM] = CONFIG["remote_write"]
KEEP = re.compile(next(r["regex"] for r in LONGTERM["write_relabel_configs"] if r["action"] == "keep"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    timing = replace(FAST, dedup=f"{DEDUP_SECONDS}s")
    with Stack(replicas=2, timing=timing, extra_rules={"stack-ha-probe.yml": PROBE_RULES}) as s:
        s.traffic()
        yield s


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def get(url: str, **params: str) -> Any:
    """The `data` of a Prometheus-API answer (Prometheus and VictoriaMetrics alike)."""
    r = httpx.get(url, params=params, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def shipped_groups() -> set[str]:
    return {g["name"] for p in RULES_DIR.glob("*.yml") for g in yaml.safe_load(p.read_text())["groups"]}


def recording_names() -> set[str]:
    doc = yaml.safe_load((RULES_DIR / "recording.yml").read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"]}


def test_both_replicas_evaluate_every_rule_group(stack: Stack) -> None:
    for replica in stack.prometheus:

        def evaluated(url: str = replica.url) -> bool:
            groups = get(f"{url}/api/v1/rules")["groups"]
            return bool(groups) and all(not g["lastEvaluation"].startswith("0001") for g in groups)

        wait_until(f"{replica.name}: every group evaluated", evaluated)
        groups = get(f"{replica.url}/api/v1/rules")["groups"]
        assert {g["name"] for g in groups} == shipped_groups() | {"stack-ha-probe"}
        broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
        assert not broken, f"{replica.name}: {broken}"


def test_both_replicas_fire_and_alertmanager_keeps_one_alert(stack: Stack) -> None:
    for i, replica in enumerate(stack.prometheus):
        wait_until(f"{replica.name}: {PROBE} firing", partial(stack.query, f'ALERTS{{alertname="{PROBE}"}}', i))

    def probe_alerts() -> list[dict]:
        r = httpx.get(f"{stack.alertmanager.url}/api/v2/alerts", params={"filter": f'alertname="{PROBE}"'})
        return r.json()

    wait_until(f"{PROBE} in Alertmanager", probe_alerts)
    # each replica has sent its alerts (the probe fires on the first evaluation, so it was in the first
    # batch) to the one Alertmanager, without error
    for i, replica in enumerate(stack.prometheus):
        instance = f'instance="127.0.0.1:{replica.port}"'
        wait_until(
            f"{replica.name} sent notifications",
            partial(stack.query, f"prometheus_notifications_sent_total{{{instance}}} > 0", i),
        )
        errors = stack.query(f"prometheus_notifications_errors_total{{{instance}}}", i)
        assert errors and all(float(e["value"][1]) == 0 for e in errors), replica.name
    alerts = probe_alerts()
    assert len(alerts) == 1, f"one alert per fingerprint, not one per replica: {[a['labels'] for a in alerts]}"
    [alert] = alerts
    assert "replica" not in alert["labels"]
    assert alert["labels"]["cluster"] == "telltale-production"
    # one notification group, one alert in it (the title counts the firing alerts)
    wait_until(f"{PROBE} on #alerts-info", lambda: info_titles(stack))
    assert all("[FIRING:1]" in title for title in info_titles(stack)), info_titles(stack)


def info_titles(stack: Stack) -> list[str]:
    return [
        a.get("title", "")
        for m in stack.sink.messages("/slack")
        if m.get("channel") == "#alerts-info"
        for a in m.get("attachments", [])
        if PROBE in a.get("title", "")
    ]


# Aggregates the demo data and traffic give a value within seconds (a 1h/1d window needs two samples).
EXPECTED = (
    "job:http_requests:rate1h",
    "job:http_request_duration_seconds:p95_1h",
    "job:up:avg1d",
    "instance:node_cpu_utilisation:rate1h",
    "queue:telltale_queue_depth:max1h",
    "datname:telltale_postgres_database_size_bytes:max1d",
    "organization_status:telltale_deployments:increase1h",
)


def test_longterm_store_answers_promql_for_the_aggregates_only(stack: Stack) -> None:
    for name in EXPECTED:
        wait_until(f"{name} in VictoriaMetrics", partial(stack.longterm_query, name))
    assert [r for r in stack.longterm_query("job:http_requests:rate1h") if float(r["value"][1]) > 0]
    assert len(stack.longterm_query("job:up:avg1d")) >= 5  # telltale, exporter, node, blackbox, prometheus
    stored = set(get(f"{stack.victoriametrics.url}/api/v1/label/__name__/values"))
    in_prometheus = set(get(f"{stack.prometheus[0].url}/api/v1/label/__name__/values"))
    raw = {n for n in in_prometheus if ":" not in n}
    slo = {n for n in in_prometheus if ":slo_" in n}
    assert len(raw) > 300 and slo, "Prometheus itself holds the raw series and the SLO ratios"
    assert stored <= recording_names(), f"not an hourly/daily aggregate: {stored - recording_names()}"
    assert not stored & raw and not stored & slo
    print(
        f"\nlong-term store: {len(stored)} of {len(recording_names())} aggregates; not yet recorded here: "
        f"{sorted(recording_names() - stored)}"
    )


def test_longterm_store_holds_each_series_once(stack: Stack) -> None:
    """Both replicas write the same aggregates: without `replica` they are one series, and VictoriaMetrics
    keeps one sample per series and dedup interval where the two replicas wrote two."""
    vm = stack.victoriametrics.url
    window = 20
    samples = f'count_over_time(job:up:avg1h{{job="telltale"}}[{window}s])'
    wait_until(f"{window} s of aggregates", lambda: stack.query(f"{samples} >= {window * 3 // 4}"))
    series = get(f"{vm}/api/v1/series", **{"match[]": '{__name__=~".+"}'})
    assert series and all("replica" not in s for s in series)
    assert all(s["cluster"] == "telltale-production" for s in series)
    # as many series per name as one replica records, not twice as many
    for name in ("job:up:avg1h", "job_route:http_requests:rate1h", "check:telltale_health_check_healthy:avg1h"):
        assert len(stack.longterm_query(name)) == len(stack.query(name, 0)) == len(stack.query(name, 1)), name
    # each replica wrote (samples sent by remote-write, per replica)
    for replica in stack.prometheus:
        sent = stack.query(f'prometheus_remote_storage_samples_total{{instance="127.0.0.1:{replica.port}"}}')
        assert sent and float(sent[0]["value"][1]) > 0, replica.name
    one_replica = float(stack.query(samples)[0]["value"][1])
    stored = float(stack.longterm_query(samples)[0]["value"][1])
    assert stored < one_replica  # fewer samples than even one replica wrote: one per dedup interval
    assert stored <= window / DEDUP_SECONDS + 1, f"{stored} samples in {window}s: not deduplicated"


def test_figures_for_the_scaling_docs(stack: Stack) -> None:
    """Not a limit, a measurement: printed for docs/scaling.md."""

    wait_until(
        "30 s of samples on each replica",
        lambda: len(stack.query('time() - process_start_time_seconds{job="prometheus"} > 32')) == 2,
    )

    def by_job(promql: str) -> dict[str, float]:
        return {r["metric"]["job"]: float(r["value"][1]) for r in stack.query(promql)}

    samples = by_job("max by (job) (scrape_samples_scraped)")
    slowest = by_job("max by (job) (max_over_time(scrape_duration_seconds[30s]))")
    typical = by_job("max by (job) (quantile_over_time(0.5, scrape_duration_seconds[30s]))")
    assert samples["telltale"] > 0 and samples["telltale-exporter"] > 0
    appended = stack.query("sum by (instance) (rate(prometheus_tsdb_head_samples_appended_total[30s]))")
    written = stack.query(
        'sum by (instance) (rate(prometheus_remote_storage_samples_total{remote_name="longterm"}[30s]))'
    )
    sent_bytes = stack.query(
        'sum by (instance) (rate(prometheus_remote_storage_bytes_total{remote_name="longterm"}[30s]))'
    )
    stored = get(f"{stack.victoriametrics.url}/api/v1/series", **{"match[]": '{__name__=~".+"}'})
    print("\nseries per scrape, scrape time median / slowest over 30 s, by job:")
    for job in sorted(samples):
        print(
            f"  {job:<18} {samples[job]:>6.0f} series  {typical.get(job, 0) * 1000:6.1f} ms"
            f" / {slowest.get(job, 0) * 1000:6.1f} ms"
        )
    for a, w, b in zip(appended, written, sent_bytes, strict=False):
        print(
            f"  {a['metric']['instance']}: appends {float(a['value'][1]):.0f} samples/s, remote-writes "
            f"{float(w['value'][1]):.1f} samples/s ({float(b['value'][1]):.0f} B/s) at 1 s evaluation"
        )
    print(f"  long-term store: {len(stored)} series")
