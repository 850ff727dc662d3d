"""deploy/kubernetes: every built-in object against Kubernetes 1.30's schemas (kubernetes-validate, strict, offline),
the Prometheus Operator's objects against the fields it requires, the PrometheusRule against the rule files it is
generated from (and promtool), and the wiring between objects: selectors, ports, probes, tokens.

No cluster runs here: the manifests are not applied. The probes' paths are requested from the real service and
exporter apps in-process; settings under each container's environment are tests/test_k8s_env.py's.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.apps import service

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
OPERATOR_API = "monitoring.coreos.com/v1"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("telltale_kube_generate", KUBE / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATE = _load_generator()
DOCS: list[dict[str, Any]] = [d for p in sorted(KUBE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    found = _kind(kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


DEPLOYMENT = _one("Deployment")
POD = DEPLOYMENT["spec"]["template"]
CONTAINERS = {c["name"]: c for c in POD["spec"]["containers"]}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    if not selector:
        return False  # an empty selector is "everything": never what these objects mean
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# --- schemas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if not d["apiVersion"].startswith("monitoring.coreos.com/")],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_builtin_object_is_valid_for_kubernetes_1_30(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_object_is_builtin_or_the_operators() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in DOCS}
    custom = {k for k in kinds if k[0].startswith("monitoring.coreos.com/")}
    assert custom == {(OPERATOR_API, "ServiceMonitor"), (OPERATOR_API, "PrometheusRule")}


def test_images_are_pinned_to_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for container in CONTAINERS.values():
        assert container["image"] == f"telltale:{version}", container["name"]


# --- the Prometheus Operator's objects ---------------------------------------------------------------------------


def test_the_operators_objects_carry_the_documented_selector_label() -> None:
    """kube-prometheus-stack's Prometheus picks ServiceMonitors and PrometheusRules by `release: <release>`."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for key, value in GENERATE.SELECTOR_LABELS.items():
        assert f"{key}: {value}" in docs
        for doc in _kind("ServiceMonitor") + _kind("PrometheusRule"):
            assert doc["metadata"]["labels"].get(key) == value, doc["metadata"]["name"]


def _duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Prometheus duration: {text}"
    return sum(int(n) * units[u] for n, u in parts)


def test_the_service_monitor_selects_the_services_and_names_their_ports() -> None:
    monitor = _one("ServiceMonitor")
    spec = monitor["spec"]
    selected = [s for s in _kind("Service") if _matches(spec["selector"], s["metadata"].get("labels", {}))]
    assert {s["metadata"]["name"] for s in selected} == {"telltale", "telltale-exporter"}
    port_names = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in port_names, f"endpoint port {endpoint['port']} names no Service port"
        interval = _duration_seconds(endpoint.get("interval", "30s"))
        assert _duration_seconds(endpoint.get("scrapeTimeout", "10s")) <= interval
    # the job label is the Service's name: one job per Service, as the rules expect (`job="telltale"`)
    jobs = {s["metadata"]["name"] for s in selected for p in s["spec"]["ports"] if p["name"] in port_names}
    assert "telltale" in jobs


def _served_by(port_name: str) -> dict[str, Any]:
    """The container behind a Service port name (through its targetPort)."""
    for svc in _kind("Service"):
        for port in svc["spec"]["ports"]:
            if port["name"] == port_name:
                target = port["targetPort"]
                for container in CONTAINERS.values():
                    if any(target in (p.get("name"), p["containerPort"]) for p in container["ports"]):
                        return container
    raise AssertionError(f"no container serves {port_name}")


