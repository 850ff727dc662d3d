"""`telltale serve --workers 2`: totals summed over both real uvicorn workers, exemplars kept, dir cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp_receiver import OtlpReceiver
from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


def total(text: str, name: str, **labels: str) -> float:
    out = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out += s.value
    return out


def test_two_workers_sum_and_keep_exemplars(tmp_path: Any) -> None:
    receiver = OtlpReceiver().start()
    port = free_port()
    mp_dir = tmp_path / "prom"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    env.update(
        {
            "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
            "TELLTALE_DRAIN_SECONDS": "0",
            "TELLTALE_INGEST_TOKEN": "ingest",
            "TELLTALE_ACCESS_LOG": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
        }
    )
    (mp_dir).mkdir()
    (mp_dir / "counter_999999.db").write_bytes(b"stale")  # must be wiped at start
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        n = 120
        for i in range(n):  # a fresh connection each time, so the kernel spreads them over both workers
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                r = c.post(
                    "/api/v1/events",
                    headers={"Authorization": "Bearer ingest"},
                    json={"events": [{"type": "login.failed", "organization": f"o{i % 3}"}]},
                )
                assert r.status_code == 202
        pids = {p.name.split("_")[-1] for p in mp_dir.glob("counter_*.db")}
        assert len(pids) >= 2, pids  # both workers served
        for _ in range(4):  # whichever worker answers, the totals are the sum over both
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                text = c.get("/metrics").text
                om = c.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text
            assert total(text, "http_requests_total", route="/api/v1/events", status="202") == n
            assert total(text, "http_request_duration_seconds_count", route="/api/v1/events") == n
            assert total(text, "telltale_login_failures_total") == n
            assert total(text, "telltale_login_failures_total", organization="o0") == n / 3
            assert total(text, "http_requests_in_progress") == 0
            exemplars = [
                line
                for line in om.splitlines()
                if line.startswith("http_request_duration_seconds_bucket") and "trace_id=" in line
            ]
            assert exemplars, "exemplars are kept under several workers"
        assert "_created" not in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.stop()
    time.sleep(0.2)
    assert not mp_dir.exists()  # cleaned at exit
