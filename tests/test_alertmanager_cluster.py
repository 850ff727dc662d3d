"""An Alertmanager cluster for real: two Debian prometheus-alertmanager peers gossiping on loopback, one
Prometheus (the shipped rules, `for` shortened to 1 s) sending to both, two `telltale serve` replicas and
the exporter over a real PostgreSQL and Redis. The shipped alertmanager.yml is rendered with local
stand-ins for Slack, PagerDuty and SMTP (they cannot run here) and Telltale's own webhook added to every
receiver, as docs/scaling.md shows.

`--cluster.peer-timeout=0s` takes away the wait that lets the second peer see the first one's
notification log: both peers send every notification, the worst case of Alertmanager's best-effort
deduplication, so the test proves that Telltale's webhook records each one once. Then one peer is
SIGKILLed and the next alerts, from a rule and from an event, still arrive. Prints the delivery times.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.stack.render import Timing, render_rules
from tests.servers import (
    PostgresServer,
    PrometheusServer,
    RedisServer,
    WebhookRecorder,
    _Process,
    binary,
    free_port,
    spawn_telltale,
    stop_process,
    wait_port,
    wait_ready,
)
from tests.sinks import Sink, SmtpSink, render_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
INGEST = "cluster-ingest-token"
HOOK = "cluster-webhook-token"
WEBHOOK_PATH = "/api/v1/alerts/webhook"


@dataclass
class AlertmanagerPeer(_Process):
    """One peer of an Alertmanager cluster: gossip on its own loopback port, joined to `peers`."""

    config: Path
    peers: list[str]
    cluster_port: int
    root: Path
    port: int = field(default_factory=free_port)
    peer_timeout: str = "0s"
    proc: subprocess.Popen | None = None

    @property
    def cluster_address(self) -> str:
        return f"127.0.0.1:{self.cluster_port}"

    def start(self) -> AlertmanagerPeer:
        self._launch(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.config}",
                f"--storage.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--cluster.listen-address={self.cluster_address}",
                f"--cluster.advertise-address={self.cluster_address}",
                *(f"--cluster.peer={p}" for p in self.peers),
                f"--cluster.peer-timeout={self.peer_timeout}",
                "--cluster.settle-timeout=10s",
                "--log.level=warn",
            ]
        )
        wait_ready(f"{self.url}/-/ready")
        return self

    def kill(self) -> None:
        """SIGKILL: no leave message to the other peer, as when a machine dies."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None


def alertmanager_config(tmp: Path, sink: Sink, smtp: SmtpSink, telltale: str, witness: str) -> Path:
    """The shipped config for the stand-ins, Telltale's webhook on every receiver, waits of a second; and
    a witness webhook that keeps every copy the peers send, to see that both did."""
    cfg = yaml.safe_load(
        render_config(tmp, f"{sink.url}/slack", f"{sink.url}/pagerduty", smtp_port=smtp.port).read_text()
    )
    cfg["route"].update(group_wait="1s", group_interval="1s")
    token = tmp / "secrets" / "telltale-webhook-token"
    token.write_text(HOOK)
    hook = {
        "url": f"{telltale}{WEBHOOK_PATH}",
        "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token)}},
    }
    for receiver in cfg["receivers"]:
        receiver["webhook_configs"] = [hook, {"url": f"{witness}/witness", "send_resolved": True}]
    out = tmp / "alertmanager-cluster.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def prometheus_config(telltale: list[int], exporter: int, alertmanagers: list[int]) -> str:
    """The shipped prometheus.yml with loopback targets, every second, and both peers as alertmanagers."""
    cfg = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="900ms")
    cfg["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in alertmanagers]}]
    cfg["rule_files"] = ["rules/*.yml"]
    cfg["scrape_configs"] = [
        {
            "job_name": "telltale",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in telltale], "labels": {"service": "telltale"}}],
        },
        {
            "job_name": "telltale-exporter",
            "static_configs": [{"targets": [f"127.0.0.1:{exporter}"], "labels": {"service": "telltale-exporter"}}],
        },
    ]
    return yaml.safe_dump(cfg, sort_keys=False)