def test_the_service_monitor_sends_the_metrics_token_the_container_wants() -> None:
    """A container with TELLTALE_METRICS_TOKEN_FILE gets the same Secret key as the scrape's bearer token; one
    without it gets none (and would answer 401 to nothing, so a stray token hides no misconfiguration)."""
    secret = _one("Secret")
    mounts = {
        m["mountPath"].rstrip("/"): v["secret"]["secretName"]
        for v in POD["spec"]["volumes"]
        if "secret" in v
        for c in CONTAINERS.values()
        for m in c.get("volumeMounts", [])
        if m["name"] == v["name"]
    }
    for endpoint in _one("ServiceMonitor")["spec"]["endpoints"]:
        container = _served_by(endpoint["port"])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        token_file = env.get("TELLTALE_METRICS_TOKEN_FILE")
        auth = endpoint.get("authorization")
        if token_file is None:
            assert auth is None, endpoint["port"]
            continue
        assert auth and auth.get("type", "Bearer") == "Bearer", endpoint["port"]
        directory, key = token_file.rsplit("/", 1)
        assert auth["credentials"] == {"name": mounts[directory], "key": key}
        assert secret["metadata"]["name"] == mounts[directory] and key in secret["stringData"]


def test_the_prometheus_rules_have_what_the_operator_requires(tmp_path: Path) -> None:
    rules = _kind("PrometheusRule")
    assert rules
    names = [g["name"] for r in rules for g in r["spec"]["groups"]]
    assert names and len(names) == len(set(names)), "group names are unique across PrometheusRules"
    for doc in rules:
        for group in doc["spec"]["groups"]:
            assert group["rules"], group["name"]
            for rule in group["rules"]:
                assert ("record" in rule) != ("alert" in rule), rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
                if "for" in rule:
                    _duration_seconds(rule["for"])
    # and Prometheus would load them: promtool over the groups exactly as the operator writes them
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian package `prometheus`)")
    for doc in rules:
        path = tmp_path / f"{doc['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}, sort_keys=False))
        proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_committed_prometheus_rule_is_what_the_generator_writes() -> None:
    committed = (KUBE / "prometheusrule.yaml").read_text()
    assert committed == GENERATE.render(), "deploy/kubernetes/prometheusrule.yaml is out of date: run `make kubernetes`"


def test_the_prometheus_rules_hold_exactly_the_rule_files_groups() -> None:
    shipped = {
        p.stem: yaml.safe_load(p.read_text())["groups"] for p in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    }
    generated = {d["metadata"]["name"].removeprefix("telltale-"): d["spec"]["groups"] for d in _kind("PrometheusRule")}
    assert generated == shipped


def test_the_drift_check_notices_a_changed_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in (ROOT / "prometheus" / "rules").glob("*.yml"):
        (rules / path.name).write_text(path.read_text())
    assert GENERATE.render(rules) == GENERATE.render()
    recording = rules / "recording.yml"
    recording.write_text(recording.read_text().replace("[1h]", "[2h]", 1))
    assert GENERATE.render(rules) != GENERATE.render()


def test_a_group_name_in_two_rule_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.yml", "b.yml"):
        (tmp_path / name).write_text(
            "groups:\n  - name: same\n    rules:\n      - record: x:y\n        expr: vector(1)\n"
        )
    with pytest.raises(ValueError, match="same"):
        GENERATE.render(tmp_path)


# --- the Deployment's own checks -------------------------------------------------------------------------------


