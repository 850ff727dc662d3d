"""The shipped logging stack: Loki's config, its ruler's log-based alerts, and the two collector pipelines.

No Loki, Alloy or Promtail binary can run on this machine (none is packaged for Debian; fetching
release binaries is not possible here), so nothing here starts them. What is tested instead:

- loki/loki.yml holds the settings Loki 3 needs for this stack (schema v13 on TSDB, compactor
  retention with delete_request_store, limits, structured metadata, the ruler on local files sending
  to the stack's Alertmanager) — read as YAML, not run.
- The rule groups load in the real `promtool check rules` (Prometheus's own rule-file loader, which
  Loki's ruler shares) with each LogQL expression swapped for a PromQL placeholder, because promtool
  would reject LogQL; the expressions are read by tests/logql_subset.py instead.
- A real `telltale serve` and `telltale exporter` run here (JSON logs, tracing to a local OTLP
  receiver, a dead database, a wrong Alertmanager URL), and their stdout is what the pipelines and the
  rules are checked against: every field a pipeline extracts is one those lines carry, the per-request
  ids are structured metadata and never labels, Alloy and Promtail turn every line into the same
  entry, and each alert's query selects exactly the lines it is about.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.alloy_syntax import Block, Ref, exports, parse, references
from tests.log_pipelines import COMPOSE_SERVICE, Pipeline, apply, from_alloy, from_promtail, relabel
from tests.logql_subset import Entry, evaluate, parse_log_query, parse_metric, run_query
from tests.otlp_receiver import OtlpReceiver
from tests.servers import free_port, wait_port
from tests.test_grafana_provisioning import datasources
from tests.test_prometheus_config import RUNBOOK_PREFIX, TEAMS, runbook_anchors, tool

ROOT = Path(__file__).resolve().parent.parent
LOKI = ROOT / "loki"
RULE_FILES = sorted((LOKI / "rules").glob("*/*.yml"))
TELLTALE_SERVICES = ("telltale", "telltale-exporter")  # compose service names (docker-compose.yml)
PER_REQUEST_FIELDS = {"trace_id", "span_id", "request_id", "organization_id"}
LEVELS = {"debug", "info", "warning", "error", "critical"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
UNAUTHORIZED, FAILING = 3, 2  # requests the run makes that end in 401, and in 503


def loki_config() -> dict[str, Any]:
    return yaml.safe_load((LOKI / "loki.yml").read_text())


def alloy() -> Block:
    return parse((LOKI / "alloy" / "config.alloy").read_text())


def pipelines() -> dict[str, Pipeline]:
    return {
        "alloy": from_alloy(alloy()),
        "promtail": from_promtail(yaml.safe_load((LOKI / "promtail" / "promtail.yml").read_text())),
    }


def log_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend({**rule, "_file": path} for rule in group["rules"])
    return rules


def hours(duration: str) -> float:
    units = {"h": 1.0, "d": 24.0, "w": 168.0, "m": 1 / 60}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([hdwm])", duration))


# --- a real run --------------------------------------------------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_", "PROMETHEUS_"))}
    return {**clean, "TELLTALE_LOG_FORMAT": "json", **extra}


def _start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as o:
        return subprocess.Popen(
            [sys.executable, "-m", "telltale.app.cli", *args], cwd=ROOT, env=env, stdout=o, stderr=subprocess.STDOUT
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Run:
    lines: dict[str, list[str]]  # stdout lines by compose service name
    spans: list[dict[str, Any]]  # what the service exported to the OTLP receiver
    openmetrics: str  # the service's /metrics in OpenMetrics, exemplars included


@pytest.fixture(scope="module")
def telltale_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Every stdout line of a real service and exporter, the service's spans and its /metrics.

    The service traces to a local OTLP receiver (so lines carry trace_id/span_id), its database is a
    port nobody listens on (so /health/detailed answers 503), and its Alertmanager URL points at the
    service itself, which answers 404 to /api/v2/alerts: Telltale logs that at level error.
    """
    tmp = tmp_path_factory.mktemp("telltale-logs")
    receiver = OtlpReceiver().start()
    port, exporter_port, dead = free_port(), free_port(), free_port()
    service_env = _env(
        {
            "TELLTALE_HEALTH_TOKEN": "health-token",
            "TELLTALE_INGEST_TOKEN": "ingest-token",
            "TELLTALE_DATABASE_URL": f"postgresql://app:app@127.0.0.1:{dead}/app",
            "TELLTALE_ALERTMANAGER_URL": f"http://127.0.0.1:{port}",
            "TELLTALE_CACHE_TTL_SECONDS": "0",
            "TELLTALE_DRAIN_SECONDS": "0",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.endpoint}/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    exporter_env = _env(
        {
            "TELLTALE_DATABASE_URL": f"postgresql://app:app@127.0.0.1:{dead}/app",
            "TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS": "1",
        }
    )
    out = {"telltale": tmp / "telltale.out", "telltale-exporter": tmp / "exporter.out"}
    service = _start(["serve", "--port", str(port)], service_env, out["telltale"])
    exporter = _start(["exporter", "--port", str(exporter_port)], exporter_env, out["telltale-exporter"])
    try:
        wait_port(port, timeout=30)
        wait_port(exporter_port, timeout=30)
        traced = {"Authorization": "Bearer health-token", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as c:
            statuses = [c.get("/health/detailed").status_code for _ in range(UNAUTHORIZED)]
            statuses += [c.get("/health/detailed", headers=traced).status_code for _ in range(FAILING)]
            event = {"type": "deployment.failed", "organization": "acme", "provider": "aws"}
            headers = {"Authorization": "Bearer ingest-token", "X-Request-ID": "loki-test-1"}
            statuses.append(c.post("/api/v1/events", headers=headers, json={"events": [event]}).status_code)
            statuses.append(c.get("/nosuch").status_code)
            openmetrics = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}).text
        assert statuses == [401] * UNAUTHORIZED + [503] * FAILING + [202, 404], statuses
        httpx.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=15).raise_for_status()
        deadline = time.monotonic() + 15
        while '"level":"error"' not in out["telltale"].read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        spans = receiver.wait_for(lambda spans: any(s["trace_id"] == TRACE_ID for s in spans))
    finally:
        _stop(service)
        _stop(exporter)
        receiver.stop()
    yield Run({name: path.read_text().splitlines() for name, path in out.items()}, spans, openmetrics)