class Cluster:
    def __init__(self, tmp: Path, peer_timeout: str = "0s") -> None:
        self.tmp = tmp
        self.sink, self.smtp, self.witness = Sink(), SmtpSink(), WebhookRecorder()
        self.pg = PostgresServer().init().start()
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):
            self.pg.psql_file(sql)
        self.redis = RedisServer().start()
        self.replica_ports = [free_port(), free_port()]
        self.exporter_port = free_port()
        config = alertmanager_config(
            tmp, self.sink, self.smtp, f"http://127.0.0.1:{self.replica_ports[0]}", self.witness.url
        )
        gossip = [free_port(), free_port()]
        self.peers = [
            AlertmanagerPeer(
                config, [f"127.0.0.1:{gossip[1 - i]}"], gossip[i], tmp / f"am{i}", peer_timeout=peer_timeout
            )
            for i in range(2)
        ]
        for peer in self.peers:
            peer.root.mkdir()
            peer.start()
        env = {"TELLTALE_DATABASE_URL": self.pg.dsn, "TELLTALE_REDIS_URL": self.redis.url}
        self.replicas = [
            spawn_telltale(
                ["serve", "--port", str(port)],
                {
                    **env,
                    "TELLTALE_ALERTMANAGER_URL": ",".join(p.url for p in self.peers),
                    "TELLTALE_INGEST_TOKEN": INGEST,
                    "TELLTALE_ALERT_WEBHOOK_TOKEN": HOOK,
                    "TELLTALE_CACHE_TTL_SECONDS": "0.5",
                    "TELLTALE_ENVIRONMENT": "cluster",
                },
                tmp / f"telltale-{i}.log",
            )
            for i, port in enumerate(self.replica_ports)
        ]
        self.exporter = spawn_telltale(
            ["exporter", "--port", str(self.exporter_port)],
            {**env, "TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS": "0.8"},
            tmp / "exporter.log",
        )
        for port in (*self.replica_ports, self.exporter_port):
            wait_port(port, 30)
        config = prometheus_config(self.replica_ports, self.exporter_port, [p.port for p in self.peers])
        self.prom = PrometheusServer(config, render_rules(Timing(rule_for="1s"))).start()  # the shipped rules

    def replica(self, i: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[i]}"

    def query(self, promql: str) -> list[dict]:
        r = httpx.get(f"{self.prom.url}/api/v1/query", params={"query": promql}, timeout=5)
        return r.json()["data"]["result"]

    def records(self, alertname: str, status: str = "firing") -> list[dict]:
        """What Telltale's webhook (on replica 0, where Alertmanager sends it) recorded for `alertname`."""
        r = httpx.get(
            f"{self.replica(0)}/api/v1/alerts/notifications",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {HOOK}"},
            timeout=5,
        )
        return [n for n in r.json()["notifications"] if alertname in n["alertnames"] and n["status"] == status]

    def close(self) -> None:
        for proc in (*self.replicas, self.exporter):
            stop_process(proc)
        for thing in (self.prom, *self.peers, self.pg, self.redis):
            thing.destroy()
        self.sink.close()
        self.smtp.close()
        self.witness.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("amcluster"))
    try:
        yield c
    finally:
        c.close()


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 60) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def pages(sink: Sink, alertname: str, action: str = "trigger") -> list[dict]:
    return [m for m in sink.messages("/pagerduty") if m.get("event_action") == action and alertname in repr(m)]


def slack(sink: Sink, channel: str, alertname: str) -> list[dict]:
    return [m for m in sink.messages("/slack") if m.get("channel") == channel and alertname in repr(m)]


def emails(smtp: SmtpSink, to: str, alertname: str) -> list:
    return [m for rcpts, m in smtp.received() if to in rcpts and alertname in str(m["Subject"])]


def copies(witness: WebhookRecorder, alertname: str, status: str = "firing") -> list[dict]:
    """Every notification the peers sent for `alertname`, as the witness webhook got them."""
    out = []
    for _, _, body in witness.received("/witness"):
        assert isinstance(body, dict)
        if body["status"] == status and alertname in {a["labels"]["alertname"] for a in body["alerts"]}:
            out.append(body)
    return out


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def peer_alerts(peer: AlertmanagerPeer, alertname: str) -> list[dict]:
    alerts = httpx.get(f"{peer.url}/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"]["alertname"] == alertname]


def test_the_two_peers_form_one_cluster(cluster: Cluster) -> None:
    def both_see_two() -> bool:
        for peer in cluster.peers:
            status = httpx.get(f"{peer.url}/api/v2/status", timeout=5).json()["cluster"]
            if status["status"] != "ready" or len(status["peers"]) != 2:
                return False
        return True

    wait_until("a settled cluster of two", both_see_two, timeout=30)
    wait_until(
        "Prometheus sending to both peers",
        lambda: (
            len(httpx.get(f"{cluster.prom.url}/api/v1/alertmanagers", timeout=5).json()["data"]["activeAlertmanagers"])
            == 2
        ),
    )


def test_one_event_posted_to_both_replicas_is_one_alert_on_each_peer(cluster: Cluster) -> None:
    """A client retrying through a Service reaches two replicas: each posts the alert to both peers, whose
    identical labels make it one alert; the replicas count the event each, Prometheus sums them."""
    event = {"events": [{"type": "deployment.failed", "organization": "acme", "provider": "aws"}]}
    for i in range(2):
        r = httpx.post(f"{cluster.replica(i)}/api/v1/events", json=event, headers={"Authorization": f"Bearer {INGEST}"})
        assert r.status_code == 202, r.text
    for peer in cluster.peers:
        wait_until("the event alert on each peer", lambda p=peer: peer_alerts(p, "DeploymentFailed"), timeout=20)
    time.sleep(1)  # both replicas have posted to both peers by now (each within a second)
    for peer in cluster.peers:
        [alert] = peer_alerts(peer, "DeploymentFailed")
        assert alert["labels"]["organization"] == "acme" and alert["labels"]["source"] == "events"
    wait_until("DeploymentFailed on #alerts", lambda: slack(cluster.sink, "#alerts", "DeploymentFailed"))
    wait_until(
        "a copy from each peer",
        lambda: len({c["externalURL"] for c in copies(cluster.witness, "DeploymentFailed")}) == 2,
        timeout=20,
    )
    time.sleep(1)
    assert len(cluster.records("DeploymentFailed")) == 1

    def summed() -> list[dict]:
        return cluster.query('sum(telltale_events_total{job="telltale", type="deployment.failed"})')

    wait_until("both replicas' counters scraped", lambda: summed() and summed()[0]["value"][1] == "2")
    per_replica = cluster.query('telltale_events_total{job="telltale", type="deployment.failed"}')
    assert sorted(r["value"][1] for r in per_replica) == ["1", "1"]


