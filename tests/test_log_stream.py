"""The real service and exporter, run as a user runs them in `json` format: every line they write on stdout
and stderr (uvicorn's, httpx's, the span-export child's included) is one JSON object, and no secret
appears in any line or response, through bad requests, 401s, 404s, failing dependencies and a dead
tracing endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "health": "health-s3cret-1",
    "ingest": "ingest-s3cret-2",
    "metrics": "metrics-s3cret-3",
    "dependency": "dep-s3cret-4",
    "websocket": "ws-s3cret-5",
    "database": "db-s3cret-6",
    "otlp_user": "otlp-s3cret-7",
    "otlp_key": "otlp-s3cret-8",
    "redis": "redis-s3cret-9",
    "path": "path-s3cret-10",
    "webhook": "hook-s3cret-11",
}


class _Failing(BaseHTTPRequestHandler):
    """A dependency that answers 500: httpx logs the request line (with its URL) for every probe."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def failing_dependency() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_", "PROMETHEUS_"))}
    return {**clean, **extra}


def _start(args: list[str], env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as o, err.open("wb") as e:
        return subprocess.Popen(
            [sys.executable, "-m", "telltale.app.cli", *args], cwd=ROOT, env=env, stdout=o, stderr=e
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _records(*files: Path) -> list[dict[str, Any]]:
    """Every line of every file, each parsed as one strict JSON object (no NaN, nothing else on the line)."""
    records = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            try:
                record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
            except json.JSONDecodeError:
                pytest.fail(f"{f.name}:{n} is not JSON: {line[:300]!r}")
            assert isinstance(record, dict), f"{f.name}:{n}: {line[:300]!r}"
            records.append(record)
    return records


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for name, secret in SECRETS.items():
            assert secret not in text, f"the {name} secret leaked: ...{text[max(0, text.find(secret) - 200) :][:400]}"


@pytest.mark.parametrize("level,workers", [("info", 1), ("debug", 1), ("info", 2)])
def test_service_stream_is_json_and_secret_free(
    level: str, workers: int, failing_dependency: str, tmp_path: Path
) -> None:
    port, dead = free_port(), free_port()
    deps = [
        {"name": "payments", "url": f"{failing_dependency}/status?access_token={SECRETS['dependency']}&region=eu"},
        {"name": "cloud", "url": f"http://127.0.0.1:{dead}/v1?client_secret={SECRETS['dependency']}"},
    ]
    env = _env(
        {
            "TELLTALE_LOG_LEVEL": level,
            "TELLTALE_HEALTH_TOKEN": SECRETS["health"],
            "TELLTALE_INGEST_TOKEN": SECRETS["ingest"],
            "TELLTALE_METRICS_TOKEN": SECRETS["metrics"],
            "TELLTALE_ALERT_WEBHOOK_TOKEN": SECRETS["webhook"],
            "TELLTALE_HTTP_DEPENDENCIES": json.dumps(deps),
            "TELLTALE_WEBSOCKET_URL": f"ws://127.0.0.1:{dead}/feed?token={SECRETS['websocket']}",
            "TELLTALE_DATABASE_URL": f"postgresql://app:{SECRETS['database']}@127.0.0.1:{dead}/app",
            "TELLTALE_REDIS_URL": f"redis://:{SECRETS['redis']}@127.0.0.1:{dead}/0",
            "TELLTALE_CACHE_TTL_SECONDS": "0",
            "TELLTALE_DRAIN_SECONDS": "0",
            # tracing to a dead collector: the span-export child's failures are lines of the stream too
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
                f"http://otel:{SECRETS['otlp_user']}@127.0.0.1:{dead}/v1/traces?api_key={SECRETS['otlp_key']}"
            ),
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    args = ["serve", "--port", str(port), "--log-format", "json", "--workers", str(workers)]
    proc = _start(args, env, out, err)
    bodies: list[str] = []
    sampled = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    try:
        wait_port(port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as c:
            responses = [
                c.get(f"/a/password={SECRETS['path']}"),  # unauthenticated, unmatched: the line that broke
                c.get(f"/a/x?token={SECRETS['path']}"),
                c.get("/health/detailed"),
                c.get("/health/detailed", headers={"Authorization": "Bearer wrong"}),
                c.get("/health/detailed", headers={"Authorization": f"Bearer {SECRETS['health']}", **sampled}),
                c.get("/health/ready"),
                c.get("/metrics"),
                c.get("/metrics", headers={"Authorization": f"Bearer {SECRETS['metrics']}"}),
                c.post("/api/v1/events", content=b"{not json", headers={"Content-Type": "application/json"}),
                c.post(
                    "/api/v1/events",
                    headers={"Authorization": f"Bearer {SECRETS['ingest']}", "X-Request-ID": SECRETS["ingest"]},
                    json={"events": [{"type": "nosuch", "organization": f"password={SECRETS['path']}"}]},
                ),
                c.post(
                    "/api/v1/events",
                    headers={"Authorization": f"Bearer {SECRETS['ingest']}", **sampled},
                    json={"events": [{"type": "login.failed", "organization": "acme"}]},
                ),
                c.post("/api/v1/alerts/webhook", json={"alerts": []}),
                c.get(f"/nosuch/{SECRETS['health']}"),
            ]
            bodies = [r.text for r in responses]
            statuses = [r.status_code for r in responses]
            assert statuses[0] == statuses[1] == statuses[-1] == 404
            assert statuses[2] == statuses[3] == 401 and statuses[4] in (200, 503)
            assert statuses[8] in (400, 401, 422) and 500 not in statuses
        # the span batch reaches the child, whose post to the dead collector fails (a warning line)
        deadline = time.monotonic() + 20
        while '"logger":"opentelemetry' not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        _stop(proc)
    stdout, stderr = out.read_text(), err.read_text()
    records = _records(out, err)
    _assert_no_secret(stdout, stderr, *bodies)
    loggers = {r["logger"] for r in records}
    assert {"telltale.access", "uvicorn.error"} <= loggers, loggers
    # the last line before uvicorn re-raises SIGTERM (no atexit flush after it) is not lost
    assert any(r["message"].startswith("Finished server process") for r in records), records[-3:]
    paths = [r.get("path") for r in records if r["logger"] == "telltale.access"]
    assert "/a/password=***" in paths
    assert any(r["logger"].startswith("opentelemetry") for r in records), loggers  # the child's lines
    httpx_lines = [r for r in records if r["logger"] == "httpx"]
    if level == "debug":
        assert any("access_token=***" in r["message"] for r in httpx_lines), httpx_lines
    else:
        assert httpx_lines == []


def test_exporter_stream_is_json_and_secret_free(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    env = _env(
        {
            "TELLTALE_METRICS_TOKEN": SECRETS["metrics"],
            "TELLTALE_DATABASE_URL": f"postgresql://app:{SECRETS['database']}@127.0.0.1:{dead}/app",
            "TELLTALE_REDIS_URL": f"redis://:{SECRETS['redis']}@127.0.0.1:{dead}/0",
            "TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS": "1",
        }
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    proc = _start(["exporter", "--port", str(port)], env, out, err)
    try:
        wait_port(port, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as c:
            unauthorized = c.get("/metrics", headers={"Authorization": "Bearer wrong"})
            scraped = c.get("/metrics", headers={"Authorization": f"Bearer {SECRETS['metrics']}"})
            missing = c.get(f"/a/password={SECRETS['path']}")
        assert unauthorized.status_code == 401 and scraped.status_code == 200 and missing.status_code == 404
    finally:
        _stop(proc)
    stdout, stderr = out.read_text(), err.read_text()
    records = _records(out, err)
    _assert_no_secret(stdout, stderr, scraped.text)
    assert any(r["logger"] == "telltale.exporter" and r["level"] == "warning" for r in records), records
    assert any(r["logger"].startswith("uvicorn") for r in records) or stdout, records