@pytest.fixture(scope="module")
def telltale_lines(telltale_run: Run) -> dict[str, list[str]]:
    return telltale_run.lines


@pytest.fixture(scope="module")
def records(telltale_lines: dict[str, list[str]]) -> list[dict[str, Any]]:
    parsed = []
    for service, lines in telltale_lines.items():
        for line in lines:
            record = json.loads(line)
            assert isinstance(record, dict), f"{service}: {line!r}"
            parsed.append(record)
    return parsed


@pytest.fixture(scope="module")
def entries(telltale_lines: dict[str, list[str]]) -> list[Entry]:
    """The real lines as Alloy would send them to Loki."""
    pipeline = pipelines()["alloy"]
    out = []
    for service, lines in telltale_lines.items():
        for line in lines:
            entry = apply(pipeline, service, line)
            assert entry is not None, f"the pipeline drops {service}'s lines"
            out.append(entry)
    return out


def test_the_run_wrote_every_kind_of_line_the_checks_below_need(records: list[dict[str, Any]]) -> None:
    access = [r for r in records if r["logger"] == "telltale.access"]
    assert sum(r["status"] == 401 for r in access) == UNAUTHORIZED
    assert sum(r["status"] == 503 for r in access) == FAILING
    assert any(r["level"] == "error" for r in records)
    assert any(r.get("trace_id") == TRACE_ID for r in access)
    assert any(r.get("organization_id") == "acme" and r.get("request_id") == "loki-test-1" for r in access)
    assert any(r["logger"] == "telltale.exporter" for r in records)