def test_the_service_container_probes_the_health_endpoints() -> None:
    telltale = CONTAINERS["telltale"]
    assert telltale["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert telltale["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert telltale["startupProbe"]["httpGet"]["path"] == "/health/live"
    # readiness answers within the health deadline, so the kubelet's timeout is above it
    env = {e["name"]: e.get("value") for e in telltale["env"]}
    assert telltale["readinessProbe"]["timeoutSeconds"] > float(env["TELLTALE_HEALTH_DEADLINE_SECONDS"])


def test_every_probe_names_a_port_of_its_container() -> None:
    for container in CONTAINERS.values():
        ports = {p["name"] for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert kind in container, f"{container['name']}: no {kind}"
            assert container[kind]["httpGet"]["port"] in ports, (container["name"], kind)


def _probe_paths(container: str) -> set[str]:
    c = CONTAINERS[container]
    return {c[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}


async def test_the_service_answers_its_probes() -> None:
    """The real app, in-process, with no dependency configured: each probe path answers 200."""
    async with service() as client:
        for path in _probe_paths("telltale"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


async def test_the_exporter_answers_its_probes() -> None:
    from telltale.config.exporter import load_exporter_settings
    from telltale.config.settings import load_settings
    from telltale.exporter.main import create_exporter

    app = create_exporter(load_settings(), load_exporter_settings())
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter.test") as client:
            for path in _probe_paths("exporter"):
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
    finally:
        await app.aclose()


def test_every_container_requests_and_limits_its_resources() -> None:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for container in CONTAINERS.values():
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]
        request, limit = (
            int(v[:-2]) * units[v[-2:]] for v in (resources["requests"]["memory"], resources["limits"]["memory"])
        )
        assert request <= limit, container["name"]


# --- selectors and references between objects -----------------------------------------------------------------


def test_every_selector_matches_the_pods() -> None:
    labels = POD["metadata"]["labels"]
    assert _matches(DEPLOYMENT["spec"]["selector"], labels)
    for svc in _kind("Service"):
        assert _matches({"matchLabels": svc["spec"]["selector"]}, labels), svc["metadata"]["name"]
    assert _matches(_one("PodDisruptionBudget")["spec"]["selector"], labels)
    assert _matches(_one("NetworkPolicy")["spec"]["podSelector"], labels)


def test_every_service_port_targets_a_container_port() -> None:
    for svc in _kind("Service"):
        for port in svc["spec"]["ports"]:
            assert _served_by(port["name"]), port


def test_the_autoscaler_scales_the_deployment_on_a_requested_resource() -> None:
    hpa = _one("HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "telltale"}
    for metric in spec["metrics"]:
        source = metric.get("containerResource") or metric["resource"]
        containers = [CONTAINERS[source["container"]]] if "container" in source else list(CONTAINERS.values())
        for container in containers:
            assert source["name"] in container["resources"]["requests"], "utilization is measured against requests"
    # the disruption budget leaves room to drain a node at the smallest size
    assert spec["minReplicas"] > _one("PodDisruptionBudget")["spec"]["minAvailable"]
    assert DEPLOYMENT["spec"]["replicas"] >= spec["minReplicas"]


def test_the_network_policy_opens_the_api_and_the_exporter_to_the_right_peers_only() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    http = CONTAINERS["telltale"]["ports"][0]["containerPort"]
    exporter = CONTAINERS["exporter"]["ports"][0]["containerPort"]
    opened: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            opened.setdefault(port["port"], []).extend(rule["from"])
    assert set(opened) == {http, exporter}, "nothing else is reachable from outside the pod"

    def namespaces(peers: list[dict[str, Any]]) -> set[str]:
        return {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers}

    assert namespaces(opened[http]) == {"ingress-nginx", "monitoring"}
    assert namespaces(opened[exporter]) == {"monitoring"}
    assert all(_matches(p["podSelector"], {"app.kubernetes.io/name": "prometheus"}) for p in opened[exporter])
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379, 4318, 9093} <= egress_ports


def test_the_network_policy_lets_out_what_the_containers_are_configured_to_reach() -> None:
    """Each port in the containers' URLs (OTLP, Alertmanager) and the Secret's DSNs is open for egress."""
    egress_ports = {p["port"] for rule in _one("NetworkPolicy")["spec"]["egress"] for p in rule["ports"]}
    urls = [
        e["value"] for c in CONTAINERS.values() for e in c.get("env", []) if str(e.get("value", "")).startswith("http")
    ]
    urls += [v for v in _one("Secret")["stringData"].values() if "://" in v]
    assert len(urls) >= 4
    for url in urls:
        parsed = httpx.URL(url)
        port = parsed.port or {"http": 80, "https": 443, "postgresql": 5432, "redis": 6379}[parsed.scheme]
        assert port in egress_ports, url
