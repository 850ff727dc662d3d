"""The shipped Prometheus configuration: promtool checks and unit tests, and rule conventions.

Every alert must carry severity/team/component labels, a `for`, summary/description/runbook_url
annotations whose runbook anchor is a heading of docs/runbook.md, and must be exercised by a
promtool unit test (prometheus/tests/*_test.yml) both firing and quiet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.replica_lint import replica_counted

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*_test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_PREFIX = "https://github.com/telltale/telltale/blob/main/docs/runbook.md#"

SEVERITIES = {"critical", "warning", "info"}
TEAMS = {"platform", "database", "payments", "security", "business"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian package `prometheus`)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules.append({**rule, "_file": path.name, "_group": group["name"]})
    return rules


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


def test_rule_and_test_files_exist() -> None:
    assert {p.name for p in RULE_FILES} >= {
        "alerts-critical.yml",
        "alerts-warning.yml",
        "alerts-info.yml",
        "slo.yml",
        "recording.yml",
    }
    assert TEST_FILES, "no prometheus/tests/*_test.yml"


def test_promtool_check_config() -> None:
    out = run(tool("promtool"), "check", "config", PROM / "prometheus.yml")
    assert "SUCCESS" in out.stdout


def test_promtool_check_rules() -> None:
    run(tool("promtool"), "check", "rules", *RULE_FILES)


def test_promtool_test_rules() -> None:
    out = run(tool("promtool"), "test", "rules", *TEST_FILES)
    assert "FAILED" not in out.stdout + out.stderr


def test_scrape_config() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert set(config["global"]["external_labels"]) >= {"cluster", "environment"}
    assert config["rule_files"] == ["rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"telltale", "telltale-exporter", "node", "blackbox"} <= set(jobs)
    assert jobs["telltale"]["metrics_path"] == "/metrics"
    assert jobs["telltale-exporter"]["static_configs"][0]["targets"][0].endswith(":9465")
    for job in jobs.values():
        seconds = int(job.get("scrape_interval", config["global"]["scrape_interval"]).rstrip("s"))
        assert 10 <= seconds <= 30, job["job_name"]
    blackbox = jobs["blackbox"]
    assert blackbox["params"]["module"] == ["http_2xx"]
    assert any(t.endswith("/health") for t in blackbox["static_configs"][0]["targets"])
    assert {r.get("target_label") for r in blackbox["relabel_configs"]} >= {"__param_target", "instance", "__address__"}
    assert "--storage.tsdb.retention.time=30d" in (PROM / "prometheus.yml").read_text()


def test_every_alert_follows_the_conventions() -> None:
    rules = alert_rules()
    assert len(rules) >= 30
    anchors = runbook_anchors()
    problems = []
    for rule in rules:
        name, labels, ann = rule["alert"], rule.get("labels", {}), rule.get("annotations", {})
        where = f"{rule['_file']}:{name}"
        if "for" not in rule:
            problems.append(f"{where}: no `for`")
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{where}: severity {labels.get('severity')!r}")
        if labels.get("team") not in TEAMS:
            problems.append(f"{where}: team {labels.get('team')!r}")
        if not labels.get("component"):
            problems.append(f"{where}: no component label")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{where}: no {key} annotation")
        url = ann.get("runbook_url", "")
        if not url.startswith(RUNBOOK_PREFIX):
            problems.append(f"{where}: runbook_url {url!r} is not in docs/runbook.md")
        elif url.removeprefix(RUNBOOK_PREFIX) not in anchors:
            problems.append(f"{where}: no heading for #{url.removeprefix(RUNBOOK_PREFIX)} in docs/runbook.md")
    assert not problems, "\n".join(problems)


def test_alerts_are_grouped_by_severity() -> None:
    for rule in alert_rules():
        severity = rule["labels"]["severity"]
        if rule["_file"].startswith("alerts-"):
            assert rule["_file"] == f"alerts-{severity}.yml", rule["alert"]
        else:
            assert rule["_file"] == "slo.yml", rule["alert"]


def test_twins_share_an_alertname_and_a_runbook() -> None:
    by_name: dict[str, list[dict]] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    for name, rules in by_name.items():
        severities = [r["labels"]["severity"] for r in rules]
        assert len(severities) == len(set(severities)), f"{name}: two rules with the same severity"
        assert len({r["annotations"]["runbook_url"] for r in rules}) == 1, name
        assert len({r["labels"]["team"] for r in rules}) == 1, name
    for twin in ("DiskSpaceLow", "HighErrorRate", "HighResponseTime", "ErrorBudgetBurn", "LatencyBudgetBurn"):
        assert {r["labels"]["severity"] for r in by_name[twin]} == {"critical", "warning"}, twin


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    for exp in check["exp_alerts"]:
                        fired.add((check["alertname"], exp["exp_labels"]["severity"]))
                        ann = exp.get("exp_annotations", {})
                        assert set(ann) >= {"summary", "description", "runbook_url"}, (path.name, case["name"])
                else:
                    quiet.add(check["alertname"])
    rules = alert_rules()
    missing_fire = sorted({(r["alert"], r["labels"]["severity"]) for r in rules} - fired)
    missing_quiet = sorted({r["alert"] for r in rules} - quiet)
    assert not missing_fire, f"alerts never tested firing: {missing_fire}"
    assert not missing_quiet, f"alerts never tested quiet (exp_alerts: []): {missing_quiet}"


def test_issue_alerts_are_all_there() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert names >= {
        "ServiceDown",
        "DatabaseDown",
        "RedisDown",
        "QueueWorkersDown",
        "DiskSpaceLow",
        "HighErrorRate",
        "HighResponseTime",
        "SlowDatabaseQueries",
        "HighQueueDepth",
        "HighMemoryUsage",
        "HighCPUUsage",
        "DatabaseConnectionsHigh",
        "DatabaseDeadlocks",
        "HighRollbackRate",
        "LowDatabaseCacheHitRatio",
        "LowRedisCacheHitRatio",
        "ExporterCollectorFailing",
        "HealthCheckUnhealthy",
        "TLSCertificateExpiring",
        "SchedulerHeartbeatStale",
        "DeploymentFailed",
        "LicenseExpiringSoon",
        "DeploymentCompleted",
        "PaymentFailureRate",
        "FailedLoginSpike",
        "RateLimitSpike",
        "ErrorBudgetBurn",
        "LatencyBudgetBurn",
    }


def test_slo_recordings_cover_the_workbook_windows() -> None:
    records = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            records |= {r["record"] for r in group["rules"] if "record" in r}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"job:slo_errors_per_request:ratio_rate{window}" in records
        assert f"job:slo_slow_requests:ratio_rate{window}" in records
    assert {"job:http_requests:rate1h", "job:http_requests:rate1d"} <= records


def test_rules_count_platform_wide_exporter_series_once_whatever_the_replicas() -> None:
    """The exporter is a sidecar of every Telltale pod: a rule that sums its platform-wide series keeps
    `instance` (one answer per exporter) or collapses the copies first (tests/replica_lint.py); promtool
    tests give DatabaseConnectionsHigh and the max recordings two identical exporters."""
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                problems = replica_counted(rule["expr"])
                assert not problems, f"{path.name}: {rule.get('alert') or rule.get('record')}: {problems}"
