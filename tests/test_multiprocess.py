"""`telltale serve --workers 2`: totals summed over both real uvicorn workers, exemplars kept, a killed
worker's in-flight requests forgotten, and only Telltale's own files removed from the metrics directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from telltale.app.instrumentation import multiprocess

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
    (mp_dir / "operator-notes.txt").write_text("not ours")  # must survive: the directory is the operator's
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
                    json={
                        "events": [
                            {"type": "login.failed", "organization": f"o{i % 3}"},
                            # its durations reach the histogram as bucket counts: summed over workers too
                            {"type": "requests.summary", "requests": 2, "server_errors": 1, "durations_seconds": [0.2]},
                        ]
                    },
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
            assert total(text, "telltale_organization_requests_total", outcome="server_error") == n
            assert total(text, "telltale_organization_request_duration_seconds_bucket", le="0.25") == n
            assert total(text, "telltale_organization_request_duration_seconds_bucket", le="0.1") == 0
            assert total(text, "http_requests_in_progress") == 0
            exemplars = [
                line
                for line in om.splitlines()
                if line.startswith("http_request_duration_seconds_bucket") and "trace_id=" in line
            ]
            assert exemplars, "exemplars are kept under several workers"
        assert "_created" not in text
        # process_*: the whole service (supervisor and workers), one series each, not the answering worker's
        service = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]
        rss = sum(p.memory_info().rss for p in service)
        assert total(text, "process_resident_memory_bytes") == pytest.approx(rss, rel=0.25)
        assert total(text, "process_start_time_seconds") == pytest.approx(service[0].create_time(), abs=1)
        assert (
            sum(s.name == "process_cpu_seconds_total" for f in text_string_to_metric_families(text) for s in f.samples)
            == 1
        )
        assert total(text, "process_max_fds") > 0 and total(text, "process_open_fds") > 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.stop()
    time.sleep(0.2)
    assert sorted(p.name for p in mp_dir.iterdir()) == ["operator-notes.txt"]  # our files gone, the rest kept


@contextmanager
def serve_two_workers(mp_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    env.update(
        {
            "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
            "TELLTALE_DRAIN_SECONDS": "0",
            "TELLTALE_INGEST_TOKEN": "ingest",
            "TELLTALE_ACCESS_LOG": "false",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def in_progress(port: int) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        return total(c.get("/metrics").text, "http_requests_in_progress")


def cpu_seconds(port: int) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        return total(c.get("/metrics").text, "process_cpu_seconds_total")


def test_a_worker_killed_mid_request_leaves_the_in_progress_gauge(tmp_path: Any) -> None:
    """kill -9 while a request's body is still arriving: its in-flight count goes when the worker does."""
    mp_dir = tmp_path / "prom"
    with serve_two_workers(mp_dir) as (proc, port):
        slow = socket.create_connection(("127.0.0.1", port))
        try:
            slow.sendall(
                b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ingest\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"events": ['
            )
            local = slow.getsockname()[1]
            deadline = time.monotonic() + 10
            while in_progress(port) != 1:
                assert time.monotonic() < deadline, "the slow request never showed as in progress"
                time.sleep(0.1)
            serving = [
                w
                for w in psutil.Process(proc.pid).children()
                if any(c.laddr and c.raddr and c.raddr.port == local for c in w.net_connections("tcp"))
            ]
            assert len(serving) == 1, serving
            cpu_before = cpu_seconds(port)
            serving[0].kill()  # SIGKILL: no finally, no decrement
            serving[0].wait(5)
            deadline = time.monotonic() + 10
            while (seen := in_progress(port)) != 0:
                assert time.monotonic() < deadline, f"http_requests_in_progress stayed at {seen}"
                time.sleep(0.2)
            assert not list(mp_dir.glob(f"gauge_live*_{serving[0].pid}.db"))  # marked dead
            assert list(mp_dir.glob(f"counter_{serving[0].pid}.db"))  # its counts stay in the totals
            assert cpu_seconds(port) >= cpu_before  # the dead worker's CPU stays counted (the supervisor's cutime)
        finally:
            slow.close()


def test_the_operators_directory_keeps_everything_but_our_metric_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pointed at a shared directory (think /tmp), only prometheus-client's *.db files are ever removed."""
    shared = tmp_path / "tmp"
    (shared / "sub").mkdir(parents=True)
    for name in ("notes.txt", "counter.db", "histogram_12.db.bak", "sub/counter_1.db", "mine_123.db"):
        (shared / name).write_text("someone else's")
    (shared / "counter_5.db").mkdir()  # a directory by a metric file's name is not ours either
    (shared / "counter_999999.db").write_bytes(b"stale")
    (shared / "gauge_livesum_999998.db").write_bytes(b"stale")
    (shared / f"counter_{os.getpid()}.db").write_bytes(b"stale: an earlier run's, with the pid we have now")
    (shared / f"histogram_{os.getppid()}.db").write_bytes(b"another running program's")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    assert multiprocess.prepare_multiprocess_dir() == str(shared)
    kept = sorted(str(p.relative_to(shared)) for p in shared.rglob("*"))
    others = [
        "counter.db",
        "counter_5.db",
        "histogram_12.db.bak",
        "mine_123.db",
        "notes.txt",
        "sub",
        "sub/counter_1.db",
    ]
    assert kept == sorted([*others, f"histogram_{os.getppid()}.db"])  # a running program's files stay too
    (shared / "counter_999997.db").write_bytes(b"a worker's, now dead")
    (shared / f"counter_{os.getppid()}.db").write_bytes(b"another running process's")
    multiprocess.cleanup_multiprocess_dir(str(shared))
    after = sorted(str(p.relative_to(shared)) for p in shared.rglob("*"))
    assert after == sorted([*kept, f"counter_{os.getppid()}.db"])  # the directory stays, with all that is not ours


def test_only_a_directory_telltale_created_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "new" / "prom"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    path = multiprocess.prepare_multiprocess_dir()
    (missing / "counter_999997.db").write_bytes(b"x")
    multiprocess.cleanup_multiprocess_dir(path)
    assert not missing.exists() and missing.parent.exists()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    temp = multiprocess.prepare_multiprocess_dir()  # none given: a fresh temp directory, ours to remove
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == temp
    (Path(temp) / "notes.txt").write_text("someone wrote here")
    multiprocess.cleanup_multiprocess_dir(temp)
    assert (Path(temp) / "notes.txt").exists()  # not empty: left in place, never removed wholesale
    (Path(temp) / "notes.txt").unlink()
    os.rmdir(temp)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unusable_directory_is_one_line_and_exit_2(tmp_path: Path, workers: str) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    r = subprocess.run(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--workers", workers, "--port", str(free_port())],
        env={**env, "PROMETHEUS_MULTIPROC_DIR": str(afile)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert r.stderr == f"telltale: PROMETHEUS_MULTIPROC_DIR: not a directory: {afile}\n"
    assert afile.read_text() == "x"


def test_one_worker_with_the_variable_set_prepares_and_cleans_its_directory(tmp_path: Path) -> None:
    """The variable alone puts prometheus-client in multiprocess mode: a missing directory is created, not a crash."""
    missing = tmp_path / "prom"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port)],
        env={**env, "PROMETHEUS_MULTIPROC_DIR": str(missing), "TELLTALE_DRAIN_SECONDS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert total(text, "http_requests_total", route="/health/ready") == 1
        assert total(text, "process_resident_memory_bytes") > 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert not missing.exists()  # Telltale created it, so Telltale removed it
