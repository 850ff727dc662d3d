"""docs/scaling.md's configuration snippets and the shipped cluster override stay valid: the Prometheus
`alerting:` section is checked by promtool inside the shipped prometheus.yml, the webhook receiver by
amtool inside the shipped alertmanager.yml, the compose override by the compose JSON schema; and all three
name the same two peers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from telltale.config.settings import load_settings

from tests.sinks import render_config

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "scaling.md").read_text()
OVERRIDE = ROOT / "alertmanager" / "cluster" / "docker-compose.cluster.yml"
PEERS = ["alertmanager:9093", "alertmanager-1:9093"]


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC, flags=re.DOTALL)


def snippet(starting: str) -> str:
    [block] = [b for b in yaml_blocks() if b.lstrip().startswith(starting)]
    return block


def tool(name: str) -> str:
    """A binary on PATH, or a Python tool installed beside this interpreter (the .venv's check-jsonschema)."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps`")
    return path


def test_the_alerting_section_lists_both_peers_and_passes_promtool(tmp_path: Path) -> None:
    alerting = yaml.safe_load(snippet("alerting:"))["alerting"]
    assert alerting["alertmanagers"][0]["static_configs"][0]["targets"] == PEERS
    cfg = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    cfg["alerting"] = alerting
    shutil.copytree(ROOT / "prometheus" / "rules", tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_webhook_receiver_passes_amtool_and_names_the_real_route(tmp_path: Path) -> None:
    hook = yaml.safe_load(snippet("webhook_configs:"))["webhook_configs"]
    assert hook[0]["url"] == "http://telltale:8000/api/v1/alerts/webhook"
    rendered = render_config(tmp_path, "http://127.0.0.1:9/slack", "http://127.0.0.1:9/pagerduty")
    secret = hook[0]["http_config"]["authorization"]["credentials_file"]
    (tmp_path / "secrets" / Path(secret).name).write_text("token")
    hook[0]["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "secrets" / Path(secret).name)
    cfg = yaml.safe_load(rendered.read_text())
    next(r for r in cfg["receivers"] if r["name"] == "critical")["webhook_configs"] = hook
    rendered.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run([tool("amtool"), "check-config", str(rendered)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/api/v1/alerts/webhook" in (ROOT / "app" / "webhook.py").read_text()


def test_the_compose_override_is_valid_and_joins_the_same_two_peers() -> None:
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(OVERRIDE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    services = yaml.safe_load(OVERRIDE.read_text())["services"]
    for me, other in (("alertmanager", "alertmanager-1"), ("alertmanager-1", "alertmanager")):
        flags = services[me]["command"]
        assert f"--cluster.peer={other}:9094" in flags
        assert "--cluster.listen-address=0.0.0.0:9094" in flags
        assert f"--web.external-url=http://{me}:9093" in flags
    urls = services["telltale"]["environment"]["TELLTALE_ALERTMANAGER_URL"]
    settings = load_settings(alertmanager_url=urls)
    assert [f"{u.host}:{u.port}" for u in settings.alertmanager_url or ()] == PEERS