# --- loki/loki.yml -----------------------------------------------------------------------------


def test_loki_stores_schema_v13_on_tsdb_in_the_filesystem() -> None:
    config = loki_config()
    [period] = config["schema_config"]["configs"]
    assert (period["schema"], period["store"], period["object_store"]) == ("v13", "tsdb", "filesystem")
    assert period["index"]["period"] == "24h"
    assert config["storage_config"]["tsdb_shipper"]["active_index_directory"].startswith("/loki/")
    assert config["common"]["storage"]["filesystem"]["chunks_directory"].startswith("/loki/")
    assert config["common"]["replication_factor"] == 1 and config["common"]["ring"]["kvstore"]["store"] == "inmemory"


def test_the_compactor_deletes_logs_after_30_days() -> None:
    config = loki_config()
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    # required since Loki 3.0 once retention is on; it names one of the configured object stores
    assert compactor["delete_request_store"] == config["schema_config"]["configs"][0]["object_store"]
    assert hours(config["limits_config"]["retention_period"]) == 30 * 24
    assert hours(config["limits_config"]["max_query_lookback"]) <= 30 * 24


def test_limits_bound_ingestion_and_keep_structured_metadata() -> None:
    limits = loki_config()["limits_config"]
    assert 0 < limits["ingestion_rate_mb"] <= limits["ingestion_burst_size_mb"]
    assert 0 < limits["max_global_streams_per_user"] <= 10_000
    assert limits["max_line_size"] and limits["max_line_size_truncate"] is True
    assert limits["allow_structured_metadata"] is True
    assert limits["reject_old_samples"] is True


def test_the_ruler_reads_these_rule_files_and_alerts_the_stacks_alertmanager() -> None:
    config = loki_config()
    ruler = config["ruler"]
    assert ruler["storage"] == {"type": "local", "local": {"directory": "/etc/loki/rules"}}
    assert ruler["alertmanager_url"] == "http://alertmanager:9093"
    assert ruler["enable_api"] is True
    # without auth the one tenant is `fake`: /etc/loki/rules/fake/ is ./loki/rules/fake/
    assert config["auth_enabled"] is False
    assert RULE_FILES and {p.parent.name for p in RULE_FILES} == {"fake"}
    # the same external labels as Prometheus's alerts, so Alertmanager groups and inhibits them alike (the HA
    # pair's `replica` is dropped from Prometheus's alerts by its alert_relabel_configs)
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    dropped = {
        r["regex"] for r in prometheus["alerting"].get("alert_relabel_configs", []) if r.get("action") == "labeldrop"
    }
    assert dropped == {"replica"}
    sent = {k: v for k, v in prometheus["global"]["external_labels"].items() if k not in dropped}
    assert ruler["external_labels"] == sent
    datasources = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "telltale.yml").read_text())
    loki_uids = {d["uid"] for d in datasources["datasources"] if d["type"] == "loki"}
    assert ruler["datasource_uid"] in loki_uids


# --- loki/rules --------------------------------------------------------------------------------


