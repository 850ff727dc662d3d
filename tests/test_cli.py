"""The `telltale` command as a user runs it: exit codes, one-line errors, redacted config, drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from telltale.app import cli

from tests.servers import RedisServer, free_port, wait_port

TELLTALE = [sys.executable, "-m", "telltale.app.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    return subprocess.run([*TELLTALE, *args], env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_check_exit_codes(own_redis: RedisServer) -> None:
    ok = run(
        "check",
        "--json",
        env={
            "TELLTALE_REDIS_URL": own_redis.url,
            "TELLTALE_CPU_LOAD_DEGRADED_PER_CORE": "100",
            "TELLTALE_CPU_LOAD_UNHEALTHY_PER_CORE": "200",
        },
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["checks"]["redis"]["status"] == "healthy"
    degraded = run("check", env={"TELLTALE_DISK_DEGRADED_RATIO": "0", "TELLTALE_DISK_UNHEALTHY_RATIO": "1"})
    assert degraded.returncode == 1
    assert "overall: degraded" in degraded.stdout and "disk" in degraded.stdout
    own_redis.stop()
    down = run("check", env={"TELLTALE_REDIS_URL": own_redis.url})
    assert down.returncode == 2
    assert "overall: unhealthy" in down.stdout


def test_invalid_settings_exit_2_with_one_line() -> None:
    r = run("serve", env={"TELLTALE_DATABASE_URL": "mysql://u:topsecret@x/y"})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("telltale: TELLTALE_DATABASE_URL:")
    assert "Traceback" not in r.stderr and "topsecret" not in r.stderr
    assert run("check", env={"TELLTALE_CHECK_TIMEOUT_SECONDS": "-2"}).returncode == 2


def test_config_prints_effective_settings_redacted() -> None:
    r = run(
        "config",
        env={
            "TELLTALE_DATABASE_URL": "postgresql://app:topsecret@db/x",
            "TELLTALE_HEALTH_TOKEN": "tok-abcdef",
            "TELLTALE_ENVIRONMENT": "prod",
        },
    )
    assert r.returncode == 0
    assert "environment: prod" in r.stdout
    assert "topsecret" not in r.stdout and "tok-abcdef" not in r.stdout
    assert "postgresql://app:***@db/x" in r.stdout and "health_token:\n- '***'" in r.stdout


def test_config_check_validates_a_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("environment: staging\nqueue_depth_degraded: 500\n")
    assert run("config", "--check", str(good)).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("queue_depth_degraded: -5\n")
    r = run("config", "--check", str(bad))
    assert r.returncode == 2
    assert r.stderr == f"telltale: {bad}: queue_depth_degraded: Input should be greater than or equal to 0\n"


def test_serve_drains_on_sigterm() -> None:
    """SIGTERM turns readiness 503 for the drain period while liveness and the socket stay up."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    proc = subprocess.Popen(
        [*TELLTALE, "serve", "--port", str(port)],
        env={**clean, "TELLTALE_DRAIN_SECONDS": "1.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health/ready").status_code == 200
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{base}/health/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "draining"
        assert httpx.get(f"{base}/health/live").status_code == 200
        proc.wait(10)
        assert time.monotonic() - sent >= 1.4
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
    finally:
        proc.kill()
        out = proc.communicate()[0]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line["message"] == "SIGTERM: draining for 1.5 s (TELLTALE_DRAIN_SECONDS)" for line in lines)


def inproc(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`telltale ARGS` in this process (for what exits before serving): the same code, without a start-up each."""
    for name in [n for n in os.environ if n.startswith("TELLTALE_")]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_check_with_an_unknown_tag_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    r = inproc(monkeypatch, capsys, "check", "--tag", "nosuch")
    assert r.returncode == 2
    assert r.stderr == "telltale: --tag nosuch: no check has that tag (tags: live, ready)\n"
    assert r.stdout == ""
    ready = inproc(monkeypatch, capsys, "check", "--tag", "ready", env={"TELLTALE_DISK_UNHEALTHY_RATIO": "1"})
    assert ready.returncode == 0


def test_empty_secrets_stop_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("serve", "check", "config", "exporter"):
        r = inproc(monkeypatch, capsys, command, env={"TELLTALE_HEALTH_TOKEN": ""})
        assert r.returncode == 2, (command, r.stderr)
        assert r.stderr.startswith("telltale: TELLTALE_HEALTH_TOKEN: is empty") and r.stderr.count("\n") == 1
    secret = tmp_path / "token"
    secret.write_text("\n")
    r = run("serve", env={"TELLTALE_INGEST_TOKEN_FILE": str(secret)})  # a real process, as a container starts it
    assert (r.returncode, r.stderr) == (2, f"telltale: TELLTALE_INGEST_TOKEN_FILE: {secret} is empty\n")


def test_a_settings_file_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "settings.yml"
    cfg.write_bytes(b"environment: caf\xe9\n")
    for args in (("config", "--check", str(cfg)), ("serve",)):
        r = inproc(monkeypatch, capsys, *args, env={"TELLTALE_CONFIG": str(cfg)})
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr == f"telltale: TELLTALE_CONFIG: {cfg} is not UTF-8 text (byte 16)\n"


def test_unknown_variables_are_one_warning_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(
        "config",
        env={
            "TELLTALE_HEATH_TOKEN": "s3cret-value",
            "TELLTALE_METRIC_TOKEN_FILE": "/run/secrets/x",
            "TELLTALE_EXPORTER_PROT": "9000",
            "TELLTALE_PORT": "tcp://10.96.0.12:8000",
            "TELLTALE_SERVICE_HOST": "10.96.0.12",
        },
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        "telltale: warning: unknown settings ignored: "
        "TELLTALE_EXPORTER_PROT (did you mean TELLTALE_EXPORTER_PORT?), "
        "TELLTALE_HEATH_TOKEN (did you mean TELLTALE_HEALTH_TOKEN?), "
        "TELLTALE_METRIC_TOKEN_FILE (did you mean TELLTALE_METRICS_TOKEN_FILE?)\n"
    )
    assert "port: 8000" in r.stdout and "s3cret-value" not in r.stdout + r.stderr
    assert inproc(monkeypatch, capsys, "config").stderr == ""
    bad = inproc(
        monkeypatch,
        capsys,
        "check",
        env={"TELLTALE_DATABSE_URL": "postgresql://x/y", "TELLTALE_QUEUES": '[{"name": "q", "backend": "sql"}]'},
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "telltale: settings: sql queues need database_url; warning: unknown settings ignored: "
        "TELLTALE_DATABSE_URL (did you mean TELLTALE_DATABASE_URL?)\n"
    )


def test_serve_writes_the_unknown_variable_warning_as_a_json_line() -> None:
    """In `json` format every line of a long-running command is JSON, the settings warning included."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    env = {**clean, "TELLTALE_HEATH_TOKEN": "s3cret-value", "TELLTALE_PORT": str(port), "TELLTALE_ACCESS_LOG": "0"}
    proc = subprocess.Popen(
        [*TELLTALE, "serve", "--log-format", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_port(port, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in (out + err).splitlines() if line.strip()]
    warning = next(x for x in lines if "unknown settings" in x.get("message", ""))
    assert warning["level"] in ("warning", "WARNING")
    assert "TELLTALE_HEATH_TOKEN (did you mean TELLTALE_HEALTH_TOKEN?)" in warning["message"]
    assert "s3cret-value" not in out + err
