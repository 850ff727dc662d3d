"""The shipped configurations rendered for a stack on loopback ports.

Prometheus and Alertmanager read the same files as the compose stack (prometheus/prometheus.yml, the rules,
alertmanager/alertmanager.yml); only what cannot be the same on one machine changes: compose host names become
127.0.0.1 and the stack's ports, targets that do not run here (the public example.com probes, services of
other stacks) are dropped, and a test may shorten the timings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.servers import free_port
from tests.sinks import render_config

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
REPLICAS = ("A", "B")


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the stack. The defaults are the compose stack's, except Postgres and Redis, which
    stay off 5432 and 6379 (the machine's own services); the second Prometheus replica takes 9091."""

    postgres: int = 15432
    redis: int = 16379
    telltale: int = 8000
    exporter: int = 9465
    prometheus: tuple[int, int] = (9090, 9091)
    alertmanager: int = 9093
    node_exporter: int = 9100
    blackbox: int = 9115
    victoriametrics: int = 8428

    @classmethod
    def free(cls) -> Ports:
        return cls(
            postgres=free_port(),
            redis=free_port(),
            telltale=free_port(),
            exporter=free_port(),
            prometheus=(free_port(), free_port()),
            alertmanager=free_port(),
            node_exporter=free_port(),
            blackbox=free_port(),
            victoriametrics=free_port(),
        )

    def addresses(self) -> dict[str, str]:
        """Compose `host:port` (as written in the shipped configs) -> loopback address."""
        local = {
            "telltale:8000": self.telltale,
            "telltale-exporter:9465": self.exporter,
            "prometheus:9090": self.prometheus[0],
            "localhost:9090": self.prometheus[0],
            "alertmanager:9093": self.alertmanager,
            "node-exporter:9100": self.node_exporter,
            "blackbox-exporter:9115": self.blackbox,
            "victoriametrics:8428": self.victoriametrics,
            "postgres:5432": self.postgres,
            "redis:6379": self.redis,
        }
        return {compose: f"127.0.0.1:{port}" for compose, port in local.items()}


@dataclass(frozen=True)
class Timing:
    """Intervals of the stack. None keeps the shipped value; tests use FAST so that a rule evaluates, an alert
    fires and a notification leaves within seconds."""

    interval: str | None = None  # scrape, rule evaluation and every rule group's interval
    scrape_timeout: str | None = None
    rule_for: str | None = None  # every alert's `for`
    group_wait: str | None = None
    group_interval: str | None = None
    remote_write_deadline: str | None = None  # batch_send_deadline of remote_write
    # How often Prometheus re-sends a firing alert (1m by default): alerts that fire on the first evaluation can
    # be evaluated before the notifier knows its Alertmanager, and then wait that long for their next send.
    resend_delay: str | None = None
    exporter_collector_timeout: str | None = None
    # VictoriaMetrics: one sample per series and interval (the recording rules' interval, so that the two
    # replicas' samples of the same minute collapse into one), and how recent a sample may be to be queried.
    dedup: str = "1m"
    latency_offset: str = "30s"


FAST = Timing(
    interval="1s",
    scrape_timeout="900ms",
    rule_for="1s",
    group_wait="1s",
    group_interval="1s",
    remote_write_deadline="1s",
    resend_delay="1s",
    exporter_collector_timeout="0.8",
    dedup="1s",
    latency_offset="1s",
)


def _rewrite(node: Any, addresses: dict[str, str]) -> Any:
    """Every string of a loaded YAML tree with its compose addresses replaced."""
    if isinstance(node, dict):
        return {k: _rewrite(v, addresses) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, addresses) for v in node]
    if isinstance(node, str):
        for compose, local in addresses.items():
            node = re.sub(rf"(?<![\w.-]){re.escape(compose)}(?!\d)", local, node)
        return node
    return node


def _is_local(target: str) -> bool:
    return re.match(r"^(https?://)?127\.0\.0\.1:\d+(/|$)", target) is not None


def render_prometheus(ports: Ports, replicas: int = 1, timing: Timing = Timing()) -> str:
    """prometheus/prometheus.yml for the stack: one text for every replica (each reads its `replica` label
    from PROMETHEUS_REPLICA), every Prometheus replica scraped by each."""
    cfg = _rewrite(yaml.safe_load(PROMETHEUS_YML.read_text()), ports.addresses())
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] == "prometheus":
            job["static_configs"][0]["targets"] = [f"127.0.0.1:{p}" for p in ports.prometheus[:replicas]]
        statics = []
        for static in job.get("static_configs", []):
            targets = [t for t in static["targets"] if _is_local(t)]
            if targets:
                statics.append({**static, "targets": targets})
        if not statics:
            continue  # a service of another stack (or the public internet): nothing of it runs here
        job["static_configs"] = statics
        if timing.interval:
            job["scrape_interval"] = timing.interval
            job["scrape_timeout"] = timing.scrape_timeout or timing.interval
        jobs.append(job)
    cfg["scrape_configs"] = jobs
    if timing.interval:
        cfg["global"].update(evaluation_interval=timing.interval, scrape_interval=timing.interval)
        cfg["global"]["scrape_timeout"] = timing.scrape_timeout or timing.interval
    if timing.remote_write_deadline:
        for rw in cfg.get("remote_write", []):
            rw.setdefault("queue_config", {})["batch_send_deadline"] = timing.remote_write_deadline
    return yaml.safe_dump(cfg, sort_keys=False)


def render_rules(timing: Timing = Timing(), extra: dict[str, str] | None = None) -> dict[str, str]:
    """The shipped rule files (name -> text), with the test's intervals and `for`, plus `extra` files."""
    out = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            if timing.interval:
                group["interval"] = timing.interval
            for rule in group["rules"]:
                if timing.rule_for and "for" in rule:
                    rule["for"] = timing.rule_for
        out[path.name] = yaml.safe_dump(doc, sort_keys=False)
    return {**out, **(extra or {})}


def render_alertmanager(workdir: Path, ports: Ports, sink_url: str, smtp_port: int, timing: Timing = Timing()) -> str:
    """alertmanager/alertmanager.yml with its secret files written under `workdir`, Slack and PagerDuty
    pointed at a local recorder (`sink_url`/slack, /pagerduty), email at a local SMTP sink."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = render_config(workdir, f"{sink_url}/slack", f"{sink_url}/pagerduty", smtp_port=smtp_port)
    cfg = _rewrite(yaml.safe_load(path.read_text()), ports.addresses())
    if timing.group_wait:
        cfg["route"]["group_wait"] = timing.group_wait
    if timing.group_interval:
        cfg["route"]["group_interval"] = timing.group_interval
    return yaml.safe_dump(cfg, sort_keys=False)


def render_blackbox() -> str:
    """blackbox-exporter's modules: http_2xx, the one prometheus.yml's `blackbox` job asks for."""
    return yaml.safe_dump(
        {
            "modules": {
                "http_2xx": {
                    "prober": "http",
                    "timeout": "5s",
                    "http": {"preferred_ip_protocol": "ip4"},
                }
            }
        },
        sort_keys=False,
    )
