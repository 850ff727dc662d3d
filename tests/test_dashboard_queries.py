"""Every dashboard query, evaluated by a real Prometheus (Debian's) that scraped the real service, the real
exporter (over a demo PostgreSQL and Redis), prometheus-node-exporter and prometheus-blackbox-exporter (its
http_2xx module probing the service), after generated traffic and events. Scrape and rule evaluation every
second (the hourly aggregates too), `$__rate_interval` rendered as 30s. Each panel query must return data,
unless the dashboard code says why it may be empty; the test prints those. Grafana itself cannot run here:
the queries are rendered from the generated JSON the way Grafana substitutes its variables.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from grafana.dashgen.catalog import BLACKBOX_EXPORTER, NODE_EXPORTER, PROMETHEUS_PER_TARGET, PROMETHEUS_SELF
from grafana.dashgen.queries import panel_queries, to_promql, variable_queries
from scripts.stack.render import Timing, render_rules
from tests.servers import (
    BlackboxExporterServer,
    NodeExporterServer,
    PostgresServer,
    PrometheusServer,
    RedisServer,
    free_port,
    spawn_telltale,
    stop_process,
    wait_port,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
INGEST = "dashboards-ingest-token"
ORG = "Acme"  # a demo organization (deploy/sql), so its database rows and its events meet in one view


def _config(prometheus: int, service: int, exporter: int, node: int, blackbox: int) -> str:
    def job(name: str, port: int) -> dict:
        return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}

    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": ["rules/*.yml"],
        "scrape_configs": [
            job("prometheus", prometheus),
            job("telltale", service),
            job("telltale-exporter", exporter),
            job("node", node),
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": [f"http://127.0.0.1:{service}/health/live"]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{blackbox}"},
                ],
            },
        ],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


# One second of a tenant's requests to the platform, as its middleware summarises them (sent every second).
SUMMARY = {"requests": 120, "client_errors": 6, "server_errors": 3, "durations_seconds": [0.02, 0.04, 0.07, 0.3, 2]}


def _events() -> list[dict]:
    soon = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    events: list[dict] = []
    for org in (ORG, "Globex"):
        events += [
            {"type": "deployment.started", "provider": "hetzner", "organization": org},
            {"type": "deployment.completed", "provider": "hetzner", "organization": org, "duration_seconds": 42},
            {"type": "deployment.failed", "provider": "aws", "organization": org, "duration_seconds": 7},
            {"type": "license.validated", "result": "valid", "latency_seconds": 0.02, "organization": org},
            {"type": "license.expiry", "organization": org, "expires_at": soon},
            {"type": "payment.succeeded", "provider": "stripe", "currency": "EUR", "amount": 49.0, "organization": org},
            {"type": "payment.failed", "provider": "paypal", "currency": "USD", "amount": 19.0, "organization": org},
            {"type": "websocket.connections", "connections": 12, "organization": org},
            {"type": "quota.usage", "organization": org, "resource": "servers", "used": 3, "limit": 10},
            {"type": "login.failed", "organization": org},
            {"type": "rate_limit.hit", "organization": org},
            {"type": "suspicious_activity", "kind": "brute_force", "organization": org},
            {"type": "sla.violation", "organization": org, "objective": "latency", "target": 0.99, "actual": 0.95},
            {"type": "requests.summary", "organization": org, **SUMMARY},
        ]
    return events


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pg = PostgresServer().init().start()
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):
            self.pg.psql_file(sql)
        self.redis = RedisServer().start()
        self.node = NodeExporterServer().start()
        self.blackbox = BlackboxExporterServer().start()
        self.service_port, self.exporter_port = free_port(), free_port()
        common = {
            "TELLTALE_DATABASE_URL": self.pg.dsn,
            "TELLTALE_REDIS_URL": self.redis.url,
            "TELLTALE_QUEUES": json.dumps([{"name": "default", "backend": "laravel", "heartbeat_key": "worker:beat"}]),
        }
        self.procs.append(
            spawn_telltale(
                ["serve", "--port", str(self.service_port)],
                {**common, "TELLTALE_INGEST_TOKEN": INGEST, "TELLTALE_CACHE_TTL_SECONDS": "0.5"},
                tmp / "service.log",
            )
        )
        self.procs.append(
            spawn_telltale(
                ["exporter", "--port", str(self.exporter_port)],
                {**common, "TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS": "0.8"},
                tmp / "exporter.log",
            )
        )
        wait_port(self.service_port, 30)
        wait_port(self.exporter_port, 30)
        prom_port = free_port()
        self.prom = PrometheusServer(
            _config(prom_port, self.service_port, self.exporter_port, self.node.port, self.blackbox.port),
            render_rules(Timing(interval="1s")),  # the hourly/daily group's 1m too
            port=prom_port,
        ).start()
        self.base = f"http://127.0.0.1:{self.service_port}"

    def traffic(self, seconds: float) -> None:
        """Requests of every kind (200, 404, 401) and event batches, spread over `seconds`."""
        now = time.time()
        self.redis.cli("SET", "worker:beat", str(int(now)))
        job = json.dumps({"uuid": "1", "displayName": "App\\Jobs\\Deploy", "pushedAt": now - 5})
        self.redis.cli("RPUSH", "queues:default", job, job)
        self.redis.cli("SET", "cache:a", "1")
        self.redis.cli("GET", "cache:a")
        self.redis.cli("GET", "cache:missing")
        auth = {"Authorization": f"Bearer {INGEST}"}
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while time.monotonic() < deadline:
                for path in ("/health", "/health/live", "/health/ready", "/no/such/page"):
                    client.get(path)
                client.post("/api/v1/events", json={"events": []})  # no token: 401
                client.post("/api/v1/events", json={"events": [{"type": "nope"}]}, headers=auth)  # 422
                r = client.post("/api/v1/events", json={"events": _events()}, headers=auth)
                assert r.status_code == 202, r.text
                time.sleep(1)

    def query(self, promql: str) -> list[dict]:
        r = httpx.get(f"{self.prom.url}/api/v1/query", params={"query": promql}, timeout=10)
        assert r.status_code == 200, f"{promql}: {r.text}"
        return r.json()["data"]["result"]

    def label_values(self, selector: str, label: str) -> list[str]:
        r = httpx.get(f"{self.prom.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10)
        return r.json()["data"]

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        for server in (self.prom, self.node, self.blackbox, self.pg, self.redis):
            server.destroy()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("dashboards"))
    try:
        s.traffic(12)
        deadline = time.monotonic() + 60
        while not s.query("organization_status:telltale_payments:increase1h") or not s.query("telltale_queue_depth"):
            assert time.monotonic() < deadline, "Prometheus never got the events and the exporter's series"
            time.sleep(0.5)
        time.sleep(3)
        yield s
    finally:
        s.close()


VARIABLES = {"organization": [ORG], "instance": "$__all", "queue": "$__all", "datname": "$__all"}


def test_every_panel_query_returns_data_unless_it_says_why_not(stack: Stack) -> None:
    queries = panel_queries()
    missing, empty_as_allowed = [], []
    for q in queries:
        result = stack.query(to_promql(q.expr, VARIABLES, rate_interval="30s", range_="5m"))
        if result:
            continue
        if q.may_be_empty:
            empty_as_allowed.append(q)
        else:
            missing.append(f"{q.uid} / {q.panel} [{q.ref_id}]: {q.expr}")
    print(f"\n{len(queries)} panel queries; {len(queries) - len(missing) - len(empty_as_allowed)} returned data.")
    print(f"{len(empty_as_allowed)} returned nothing and may legitimately be empty:")
    for q in empty_as_allowed:
        print(f"  {q.uid} / {q.panel} [{q.ref_id}]: {q.may_be_empty}")
    assert not missing, "queries without data:\n" + "\n".join(missing)


def test_every_variable_lists_values(stack: Stack) -> None:
    for v in variable_queries():
        values = stack.label_values(v.selector, v.label)
        assert values, f"{v.uid}: variable {v.name} ({v.selector}) has no values"
    organizations = next(
        stack.label_values(v.selector, v.label) for v in variable_queries() if v.uid == "telltale-organization"
    )
    assert {ORG, "Globex", "Initech"} <= set(organizations)  # events and the platform database meet


def test_the_organization_view_shows_only_the_chosen_tenant(stack: Stack) -> None:
    for q in panel_queries():
        if q.uid != "telltale-organization" or "$organization" not in q.expr:
            continue
        for series in stack.query(to_promql(q.expr, {"organization": ["Globex"]}, rate_interval="30s")):
            assert series["metric"].get("organization", "Globex") == "Globex", (q.panel, series)


def test_the_organization_request_panels_show_what_the_platform_sent(stack: Stack) -> None:
    """Not only data: the tenant's error ratio is its 5xx share, and its median latency the middle sample."""
    panels = {q.panel: q for q in panel_queries() if q.uid == "telltale-organization"}

    def values(panel: str, ref: str = "A") -> list[float]:
        q = next(
            q for q in panel_queries() if q.uid == "telltale-organization" and q.panel == panel and q.ref_id == ref
        )
        return [
            float(r["value"][1]) for r in stack.query(to_promql(q.expr, {"organization": [ORG]}, rate_interval="30s"))
        ]

    assert "Request error ratio" in panels
    assert values("Request error ratio") == [pytest.approx(SUMMARY["server_errors"] / SUMMARY["requests"])]
    assert values("Request error ratio", "B") == [pytest.approx(SUMMARY["client_errors"] / SUMMARY["requests"])]
    (p50,) = values("Request latency p50, p95, p99")
    assert 0.05 < p50 <= 0.1  # the middle sample, 0.07, is in the (0.05, 0.1] bucket
    (p99,) = values("Request latency p50, p95, p99", "C")
    assert 1 < p99 <= 2.5  # the slowest, 2 s


def _names(exposition: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and line[0] != "#"}


def test_the_exporter_names_the_lint_accepts_are_the_real_binaries(stack: Stack) -> None:
    """The lint's lists of node-exporter, blackbox-exporter and Prometheus names (grafana/dashgen/catalog.py)
    hold only names these versions really expose."""
    node = _names(httpx.get(f"{stack.node.url}/metrics", timeout=10).text)
    probe = httpx.get(
        f"{stack.blackbox.url}/probe", params={"module": "http_2xx", "target": f"{stack.base}/health/live"}, timeout=10
    )
    prometheus = _names(httpx.get(f"{stack.prom.url}/metrics", timeout=10).text)
    assert NODE_EXPORTER - node == set()
    assert BLACKBOX_EXPORTER - _names(probe.text) == set()
    assert PROMETHEUS_SELF - prometheus == set()
    per_target = {s["metric"]["__name__"] for s in stack.query('{job="telltale", __name__=~"up|scrape_.*"}')}
    assert PROMETHEUS_PER_TARGET - per_target == set()
