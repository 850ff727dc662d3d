"""Settings load in a Kubernetes pod: with every service-link variable the kubelet would inject, and the manifests.

`kubelet_service_env` follows pkg/kubelet/envvars (FromServices, makeLinkVariables): for each Service with a
cluster IP, `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT` (first port), `{SVC}_SERVICE_PORT_{NAME}` (named ports),
`{SVC}_PORT` (first port, `proto://ip:port`) and per port `{SVC}_PORT_{PORT}_{PROTO}` with `_PROTO`, `_PORT`,
`_ADDR`. Names upper-cased, dashes to underscores.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from telltale.app.cli import _parser
from telltale.app.instrumentation.tracing import tracing_requested
from telltale.config.exporter import load_exporter_settings
from telltale.config.settings import load_settings
from telltale.config.unknown import unknown_variables

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _docs() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def kubelet_service_env(service: dict[str, Any], cluster_ip: str) -> dict[str, str]:
    """Exactly what the kubelet injects for one Service (none for a headless one)."""
    spec = service.get("spec", {})
    ip = spec.get("clusterIP", cluster_ip)
    if not ip or ip == "None":
        return {}
    ports = spec.get("ports") or []
    prefix = _env_name(service["metadata"]["name"])
    env = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    for i, port in enumerate(ports):
        proto = port.get("protocol", "TCP")
        url = f"{proto.lower()}://{host}:{port['port']}"
        if i == 0:
            env[f"{prefix}_PORT"] = url
        base = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
        env.update({base: url, f"{base}_PROTO": proto.lower(), f"{base}_PORT": str(port["port"]), f"{base}_ADDR": ip})
    return env


def _service(name: str, *ports: dict[str, Any], cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": list(ports)}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"kind": "Service", "metadata": {"name": name}, "spec": spec}


# beyond what deploy/ ships: Services someone may well add beside it
EXTRA_SERVICES = [
    _service("telltale-exporter", {"name": "metrics", "port": 9465}),
    _service("telltale-health", {"port": 8000}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}),
    _service("telltale-v6", {"name": "http", "port": 80, "protocol": "SCTP"}, cluster_ip="fd00:10:96::c"),
    _service("telltale-headless", {"port": 8000}, cluster_ip="None"),
]


def _services() -> list[dict[str, Any]]:
    return [d for d in _docs() if d.get("kind") == "Service"]


def _pod_specs() -> list[dict[str, Any]]:
    out = []
    for d in _docs():
        spec = d.get("spec", {})
        if d.get("kind") == "Pod":
            out.append(spec)
        elif "template" in spec:
            out.append(spec["template"]["spec"])
        elif "jobTemplate" in spec:
            out.append(spec["jobTemplate"]["spec"]["template"]["spec"])
    return out


def _clear_telltale_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("TELLTALE_", "OTEL_")):
            monkeypatch.delenv(name)


def _image_env() -> dict[str, str]:
    """The Dockerfile's `ENV`: what every container of the telltale image starts with, under its own env."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _listen_address(args: list[str]) -> tuple[str, int]:
    """Where `telltale <args>` binds under the current environment: the CLI's own parser, then the settings."""
    parsed = _parser().parse_args(args)
    if parsed.command == "serve":
        s = load_settings(host=parsed.host, port=parsed.port)
        return s.host, s.port
    assert parsed.command == "exporter", args
    xs = load_exporter_settings(host=parsed.host, port=parsed.port)
    return xs.host, xs.port


def _reachable(host: str) -> bool:
    """Bound where another container or pod can connect: not a loopback address."""
    return host not in {"localhost", ""} and not ipaddress.ip_address(host).is_loopback


