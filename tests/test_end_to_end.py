"""End to end with real processes: the stack of `make stack` (scripts/stack: PostgreSQL, Redis, `telltale serve`,
`telltale exporter`, Prometheus, Alertmanager, node-exporter, blackbox-exporter, VictoriaMetrics, Debian's
binaries), the shipped rules and routing, and local stand-ins for Slack, PagerDuty and SMTP (they cannot run
here). Scrape and evaluation every second, `for` durations shortened to 1 s, group_wait 1 s. Prints the time
from each fault to its delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from scripts.stack import FAST, Stack
from tests.sinks import Sink, SmtpSink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(timing=FAST, service_env={"TELLTALE_CACHE_TTL_SECONDS": "0.5", "TELLTALE_ENVIRONMENT": "e2e"}) as s:
        yield s


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
        f"{stack.service_url}/api/v1/events",
        headers={"Authorization": f"Bearer {stack.token}"},
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
    with httpx.Client(base_url=stack.service_url) as c:
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
