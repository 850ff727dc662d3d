"""End to end with real processes: PostgreSQL, Redis, `telltale serve`, `telltale exporter`, Prometheus and
Alertmanager (Debian's binaries), the shipped rules and routing, and local stand-ins for Slack, PagerDuty
and SMTP (they cannot run here). Scrape and evaluation every second, `for` durations shortened to 1 s,
group_wait 1 s. Prints the time from each fault to its delivery.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers import AlertmanagerServer, PostgresServer, PrometheusServer, RedisServer, free_port, wait_port
from tests.sinks import Sink, SmtpSink, render_config

ROOT = Path(__file__).resolve().parent.parent
INGEST = "e2e-ingest-token"


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", *args],
        env={**clean, **env},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _rules() -> dict[str, str]:
    """The shipped rule files with every `for` shortened to 1 s."""
    return {
        p.name: re.sub(r"(\n\s+for:\s*)\S+", r"\g<1>1s", p.read_text())
        for p in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    }


def _prometheus_config(service: int, exporter: int, alertmanager: int) -> str:
    cfg = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="900ms")
    cfg["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager}"]}]
    cfg["rule_files"] = ["rules/*.yml"]
    cfg["scrape_configs"] = [
        {
            "job_name": "telltale",
            "static_configs": [{"targets": [f"127.0.0.1:{service}"], "labels": {"service": "telltale"}}],
        },
        {
            "job_name": "telltale-exporter",
            "static_configs": [{"targets": [f"127.0.0.1:{exporter}"], "labels": {"service": "telltale-exporter"}}],
        },
    ]
    return yaml.safe_dump(cfg, sort_keys=False)


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.smtp = SmtpSink()
        self.sink = Sink()
        self.pg = PostgresServer().init().start()
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):  # the demo platform's schema and rows
            self.pg.psql_file(sql)
        self.redis = RedisServer().start()
        am_cfg = yaml.safe_load(
            render_config(
                tmp, f"{self.sink.url}/slack", f"{self.sink.url}/pagerduty", smtp_port=self.smtp.port
            ).read_text()
        )
        am_cfg["route"].update(group_wait="1s", group_interval="1s")
        self.am = AlertmanagerServer(yaml.safe_dump(am_cfg, sort_keys=False)).start()
        self.service_port, self.exporter_port = free_port(), free_port()
        common = {"TELLTALE_DATABASE_URL": self.pg.dsn, "TELLTALE_REDIS_URL": self.redis.url}
        self.service = _spawn(
            ["serve", "--port", str(self.service_port)],
            {
                **common,
                "TELLTALE_ALERTMANAGER_URL": self.am.url,
                "TELLTALE_INGEST_TOKEN": INGEST,
                "TELLTALE_CACHE_TTL_SECONDS": "0.5",
                "TELLTALE_ENVIRONMENT": "e2e",
            },
            tmp / "service.log",
        )
        self.exporter = _spawn(
            ["exporter", "--port", str(self.exporter_port)],
            {**common, "TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS": "0.8"},
            tmp / "exporter.log",
        )
        wait_port(self.service_port, 30)
        wait_port(self.exporter_port, 30)
        self.prom = PrometheusServer(
            _prometheus_config(self.service_port, self.exporter_port, self.am.port), _rules()
        ).start()
        self.base = f"http://127.0.0.1:{self.service_port}"

    def query(self, promql: str) -> list[dict]:
        r = httpx.get(f"{self.prom.url}/api/v1/query", params={"query": promql}, timeout=5)
        return r.json()["data"]["result"]

    def close(self) -> None:
        for proc in (self.service, self.exporter):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for thing in (self.prom, self.am, self.pg, self.redis):
            thing.destroy()
        self.sink.close()
        self.smtp.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        yield s
    finally:
        s.close()


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 60) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def slack(sink: Sink, channel: str, alertname: str, status: str = "firing") -> list[dict]:
    """Slack messages to `channel` that mention `alertname` with `status` (the template's title)."""
    out = []
    for msg in sink.messages("/slack"):
        text = repr(msg)
        if msg.get("channel") == channel and alertname in text and status.upper() in text.upper():
            out.append(msg)
    return out


def pagerduty(sink: Sink, alertname: str, action: str = "trigger") -> list[dict]:
    return [m for m in sink.messages("/pagerduty") if m.get("event_action") == action and alertname in repr(m)]


def emails(smtp: SmtpSink, alertname: str) -> list:
    return [m for _, m in smtp.received() if alertname in str(m["Subject"]) + m.get_body().get_content()]


def test_everything_is_scraped(stack: Stack) -> None:
    wait_until(
        "both targets up",
        lambda: {r["metric"]["job"] for r in stack.query("up == 1")} >= {"telltale", "telltale-exporter"},
    )
    assert stack.query("telltale_redis_up")[0]["value"][1] == "1"
    assert stack.query("telltale_postgres_up")[0]["value"][1] == "1"
    # the shipped SQL metrics read the demo schema: every collector and query succeeds
    wait_until("collectors scraped", lambda: stack.query("telltale_exporter_collector_success"))
    assert stack.query("telltale_exporter_collector_success == 0") == []
    assert stack.query("telltale_exporter_query_success == 0") == []
    assert stack.query("telltale_sql_organization_servers")


def test_business_event_reaches_slack_through_alertmanager(stack: Stack) -> None:
    sent = time.monotonic()
    r = httpx.post(
        f"{stack.base}/api/v1/events",
        headers={"Authorization": f"Bearer {INGEST}"},
        json={"events": [{"type": "deployment.failed", "organization": "acme", "provider": "aws"}]},
    )
    assert r.status_code == 202
    took = wait_until("DeploymentFailed on #alerts", lambda: slack(stack.sink, "#alerts", "DeploymentFailed"))
    [msg] = slack(stack.sink, "#alerts", "DeploymentFailed")[:1]
    assert "acme" in repr(msg) and "runbook" in repr(msg).lower()
    assert not pagerduty(stack.sink, "DeploymentFailed")  # a warning never pages
    print(f"\nbusiness event -> Slack via Alertmanager: {time.monotonic() - sent:.1f} s ({took:.1f} s waited)")


def test_redis_down_pages_then_resolves_and_5xx_burst_fires_error_rate(stack: Stack) -> None:
    wait_until("redis up in Prometheus", lambda: stack.query("telltale_redis_up == 1"))
    fault = time.monotonic()
    stack.redis.stop()
    wait_until("RedisDown paged", lambda: pagerduty(stack.sink, "RedisDown"))
    paged = time.monotonic() - fault
    wait_until("RedisDown on #alerts-critical", lambda: slack(stack.sink, "#alerts-critical", "RedisDown"))
    wait_until("RedisDown emailed", lambda: emails(stack.smtp, "RedisDown"))
    print(
        f"\nRedis stopped -> PagerDuty: {paged:.1f} s; -> Slack #alerts-critical and email: "
        f"{time.monotonic() - fault:.1f} s"
    )

    # a burst of 5xx (readiness answers 503 while Redis is down), spread over a few scrapes so that
    # Prometheus sees the new series rise rather than appear at its final value
    burst = time.monotonic()
    codes = []
    with httpx.Client(base_url=stack.base) as c:
        while time.monotonic() - burst < 3:
            codes.append(c.get("/health/ready").status_code)
            time.sleep(0.01)
    assert set(codes) == {503}
    wait_until("HighErrorRate paged", lambda: pagerduty(stack.sink, "HighErrorRate"))
    print(f"5xx burst -> HighErrorRate paged: {time.monotonic() - burst:.1f} s")

    recovered = time.monotonic()
    stack.redis.start()
    wait_until("RedisDown resolved at PagerDuty", lambda: pagerduty(stack.sink, "RedisDown", "resolve"))
    wait_until("RedisDown resolved on Slack", lambda: slack(stack.sink, "#alerts-critical", "RedisDown", "resolved"))
    print(f"Redis back -> resolution delivered: {time.monotonic() - recovered:.1f} s")

    # info never hears about a critical
    assert not slack(stack.sink, "#alerts-info", "RedisDown")
    assert not slack(stack.sink, "#alerts-info", "RedisDown", "resolved")