def _all_links(services: list[dict[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, svc in enumerate(services):
        env.update(kubelet_service_env(svc, f"10.96.0.{12 + i}"))
    return env


def test_the_manifests_have_services() -> None:
    assert MANIFESTS and _services()
    names = set(_all_links(_services()))
    assert {"TELLTALE_PORT", "TELLTALE_SERVICE_HOST", "TELLTALE_PORT_8000_TCP_ADDR"} <= names
    # every shipped Service's links are in the environment the settings tests load under
    for svc in _services():
        prefix = _env_name(svc["metadata"]["name"])
        assert {f"{prefix}_SERVICE_HOST", f"{prefix}_PORT"} <= names, svc["metadata"]["name"]


def test_every_pod_turns_service_links_off() -> None:
    specs = _pod_specs()
    assert specs
    assert all(spec.get("enableServiceLinks") is False for spec in specs)


@pytest.mark.parametrize("extra", [False, True], ids=["deploy", "deploy+extra"])
def test_settings_load_with_the_service_links(monkeypatch: pytest.MonkeyPatch, extra: bool) -> None:
    """A pod with service links on (the Kubernetes default) starts: the link variables are ignored, not errors."""
    services = _services() + (EXTRA_SERVICES if extra else [])
    links = _all_links(services)
    _clear_telltale_env(monkeypatch)
    for name, value in links.items():
        monkeypatch.setenv(name, value)
    assert links["TELLTALE_PORT"].startswith("tcp://")
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    xs = load_exporter_settings()
    assert (xs.host, xs.port) == ("127.0.0.1", 9465)
    assert unknown_variables() == {}


def test_an_explicit_port_still_wins_and_a_bad_one_still_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_telltale_env(monkeypatch)
    monkeypatch.setenv("TELLTALE_PORT", "9100")
    assert load_settings().port == 9100
    for bad in ("tcp://10.96.0.12", "tcp://10.96.0.12:8000/x", "http://10.96.0.12:8000", "tcp://db.local:8000"):
        monkeypatch.setenv("TELLTALE_PORT", bad)
        with pytest.raises(Exception, match="TELLTALE_PORT"):
            load_settings()
    monkeypatch.setenv("TELLTALE_PORT", "8000")
    monkeypatch.setenv("TELLTALE_SERVICE_HOST", "not-an-ip")
    assert list(unknown_variables()) == ["TELLTALE_SERVICE_HOST"]


def _secret_files(tmp_path: Path) -> dict[str, Path]:
    """Each mounted Secret key as a file, by the path the pod would see."""
    secrets = {d["metadata"]["name"]: d for d in _docs() if d.get("kind") == "Secret"}
    files: dict[str, Path] = {}
    for spec in _pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                secret = volumes[mount["name"]].get("secret")
                if not secret:
                    continue
                data = secrets[secret["secretName"]].get("stringData", {})
                for key, value in data.items():
                    local = tmp_path / secret["secretName"] / key
                    local.parent.mkdir(exist_ok=True)
                    local.write_text(value)
                    files[f"{mount['mountPath'].rstrip('/')}/{key}"] = local
    return files


def test_each_container_starts_with_its_manifest_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every container's env (secrets through `*_FILE` from the mounted Secret), plus every service link."""
    files = _secret_files(tmp_path)
    links = _all_links(_services())
    checked = 0
    for spec in _pod_specs():
        for container in spec["containers"]:
            _clear_telltale_env(monkeypatch)
            env = dict(links)
            env.update(_image_env())
            for var in container.get("env", []):
                value = str(var["value"])
                env[var["name"]] = str(files[value]) if var["name"].endswith("_FILE") else value
            assert not container.get("envFrom"), "secrets go through *_FILE, never the environment"
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            s = load_settings()
            load_exporter_settings()
            assert unknown_variables() == {}
            # the declared port is served where Prometheus and the Service can reach it
            host, port = _listen_address(container["args"])
            assert _reachable(host), f"{container['name']} binds {host}: unreachable from outside the pod"
            assert port in {p["containerPort"] for p in container["ports"]}, container["name"]
            if any(v["name"] == "TELLTALE_HEALTH_TOKEN_FILE" for v in container.get("env", [])):
                assert s.health_token is not None
            checked += 1
    assert checked >= 2


def test_compose_services_load_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose.yml: secrets as compose secrets through `*_FILE`, and each Telltale service's env loads."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    samples = {"database_url": "postgresql://telltale:pw@postgres:5432/platform", "token": "compose-token"}
    checked = 0
    for name, svc in compose["services"].items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items() if k.startswith(("TELLTALE_", "OTEL_"))}
        if not env:
            continue
        assert "env_file" not in svc, f"{name}: secrets go through compose secrets and *_FILE"
        _clear_telltale_env(monkeypatch)
        for var, value in _image_env().items():
            monkeypatch.setenv(var, value)
        for var, value in env.items():
            if var.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in svc.get("secrets", []) and secret in compose["secrets"], (name, var)
                local = tmp_path / secret
                local.write_text(samples["database_url" if "URL" in var else "token"] + "\n")
                value = str(local)
            monkeypatch.setenv(var, value)
        load_settings()
        load_exporter_settings()
        assert unknown_variables() == {}
        host, port = _listen_address(svc["command"])
        assert _reachable(host), f"{name} binds {host}: unreachable from the other containers"
        published = {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])} | set(
            map(int, svc.get("expose", []))
        )
        assert port in published, name
        # traces: on wherever an OTLP endpoint is given (Tempo's, for the service)
        assert tracing_requested() == ("OTEL_EXPORTER_OTLP_ENDPOINT" in env), name
        checked += 1
    assert checked == 2
