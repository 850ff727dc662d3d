"""What leaves Prometheus for the long-term store and for Alertmanager, read from the shipped
prometheus/prometheus.yml, and the copy `make stack` renders from it.

The keep regex of remote_write and the names of rules/recording.yml must agree: every hourly/daily
aggregate matches, and no SLO ratio and no raw series does. The `replica` label of the HA pair never
leaves a replica. tests/test_stack.py checks the same against the real processes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.stack.render import Ports, render_alertmanager, render_prometheus, render_rules

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "prometheus"
CONFIG = yaml.safe_load((PROM / "prometheus.yml").read_text())
COMPOSE_HOSTS = (
    "telltale",
    "telltale-exporter",
    "alertmanager",
    "node-exporter",
    "blackbox-exporter",
    "victoriametrics",
)


def records(file: str) -> list[str]:
    doc = yaml.safe_load((PROM / "rules" / file).read_text())
    return [rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule]


def longterm() -> dict:
    [rw] = [rw for rw in CONFIG["remote_write"] if rw["name"] == "longterm"]
    return rw


def keep_regex() -> re.Pattern[str]:
    [keep] = [r for r in longterm()["write_relabel_configs"] if r["action"] == "keep"]
    assert keep["source_labels"] == ["__name__"]
    return re.compile(keep["regex"])  # Prometheus anchors relabel regexes: compare with fullmatch


def raw_series_in_rules() -> set[str]:
    """Every metric a rule selects (a name followed by `{` or `[`): the raw series behind the aggregates."""
    names = set()
    for path in (PROM / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                names |= set(re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*[{\[]", rule["expr"]))
    return names - {"by", "without", "on", "ignoring"}


def test_every_hourly_and_daily_aggregate_is_kept() -> None:
    names = records("recording.yml")
    assert len(names) >= 20
    dropped = [n for n in names if not keep_regex().fullmatch(n)]
    assert not dropped, f"recording rules the long-term store would never receive: {dropped}"


def test_no_slo_ratio_and_no_raw_series_is_kept() -> None:
    slo = records("slo.yml")
    raw = raw_series_in_rules()
    assert "job:slo_errors_per_request:ratio_rate1h" in slo and "http_requests_total" in raw
    kept = [n for n in [*slo, *raw] if keep_regex().fullmatch(n)]
    assert not kept, f"series that must stay in Prometheus (30 days) only: {kept}"


def test_the_replica_label_never_leaves_a_replica() -> None:
    assert CONFIG["global"]["external_labels"]["replica"] == "${PROMETHEUS_REPLICA}"
    dropped = {"action": "labeldrop", "regex": "replica"}
    assert dropped in CONFIG["alerting"]["alert_relabel_configs"]
    assert longterm()["url"] == "http://victoriametrics:8428/api/v1/write"
    assert longterm()["write_relabel_configs"][-1] == dropped
    assert "expand-external-labels" in (PROM / "prometheus.yml").read_text()


def test_rendered_config_points_only_at_the_stack(tmp_path: Path) -> None:
    """The copy for loopback ports: no compose host left, the public probes dropped, both replicas
    scraped, and Prometheus' own checker accepts it with the rendered rules."""
    ports = Ports.free()
    text = render_prometheus(ports, replicas=2)
    for host in COMPOSE_HOSTS:
        assert not re.search(rf"(?<![\w.-]){host}:\d", text), host
    cfg = yaml.safe_load(text)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == [f"127.0.0.1:{p}" for p in ports.prometheus]
    assert jobs["blackbox"]["static_configs"][0]["targets"] == [f"http://127.0.0.1:{ports.telltale}/health"]
    assert cfg["remote_write"][0]["url"] == f"http://127.0.0.1:{ports.victoriametrics}/api/v1/write"
    assert cfg["remote_write"][0]["write_relabel_configs"] == longterm()["write_relabel_configs"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make system-deps`")
    (tmp_path / "prometheus.yml").write_text(text)
    (tmp_path / "rules").mkdir()
    for name, rules in render_rules().items():
        (tmp_path / "rules" / name).write_text(rules)
    check = subprocess.run([promtool, "check", "config", tmp_path / "prometheus.yml"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_rendered_alertmanager_config_is_valid(tmp_path: Path) -> None:
    text = render_alertmanager(tmp_path / "am", Ports.free(), "http://127.0.0.1:9", 9)
    assert "/etc/alertmanager/secrets" not in text
    amtool = shutil.which("amtool") or shutil.which("prometheus-alertmanager-amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: run `make system-deps`")
    (tmp_path / "am" / "alertmanager.yml").write_text(text)
    check = subprocess.run(
        [amtool, "check-config", tmp_path / "am" / "alertmanager.yml"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
