"""Tracing end to end: a real `telltale serve` exporting OTLP/HTTP to a receiver this test runs.

Checks the parent/child structure (incoming traceparent -> server span -> one span per check ->
asyncpg / redis spans), that probes and /metrics make no spans (not even orphan DB spans), the
trace_id joining the access log line to its span, and exemplars present when sampled, absent not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.otlp_receiver import OtlpReceiver
from tests.servers import PostgresServer, RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
T_DETAILED = "4bf92f3577b34da6a3ce929d0e0e4736"
T_EVENTS = "0af7651916cd43dd8448eb211c80319c"
T_UNSAMPLED = "11111111111111111111111111111111"
PARENT = "00f067aa0ba902b7"


def traceparent(trace_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{PARENT}-{'01' if sampled else '00'}"


@pytest.fixture(scope="module")
def traced(postgres: PostgresServer, redis_server: RedisServer, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    receiver = OtlpReceiver().start()
    port = free_port()
    log = tmp_path_factory.mktemp("tracing") / "stdout.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_", "PROMETHEUS_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "telltale-test",
            "TELLTALE_DATABASE_URL": postgres.dsn,
            "TELLTALE_REDIS_URL": redis_server.url,
            "TELLTALE_HEALTH_TOKEN": "health-token",
            "TELLTALE_INGEST_TOKEN": "ingest-token",
            "TELLTALE_CACHE_TTL_SECONDS": "0",
            "TELLTALE_DRAIN_SECONDS": "0",
        }
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port), "--log-format", "json"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port)
        yield {"receiver": receiver, "base": f"http://127.0.0.1:{port}", "log": log, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.stop()


def test_spans_structure_probes_quiet_log_join_and_exemplars(traced: dict[str, Any]) -> None:
    receiver: OtlpReceiver = traced["receiver"]
    with httpx.Client(base_url=traced["base"], timeout=10) as c:
        assert c.get("/health/ready").status_code == 200
        assert c.get("/health/live").status_code == 200
        assert c.get("/metrics").status_code == 200
        r = c.get(
            "/health/detailed",
            headers={
                "Authorization": "Bearer health-token",
                "traceparent": traceparent(T_DETAILED),
                "X-Request-ID": "req-trace",
            },
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/api/v1/events",
            headers={"Authorization": "Bearer ingest-token", "traceparent": traceparent(T_EVENTS)},
            json={"events": [{"type": "login.failed", "organization": "acme"}]},
        )
        assert r.status_code == 202
        assert c.get("/health", headers={"traceparent": traceparent(T_UNSAMPLED, sampled=False)}).status_code == 200
        assert c.get("/health/ready").status_code == 200
        om = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}).text
        plain = c.get("/metrics").text

    spans = receiver.wait_for(
        lambda s: (
            any(x["name"] == "POST /api/v1/events" for x in s) and sum(x["name"].startswith("check ") for x in s) >= 6
        )
    )
    time.sleep(0.5)  # anything else would have arrived by now
    spans = receiver.snapshot()
    by_id = {s["span_id"]: s for s in spans}
    # only the two sampled requests made spans: nothing from ready/live/metrics, no orphan DB spans
    assert {s["trace_id"] for s in spans} == {T_DETAILED, T_EVENTS}, [(s["name"], s["trace_id"]) for s in spans]
    server = [s for s in spans if s["parent_span_id"] == PARENT]
    assert sorted(s["name"] for s in server) == ["GET /health/detailed", "POST /api/v1/events"]
    root = next(s for s in server if s["name"] == "GET /health/detailed")
    assert root["kind"] == 2 and root["resource"]["service.name"] == "telltale-test"  # SERVER
    assert root["attributes"]["http.route"] == "/health/detailed"
    assert root["attributes"]["http.response.status_code"] == 200
    checks = {s["name"]: s for s in spans if s["parent_span_id"] == root["span_id"]}
    assert {"check postgres", "check redis", "check disk", "check memory", "check cpu", "check event_loop"} == set(
        checks
    )
    assert checks["check postgres"]["attributes"]["telltale.check.status"] == "healthy"
    db = [s for s in spans if "asyncpg" in s["scope"]]
    assert db and all(by_id[s["parent_span_id"]]["name"] == "check postgres" for s in db)
    rd = [s for s in spans if "redis" in s["scope"]]
    assert rd and all(by_id[s["parent_span_id"]]["name"] == "check redis" for s in rd)

    # the access line carries the same trace and span ids
    records = [json.loads(line) for line in Path(traced["log"]).read_text().splitlines() if line.startswith("{")]
    access = next(r for r in records if r.get("logger") == "telltale.access" and r.get("route") == "/health/detailed")
    assert access["trace_id"] == T_DETAILED and access["span_id"] == root["span_id"]
    assert access["request_id"] == "req-trace"
    assert not [r for r in records if r.get("logger") == "telltale.access" and r.get("route") == "/health/ready"]

    # exemplars: on the sampled request's bucket, never on the unsampled one's; plain text has none
    bucket_lines = [line for line in om.splitlines() if line.startswith("http_request_duration_seconds_bucket")]
    events = [line for line in bucket_lines if 'route="/api/v1/events"' in line and "# {" in line]
    assert len(events) == 1 and f'trace_id="{T_EVENTS}"' in events[0]
    assert not [line for line in bucket_lines if 'route="/health"' in line and "# {" in line]
    assert "trace_id" not in plain
    assert "telltale_otel_spans_dropped_total" in plain


def test_span_counters_describe_their_names_so_a_second_registration_is_refused() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from telltale.app.instrumentation.tracing import register_span_counters

    registry = CollectorRegistry()
    register_span_counters(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_span_counters(registry)
    text = generate_latest(registry).decode()
    assert 'telltale_otel_spans_dropped_total{reason="queue_full"}' in text
    assert "telltale_otel_spans_exported_total " in text