def test_redis_down_pages_every_receiver_and_the_webhook_records_it_once(cluster: Cluster) -> None:
    wait_until("redis up in Prometheus", lambda: cluster.query("telltale_redis_up == 1"))
    fault_wall, fault = time.time(), time.monotonic()
    cluster.redis.stop()
    wait_until("RedisDown paged", lambda: pages(cluster.sink, "RedisDown"))
    paged = time.monotonic() - fault
    wait_until("RedisDown on #alerts-critical", lambda: slack(cluster.sink, "#alerts-critical", "RedisDown"))
    wait_until("RedisDown emailed to on-call", lambda: emails(cluster.smtp, "oncall@telltale.example.com", "RedisDown"))
    wait_until("RedisDown recorded by Telltale's webhook", lambda: cluster.records("RedisDown"))
    # both peers deliver (peer-timeout 0s): wait for the second copy, then check it was not recorded again
    wait_until(
        "a copy from each peer",
        lambda: len({c["externalURL"] for c in copies(cluster.witness, "RedisDown")}) == 2,
        timeout=20,
    )
    time.sleep(2)
    [record] = cluster.records("RedisDown")
    assert record["receiver"] == "critical"
    fired = seconds(record["payload"]["alerts"][0]["startsAt"])
    # no receiver routed otherwise heard of it (platform team, critical only: no DBA copy)
    assert not slack(cluster.sink, "#dba", "RedisDown") and not slack(cluster.sink, "#alerts-info", "RedisDown")
    print(
        f"\nRedis stopped -> PagerDuty: {paged:.1f} s; -> Telltale webhook: {record['received_at'] - fault_wall:.1f} s;"
        f" rule firing -> webhook: {record['received_at'] - fired:.1f} s; copies sent by the peers"
        f" {len(copies(cluster.witness, 'RedisDown'))}, records 1;"
        f" PagerDuty triggers {len(pages(cluster.sink, 'RedisDown'))}"
    )


def test_with_one_peer_killed_the_next_alerts_are_still_delivered(cluster: Cluster) -> None:
    """The first peer is SIGKILLed; PostgreSQL stops (a rule alert) and an SLA violation is reported (an
    event alert, which each replica also posts to the dead peer, retrying there in vain)."""
    cluster.peers[0].kill()
    survivor = cluster.peers[1]
    fault_wall, fault = time.time(), time.monotonic()
    cluster.pg.stop()
    wait_until("DatabaseDown paged by the survivor", lambda: pages(cluster.sink, "DatabaseDown"), timeout=90)
    paged = time.monotonic() - fault
    wait_until("DatabaseDown to the DBAs", lambda: slack(cluster.sink, "#dba", "DatabaseDown"))
    wait_until("DatabaseDown recorded", lambda: len(cluster.records("DatabaseDown")) >= 2)
    time.sleep(1)
    records = cluster.records("DatabaseDown")
    assert sorted(r["receiver"] for r in records) == ["critical", "dba"]  # two routes: two notifications
    critical = next(r for r in records if r["receiver"] == "critical")
    fired = seconds(critical["payload"]["alerts"][0]["startsAt"])
    assert peer_alerts(survivor, "DatabaseDown")

    sent = time.monotonic()
    event = {
        "events": [
            {
                "type": "sla.violation",
                "organization": "initech",
                "objective": "latency",
                "target": 99.9,
                "actual": 97.0,
                "severe": True,
            }
        ]
    }
    r = httpx.post(f"{cluster.replica(1)}/api/v1/events", json=event, headers={"Authorization": f"Bearer {INGEST}"})
    assert r.status_code == 202, r.text
    wait_until("the SLA page via the survivor", lambda: pages(cluster.sink, "OrganizationSLAViolation"), timeout=30)
    event_paged = time.monotonic() - sent
    print(
        f"\none peer killed; PostgreSQL stopped -> PagerDuty: {paged:.1f} s; -> Telltale webhook: "
        f"{critical['received_at'] - fault_wall:.1f} s; "
        f"rule firing -> webhook: {critical['received_at'] - fired:.1f} s;"
        f" event -> PagerDuty via the survivor: {event_paged:.1f} s"
    )