def test_rule_groups_load_in_promtool(tmp_path: Path) -> None:
    """The groups as Prometheus's loader reads them (Loki's ruler uses the same rulefmt): names, `for`,
    label and annotation templates. promtool parses `expr` as PromQL and would reject LogQL, so each
    expression is swapped for `vector(1)` here and read by tests/logql_subset.py in the tests below."""
    for path in RULE_FILES:
        groups = yaml.safe_load(path.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                assert isinstance(rule.get("expr"), str) and rule["expr"].strip()
                rule["expr"] = "vector(1)"
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(groups))
        proc = subprocess.run([tool("promtool"), "check", "rules", str(copy)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout


def test_every_log_alert_is_routed_and_has_its_runbook() -> None:
    routing = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())["route"]["routes"]
    routed = {m.split("=", 1)[1].strip('"') for r in routing for m in r["matchers"] if m.startswith("severity=")}
    anchors = runbook_anchors()
    rules = log_rules()
    assert {r.get("alert") for r in rules} >= {"LogErrorLines", "LogAuthFailures", "LogServerErrors"}
    for rule in rules:
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["severity"] in routed, rule["alert"]
        assert labels["team"] in TEAMS and labels["component"], rule["alert"]
        assert rule["for"], rule["alert"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_PREFIX) and url.removeprefix(RUNBOOK_PREFIX) in anchors, url
        assert url.removeprefix(RUNBOOK_PREFIX) == rule["alert"].lower()


def test_log_alert_queries_use_only_what_the_pipeline_and_the_lines_provide(records: list[dict[str, Any]]) -> None:
    pipeline = pipelines()["alloy"]
    stream_labels = {"service", *pipeline.labels}
    fields = {k for r in records for k in r}
    for rule in log_rules():
        metric = parse_metric(rule["expr"])
        assert {m.name for m in metric.query.selector} <= stream_labels, rule["alert"]
        assert set(metric.query.json_fields.values()) <= fields, rule["alert"]
        assert set(metric.group_by) <= stream_labels | set(metric.query.json_fields), rule["alert"]
        # a per-request id in `by (...)` would make a series per request
        assert not set(metric.group_by) & PER_REQUEST_FIELDS, rule["alert"]
        assert hours(metric.range) <= 1, rule["alert"]


def _rule(name: str) -> Any:
    [rule] = [r for r in log_rules() if r.get("alert") == name]
    return parse_metric(rule["expr"])


def test_error_line_alert_counts_error_lines_per_service(entries: list[Entry]) -> None:
    counts = evaluate(_rule("LogErrorLines"), entries)
    errors = [e for e in entries if e.labels["level"] in ("error", "critical")]
    assert errors and sum(counts.values()) == len(errors)
    assert set(counts) <= {(s,) for s in TELLTALE_SERVICES}


def test_auth_failure_alert_counts_the_401_access_lines(entries: list[Entry]) -> None:
    counts = evaluate(_rule("LogAuthFailures"), entries)
    assert counts == {("telltale",): UNAUTHORIZED}


def test_server_error_alert_counts_the_5xx_access_lines_by_route(entries: list[Entry]) -> None:
    rule = _rule("LogServerErrors")
    assert evaluate(rule, entries) == {("telltale", "/health/detailed"): FAILING}
    # the ids of the failing requests come along, to find their other lines and their trace
    kept = run_query(rule.query, entries)
    assert all(labels["trace_id"] == TRACE_ID and labels["request_id"] for labels in kept)


# --- loki/alloy/config.alloy and loki/promtail/promtail.yml ---------------------------------------------

EXPORTS = {
    "discovery.docker": {"targets"},
    "discovery.relabel": {"output", "rules"},
    "loki.process": {"receiver"},
    "loki.write": {"receiver"},
}


def test_alloy_components_are_wired_from_docker_to_loki() -> None:
    root = alloy()
    defined = exports(root)
    for ref in references(root):
        component, _, export = ref.path.rpartition(".")
        assert component in defined, f"{ref.path}: no such component"
        kind = component.rsplit(".", 1)[0]
        assert export in EXPORTS.get(kind, set()), f"{ref.path}: {kind} exports no {export}"
    [source] = root.children("loki.source.docker")
    assert source.attrs["targets"] == Ref("discovery.relabel.telltale.output")
    assert source.attrs["host"] == root.child("discovery.docker").attrs["host"] == "unix:///var/run/docker.sock"
    [process] = root.children("loki.process")
    assert source.attrs["forward_to"] == [Ref(f"loki.process.{process.label}.receiver")]
    assert process.attrs["forward_to"] == [Ref(f"loki.write.{root.child('loki.write').label}.receiver")]
    assert pipelines()["alloy"].push_url == "http://loki:3100/loki/api/v1/push"


@pytest.mark.parametrize("collector", ["alloy", "promtail"])
def test_only_telltales_containers_are_read_and_named_by_compose_service(collector: str) -> None:
    rules = pipelines()[collector].relabel
    for service in TELLTALE_SERVICES:
        target = relabel({COMPOSE_SERVICE: service}, rules)
        assert target is not None and target["service"] == service
    for other in ("postgres", "loki", "grafana", "telltale-migrations"):
        assert relabel({COMPOSE_SERVICE: other}, rules) is None, other


@pytest.mark.parametrize("collector", ["alloy", "promtail"])
def test_every_extracted_field_is_one_telltales_lines_carry(collector: str, records: list[dict[str, Any]]) -> None:
    """`service` is not a field of the lines: it is the container's compose service name (relabel)."""
    pipeline = pipelines()[collector]
    fields = {k for r in records for k in r}
    for name, expression in pipeline.json_expressions.items():
        assert re.fullmatch(r"[a-z_]+", expression), f"{name}: {expression!r} is not a plain field"
        assert expression in fields, f"{collector} extracts {expression!r}, which no Telltale line carries"
    used = set(pipeline.labels.values()) | set(pipeline.metadata.values()) | {pipeline.timestamp[0]}
    assert used <= set(pipeline.json_expressions), used - set(pipeline.json_expressions)
    assert "service" not in pipeline.json_expressions
    # each structured-metadata field was seen in this run, on the lines of a request
    for key in pipeline.metadata:
        assert any(key in r for r in records if r["logger"] == "telltale.access"), key


@pytest.mark.parametrize("collector", ["alloy", "promtail"])
def test_per_request_ids_are_structured_metadata_never_labels(collector: str) -> None:
    pipeline = pipelines()[collector]
    assert set(pipeline.metadata) == PER_REQUEST_FIELDS
    assert set(pipeline.labels) == {"level"}
    assert not set(pipeline.labels) & PER_REQUEST_FIELDS
    assert not {r.get("target_label") for r in pipeline.relabel} & PER_REQUEST_FIELDS


def test_a_real_run_makes_a_handful_of_streams(entries: list[Entry]) -> None:
    streams = {tuple(sorted(e.labels.items())) for e in entries}
    assert {k for s in streams for k, _ in s} == {"service", "level"}
    assert {dict(s)["level"] for s in streams} <= LEVELS
    assert {dict(s)["service"] for s in streams} == set(TELLTALE_SERVICES)
    assert len(streams) <= len(TELLTALE_SERVICES) * len(LEVELS)
    traced = [e for e in entries if e.metadata.get("trace_id") == TRACE_ID]
    assert traced and all(set(e.metadata) >= {"trace_id", "span_id", "request_id"} for e in traced)


def test_alloy_and_promtail_send_the_same_entries(telltale_lines: dict[str, list[str]]) -> None:
    alloy_pipeline, promtail_pipeline = pipelines()["alloy"], pipelines()["promtail"]
    for setting in ("docker_host", "docker_filters", "timestamp", "labels", "metadata", "push_url"):
        assert getattr(alloy_pipeline, setting) == getattr(promtail_pipeline, setting), setting
    for service in (*TELLTALE_SERVICES, "postgres"):
        target = {COMPOSE_SERVICE: service}
        assert relabel(target, alloy_pipeline.relabel) == relabel(target, promtail_pipeline.relabel), service
    for service, lines in telltale_lines.items():
        for line in lines:
            assert apply(alloy_pipeline, service, line) == apply(promtail_pipeline, service, line), line


def test_the_lines_timestamps_parse_in_the_pipelines_format(records: list[dict[str, Any]]) -> None:
    """RFC3339 in Go's time.Parse takes fractional seconds it does not name, as Telltale writes them."""
    source, layout = pipelines()["alloy"].timestamp
    assert layout == "RFC3339"
    for record in records:
        stamp = record[source]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)


