"""The shipped Alertmanager configuration: amtool checks, pinned routes, inhibition design, secrets,
and the templates as rendered by a real Alertmanager (Debian's prometheus-alertmanager) posting to
a local stand-in for Slack and PagerDuty.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.sinks import Sink, SmtpSink, render_config

ROOT = Path(__file__).resolve().parent.parent
AM_DIR = ROOT / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
ROUTE_CASES = AM_DIR / "tests" / "routes.yml"
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
SECRETS_DIR = "/etc/alertmanager/secrets/"
RUNBOOK = "https://github.com/telltale/telltale/blob/main/docs/runbook.md#"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian package `prometheus-alertmanager`)")
    return path


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def receivers() -> dict[str, dict]:
    return {r["name"]: r for r in config()["receivers"]}


def routed_receivers(labels: dict[str, str], config_file: Path = CONFIG) -> list[str]:
    args = [tool("amtool"), "config", "routes", "test", f"--config.file={config_file}"]
    args += [f"{k}={v}" for k, v in labels.items()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().split(",")


def alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def expected_receivers(severity: str, team: str | None) -> list[str]:
    """The routing policy of docs/alerting.md."""
    receivers = ["dba"] if team == "database" and severity in ("critical", "warning") else []
    return [*receivers, severity if severity in ("critical", "warning", "info") else "default"]


# --- static checks --------------------------------------------------------------------------


def test_amtool_check_config() -> None:
    proc = subprocess.run([tool("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "1 templates" in proc.stdout


def test_amtool_check_config_with_secret_files(tmp_path: Path) -> None:
    """With the secret files present (as deployed), the rendered config still checks."""
    rendered = render_config(tmp_path, "http://127.0.0.1:9/slack", "http://127.0.0.1:9/pagerduty")
    proc = subprocess.run([tool("amtool"), "check-config", str(rendered)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "case",
    yaml.safe_load(ROUTE_CASES.read_text())["cases"],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c["labels"].items() if k != "alertname"),
)
def test_amtool_routes_pinned(case: dict) -> None:
    args = [
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={','.join(case['receivers'])}",
    ]
    args += [f"{k}={v}" for k, v in case["labels"].items()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{case['labels']}: {proc.stdout}{proc.stderr}"


def test_every_alert_rule_routes_by_severity_and_team() -> None:
    wrong = []
    seen = set()
    for rule in alert_rules():
        labels = rule["labels"]
        key = (rule["alert"], labels["severity"], labels["team"])
        if key in seen:
            continue
        seen.add(key)
        got = routed_receivers({"alertname": rule["alert"], **labels, "cluster": "c"})
        want = expected_receivers(labels["severity"], labels["team"])
        if got != want:
            wrong.append(f"{key}: {got} != {want}")
    assert not wrong, "\n".join(wrong)


def test_receivers_per_severity() -> None:
    recv = receivers()
    critical = recv["critical"]
    assert critical["pagerduty_configs"], "critical must page"
    assert [s["channel"] for s in critical["slack_configs"]] == ["#alerts-critical"]
    assert critical["email_configs"]

    warning = recv["warning"]
    assert "pagerduty_configs" not in warning
    assert [s["channel"] for s in warning["slack_configs"]] == ["#alerts"]
    assert warning["email_configs"]

    info = recv["info"]
    assert set(info) == {"name", "slack_configs"}, "info goes to Slack only"
    assert [s["channel"] for s in info["slack_configs"]] == ["#alerts-info"]

    assert "pagerduty_configs" not in recv["dba"]
    for name, receiver in recv.items():
        if name != "critical":
            assert "pagerduty_configs" not in receiver, f"{name} must never page"


def test_grouping_and_cooldown() -> None:
    route = config()["route"]
    assert route["group_by"] == ["alertname", "cluster", "service"]
    assert route["group_wait"] == "30s"
    assert route["group_interval"] == "5m"
    assert route["repeat_interval"] == "1h", "the seeds' cooldown: one notification per issue per hour"
    dba = next(r for r in route["routes"] if r["receiver"] == "dba")
    assert dba["continue"] is True


def matcher_accepts(matcher: str, label: str, value: str) -> bool | None:
    """Whether a matcher string like severity=~"warning|info" accepts label=value (None: other label)."""
    m = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*', matcher)
    assert m, f"cannot parse matcher {matcher!r}"
    name, op, pattern = m.groups()
    if name != label:
        return None
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    matched = re.fullmatch(pattern, value) is not None
    return matched if op == "=~" else not matched


def test_a_critical_alert_is_never_inhibited() -> None:
    """Alertmanager #2754: an inhibited alert never sends its resolution, leaving a page open.

    So every inhibition rule's targets must exclude severity=critical (and alerts without one).
    """
    rules = config()["inhibit_rules"]
    assert len(rules) >= 2
    for rule in rules:
        assert "target_match" not in rule and "target_match_re" not in rule, "use target_matchers"
        verdicts = [matcher_accepts(m, "severity", "critical") for m in rule["target_matchers"]]
        assert False in verdicts, f"inhibit rule {rule} could silence a critical alert"
        missing = [matcher_accepts(m, "severity", "") for m in rule["target_matchers"]]
        assert False in missing, f"inhibit rule {rule} could silence an alert without severity"


def test_inhibitions_cover_twins_and_dependencies() -> None:
    rules = config()["inhibit_rules"]
    twin = next(r for r in rules if r["source_matchers"] == ['severity="critical"'])
    assert twin["target_matchers"] == ['severity="warning"']
    assert {"alertname", "cluster", "service"} <= set(twin["equal"])
    sources = " ".join(m for r in rules for m in r["source_matchers"])
    for name in ("ServiceDown", "TargetDown", "DatabaseDown", "RedisDown"):
        assert name in sources


def test_no_secret_inline() -> None:
    text = CONFIG.read_text()
    for key in ("api_url", "routing_key", "service_key", "auth_password", "slack_api_url", "smtp_auth_password"):
        assert not re.search(rf"^\s*{key}\s*:", text, flags=re.MULTILINE), f"{key} inline: use {key}_file"
    files = re.findall(r"^\s*\w+_file\s*:\s*(\S+)", text, flags=re.MULTILINE)
    assert files
    for path in files:
        assert path.startswith(SECRETS_DIR), path
    assert not re.search(r"hooks\.slack\.com/services/\w", text)


def test_every_notification_uses_the_templates() -> None:
    template = (AM_DIR / "templates" / "telltale.tmpl").read_text()
    for needle in (".Annotations.summary", ".Labels.organization", ".Annotations.runbook_url"):
        assert needle in template
    for receiver in receivers().values():
        for slack in receiver.get("slack_configs", []):
            assert 'template "telltale.text"' in slack["text"]
            assert 'template "telltale.title"' in slack["title"]
        for mail in receiver.get("email_configs", []):
            assert 'template "telltale.email.html"' in mail["html"]
            assert 'template "telltale.text"' in mail["text"]
        for pd in receiver.get("pagerduty_configs", []):
            details = pd["details"]
            assert 'template "telltale.summary"' in details["summary"]
            assert 'template "telltale.organizations"' in details["organization"]
            assert 'template "telltale.runbook"' in details["runbook"]


# --- a real Alertmanager ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.close()


@pytest.fixture
def live_alertmanager(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[tuple[str, Sink]]:
    binary = tool("prometheus-alertmanager")
    sink = Sink()
    cfg_path = render_config(tmp_path, f"{sink.url}/slack", f"{sink.url}/pagerduty", smtp_port=smtp_sink.port)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["route"].update(group_wait="1s", group_interval="1s")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg_path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
            assert time.monotonic() < deadline, "alertmanager did not become ready"
            time.sleep(0.1)
        yield url, sink
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        sink.close()


def post_alerts(url: str, alerts: list[dict]) -> None:
    req = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def make_alert(name: str, severity: str, team: str, service: str, summary: str, **labels: str) -> dict:
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "team": team,
            "component": "test",
            "service": service,
            "cluster": "test",
            **labels,
        },
        "annotations": {
            "summary": summary,
            "description": f"{summary} (description)",
            "runbook_url": RUNBOOK + name.lower(),
        },
    }


def test_live_notifications_carry_summary_organization_and_runbook(live_alertmanager, smtp_sink) -> None:
    url, sink = live_alertmanager
    post_alerts(
        url,
        [
            make_alert(
                "PaymentFailureRate", "critical", "payments", "telltale", "Payments fail for acme", organization="acme"
            ),
            make_alert(
                "DeploymentCompleted",
                "info",
                "platform",
                "telltale",
                "Deployment completed for acme",
                organization="acme",
            ),
            make_alert("SlowDatabaseQueries", "warning", "database", "postgres", "Slow PostgreSQL queries"),
        ],
    )

    def channels() -> set[str]:
        return {m.get("channel") for m in sink.messages("/slack")}

    wait_for(
        lambda: {"#alerts-critical", "#alerts-info", "#alerts", "#dba"} <= channels() and sink.messages("/pagerduty")
    )
    time.sleep(1.5)  # let anything unexpected arrive too

    pages = sink.messages("/pagerduty")
    assert len(pages) == 1, pages
    page = pages[0]
    assert page["routing_key"] == "test-routing-key-0123456789abcdef"
    assert page["event_action"] == "trigger"
    assert "Payments fail for acme" in page["payload"]["summary"]
    details = page["payload"]["custom_details"]
    assert details["summary"] == "Payments fail for acme"
    assert details["organization"] == "acme"
    assert details["runbook"] == RUNBOOK + "paymentfailurerate"
    assert page["links"][0]["href"] == RUNBOOK + "paymentfailurerate"

    by_channel: dict[str, list[dict]] = {}
    for message in sink.messages("/slack"):
        by_channel.setdefault(message["channel"], []).append(message)
    assert set(by_channel) == {"#alerts-critical", "#alerts-info", "#alerts", "#dba"}
    expectations = {
        "#alerts-critical": ("Payments fail for acme", "Organization: acme", "paymentfailurerate"),
        "#alerts-info": ("Deployment completed for acme", "Organization: acme", "deploymentcompleted"),
        "#alerts": ("Slow PostgreSQL queries", "Organization: platform-wide", "slowdatabasequeries"),
        "#dba": ("Slow PostgreSQL queries", "Organization: platform-wide", "slowdatabasequeries"),
    }
    for channel, (summary, organization, anchor) in expectations.items():
        [message] = by_channel[channel]
        attachment = message["attachments"][0]
        text = attachment["text"]
        assert summary in attachment["title"] and summary in text, text
        assert organization in text, text
        assert RUNBOOK + anchor in text and attachment["title_link"] == RUNBOOK + anchor

    # email: critical to on-call, warning to ops and (database) the DBAs; info never emailed
    wait_for(lambda: len(smtp_sink.received()) >= 3)
    time.sleep(1)
    mails = {rcpt: msg for rcpts, msg in smtp_sink.received() for rcpt in rcpts}
    assert set(mails) == {"oncall@telltale.example.com", "ops@telltale.example.com", "dba@telltale.example.com"}
    oncall = mails["oncall@telltale.example.com"]
    assert "Payments fail for acme" in oncall["Subject"]
    for part in ("html", "plain"):
        body = oncall.get_body(preferencelist=(part,)).get_content()
        assert "Payments fail for acme" in body and "acme" in body
        assert RUNBOOK + "paymentfailurerate" in body
    assert mails["dba@telltale.example.com"]["Subject"].startswith("[DATABASE]")
    assert "Slow PostgreSQL queries" in mails["ops@telltale.example.com"]["Subject"]


def test_live_critical_inhibits_its_warning_twin_and_is_never_inhibited(live_alertmanager) -> None:
    url, sink = live_alertmanager
    post_alerts(
        url,
        [
            make_alert("DiskSpaceLow", "critical", "platform", "host", "Disk / is over 90% full", path="/"),
            make_alert("DiskSpaceLow", "warning", "platform", "host", "Disk / is over 80% full", path="/"),
            make_alert("RedisDown", "critical", "platform", "redis", "Redis is down"),
            make_alert("LowRedisCacheHitRatio", "warning", "platform", "redis", "Low Redis cache hit ratio"),
            # a critical alert of a down service is never inhibited, even by ServiceDown
            make_alert("ServiceDown", "critical", "platform", "telltale", "Telltale service is down"),
            make_alert("HighErrorRate", "critical", "platform", "telltale", "Telltale error rate is over 5%"),
            make_alert(
                "HealthCheckUnhealthy", "warning", "platform", "telltale", "Health check x is unhealthy", check="x"
            ),
            # control: a warning nothing inhibits is delivered
            make_alert("HighQueueDepth", "warning", "platform", "queue", "Queue default has over 1000 jobs waiting"),
        ],
    )
    wait_for(
        lambda: (
            len(sink.messages("/pagerduty")) >= 4 and any(m["channel"] == "#alerts" for m in sink.messages("/slack"))
        )
    )
    time.sleep(3)
    paged = {p["payload"]["custom_details"]["summary"] for p in sink.messages("/pagerduty")}
    assert paged == {
        "Disk / is over 90% full",
        "Redis is down",
        "Telltale service is down",
        "Telltale error rate is over 5%",
    }
    warnings = [m["attachments"][0]["title"] for m in sink.messages("/slack") if m["channel"] == "#alerts"]
    assert len(warnings) == 1 and "HighQueueDepth" in warnings[0], warnings