# --- logs, traces and metrics joined in Grafana (grafana/provisioning/datasources/telltale.yml) ------------


def test_a_log_line_links_to_its_trace(entries: list[Entry]) -> None:
    """Loki's derived field (matcherType label) takes the value of the label or structured-metadata key
    its regex names; for the traced request's lines that value is the request's trace id."""
    [derived] = datasources()["telltale-loki"]["jsonData"]["derivedFields"]
    traced = [e for e in entries if e.metadata.get("trace_id") == TRACE_ID]
    assert traced
    for entry in traced:
        keys = [k for k in {**entry.labels, **entry.metadata} if re.search(derived["matcherRegex"], k)]
        assert keys == ["trace_id"] and entry.metadata[keys[0]] == TRACE_ID


def test_a_span_finds_its_log_lines(telltale_run: Run, entries: list[Entry]) -> None:
    """Tempo's "Logs for this span": the custom query with the span's tags and trace id filled in as
    Grafana fills them, run over the lines Alloy would have sent, finds that request's lines only."""
    server = 2  # SPAN_KIND_SERVER in OTLP
    span = next(s for s in telltale_run.spans if s["trace_id"] == TRACE_ID and s["kind"] == server)
    logs = datasources()["telltale-tempo"]["jsonData"]["tracesToLogsV2"]
    attributes = {**span["resource"], **span["attributes"]}
    tags = ", ".join(f'{t.get("value") or t["key"]}="{attributes[t["key"]]}"' for t in logs["tags"])
    query = logs["query"].replace("${__tags}", tags).replace("${__trace.traceId}", span["trace_id"])
    found = run_query(parse_log_query(query), entries)
    assert len(found) >= FAILING
    assert {labels["trace_id"] for labels in found} == {TRACE_ID}
    assert len(found) == sum(e.metadata.get("trace_id") == TRACE_ID for e in entries)


def test_a_latency_exemplar_names_the_trace(telltale_run: Run) -> None:
    """Prometheus's exemplarTraceIdDestinations reads the exemplar label it names: the one Telltale sets."""
    [destination] = datasources()["telltale-prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    exemplars = re.findall(
        r"^http_request_duration_seconds_bucket\{.*\} \S+ # \{([^}]*)\}", telltale_run.openmetrics, re.M
    )
    assert exemplars, "no exemplar on the latency histogram"
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', e)) for e in exemplars]
    assert any(exemplar.get(destination["name"]) == TRACE_ID for exemplar in labels), labels


def test_metrics_and_logs_name_each_telltale_process_alike() -> None:
    """Alertmanager groups and inhibits on `service`: a process's metric alerts (the scrape job's static
    label, the Kubernetes Service's name, the label a rule sets) and its log alerts (the compose service name
    the collectors set) must say the same name, or the exporter's TargetDown would not pair with its log alerts."""
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    metric_side: dict[str, str] = {}  # compose service -> `service` of the job scraping it directly
    for job in scrape:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                if job["job_name"] == target.split(":")[0]:
                    metric_side[job["job_name"]] = static["labels"]["service"]
    assert set(metric_side) == set(TELLTALE_SERVICES), metric_side
    for collector, pipeline in pipelines().items():
        for service in TELLTALE_SERVICES:
            target = relabel({COMPOSE_SERVICE: service}, pipeline.relabel)
            assert target is not None and target["service"] == metric_side[service], (collector, service)
    # In Kubernetes the Prometheus Operator sets `service` to the scraped Service's name; nothing overrides it.
    objects = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "telltale.yaml").read_text()))
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert services == set(metric_side.values()), services
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        for endpoint in monitor["spec"]["endpoints"]:
            targets = {r.get("targetLabel") for r in endpoint.get("relabelings", [])}
            assert "service" not in targets, endpoint
    exporter_rules = [
        rule
        for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("labels", {}).get("component") == "exporter"
    ]
    assert exporter_rules
    for rule in exporter_rules:
        assert rule["labels"]["service"] == metric_side["telltale-exporter"], rule["alert"]
