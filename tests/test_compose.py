"""docker-compose.yml: the compose JSON schema, pinned images, the mounts and secrets it names, the hosts and ports
the shipped configs reach, and the Prometheus-family services' own commands run with Debian's binaries.

No Docker engine runs here, so the containers themselves are not started: Grafana, Loki, Alloy and Tempo are
checked by structure only (their configs are other parts' tests). Prometheus, Alertmanager, node-exporter,
blackbox-exporter and VictoriaMetrics run for real with the flags and mounted files of their compose services,
paths mapped back to the repository and named volumes to temp dirs. Telltale's settings under each service's
environment are tests/test_k8s_env.py's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import yaml

from tests.servers import PostgresServer, free_port, pg_bin, wait_ready

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS_CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())

# The fixed names every part shares (service = host name in the shipped configs, and its ports).
FIXED_PORTS = {
    "postgres": {5432},
    "redis": {6379},
    "telltale": {8000},
    "telltale-exporter": {9465},
    "prometheus": {9090},
    "alertmanager": {9093},
    "node-exporter": {9100},
    "blackbox-exporter": {9115},
    "grafana": {3000},
    "loki": {3100},
    "alloy": {12345},
    "tempo": {3200, 4317, 4318},
    "victoriametrics": {8428},
}
# Files other parts of issue 10 write at fixed paths (repository path -> path in the container). Until those
# branches are merged they may be missing here; each that exists must be the kind of thing mounted.
OTHER_PARTS = {
    "grafana/grafana.ini": "/etc/grafana/grafana.ini",
    "grafana/provisioning": "/etc/grafana/provisioning",
    "grafana/dashboards": "/var/lib/grafana/dashboards",
    "loki/loki.yml": "/etc/loki/loki.yml",
    "loki/rules": "/etc/loki/rules",
    "loki/alloy/config.alloy": "/etc/alloy/config.alloy",
}
DIRECTORIES = {"grafana/provisioning", "grafana/dashboards", "loki/rules"}
# Host paths a service may mount besides the repository's: the engine's socket and logs, the host for node-exporter.
HOST_PATHS = {"/var/run/docker.sock", "/var/lib/docker/containers", "/"}
# An exact release: major.minor.patch (PostgreSQL numbers its releases major.minor), never `latest` or a major.
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*:v?\d+\.\d+\.\d+(-[a-z0-9.]+)?$")
PINNED_POSTGRES = re.compile(r"^postgres:\d+\.\d+$")


def _ports(svc: dict[str, Any]) -> set[int]:
    """The container ports a service declares (`expose`, and the container side of `ports`)."""
    out = {int(p) for p in svc.get("expose", [])}
    for p in svc.get("ports", []):
        out.add(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return out


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    kind: str  # "repo", "host" or "volume"


def _mounts(svc: dict[str, Any]) -> list[Mount]:
    out = []
    for spec in svc.get("volumes", []):
        source, target = spec.split(":")[:2]
        kind = "repo" if source.startswith("./") else "host" if source.startswith("/") else "volume"
        out.append(Mount(source.removeprefix("./"), target, kind))
    return out


def _secret_refs(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(secret name, path in the container) for each secret a service takes, short or long form."""
    out = []
    for ref in svc.get("secrets", []):
        source, target = (ref, ref) if isinstance(ref, str) else (ref["source"], ref.get("target", ref["source"]))
        out.append((source, target if target.startswith("/") else f"/run/secrets/{target}"))
    return out


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """The CLI from the venv; its builtin (vendored) schemas need no network."""
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(exe), "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=120
    )


def test_the_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    proc = _check_jsonschema(COMPOSE_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and the check can fail: one misspelt key in a copy of the file
    broken = COMPOSE_FILE.read_text().replace("    healthcheck:", "    healtcheck:", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    proc = _check_jsonschema(tmp_path / "docker-compose.yml")
    assert proc.returncode == 1 and "healtcheck" in proc.stdout, proc.stdout + proc.stderr


def test_every_image_is_pinned_to_a_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        if "build" in svc:
            assert image == f"telltale:{version}", f"{name}: the built image is tagged with pyproject's version"
        else:
            assert PINNED.match(image) or PINNED_POSTGRES.match(image), f"{name}: {image} is not pinned to a version"


def test_the_fixed_service_names_declare_their_ports() -> None:
    for name, ports in FIXED_PORTS.items():
        assert name in SERVICES, f"missing service {name}"
        assert ports <= _ports(SERVICES[name]), f"{name}: declares {_ports(SERVICES[name])}, wants {ports}"


def test_every_dependency_waits_on_a_condition_the_dependency_can_meet() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on with conditions, not a bare list"
        for dep, spec in deps.items():
            assert dep in SERVICES, (name, dep)
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert SERVICES[dep].get("restart") == "no", f"{dep} runs once"


def test_every_mounted_repository_path_exists_or_is_another_parts_fixed_path() -> None:
    missing = []
    for name, svc in SERVICES.items():
        for mount in _mounts(svc):
            if mount.kind == "host":
                assert mount.source in HOST_PATHS, f"{name}: mounts host path {mount.source}"
            elif mount.kind == "volume":
                assert mount.source in COMPOSE["volumes"], f"{name}: volume {mount.source} is not declared"
            elif mount.source in OTHER_PARTS:
                assert OTHER_PARTS[mount.source] == mount.target, (name, mount)
                path = ROOT / mount.source
                if path.exists():
                    assert path.is_dir() == (mount.source in DIRECTORIES), mount.source
                else:
                    missing.append(mount.source)
            else:
                assert (ROOT / mount.source).exists(), f"{name}: mounts ./{mount.source}, which is not in the repo"
    # every fixed path of the other parts is mounted somewhere; `missing` lists those not merged yet
    mounted = {m.source for svc in SERVICES.values() for m in _mounts(svc)}
    assert set(OTHER_PARTS) <= mounted
    assert set(missing) <= set(OTHER_PARTS)


def test_every_named_volume_is_used() -> None:
    used = {m.source for svc in SERVICES.values() for m in _mounts(svc) if m.kind == "volume"}
    assert used == set(COMPOSE["volumes"])


def test_secrets_are_files_named_by_their_settings() -> None:
    """Each secret a service takes is declared from ./secrets/ (git-ignored); every `*_FILE`/`*__FILE` variable names
    a secret the service mounts; and no setting that is a secret is given in the environment itself."""
    declared = COMPOSE["secrets"]
    assert "secrets/" in (ROOT / ".gitignore").read_text().split(), "./secrets/ stays out of git"
    for name, spec in declared.items():
        assert spec["file"].startswith("./secrets/"), name
    used = set()
    for name, svc in SERVICES.items():
        refs = _secret_refs(svc)
        assert all(source in declared for source, _ in refs), name
        used |= {source for source, _ in refs}
        paths = {target for _, target in refs}
        env = {str(k): str(v) for k, v in (svc.get("environment") or {}).items()}
        for var, value in env.items():
            if var.endswith("_FILE"):
                assert value in paths, f"{name}: {var}={value} is not a mounted secret"
            assert not re.search(r"(PASSWORD|TOKEN|SECRET)$", var), f"{name}: {var} puts a secret in the environment"
    assert used == set(declared), "declared secrets nothing mounts"


def test_alertmanager_gets_every_file_its_config_names() -> None:
    config = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    wanted = set(re.findall(r"_file:\s*(/\S+)", config))
    assert wanted
    mounted = {target for _, target in _secret_refs(SERVICES["alertmanager"])}
    assert wanted <= mounted


def _scrape_addresses() -> dict[str, list[str]]:
    """job -> the host:port Prometheus connects to (for a blackbox job, the exporter, not the probed targets)."""
    out: dict[str, list[str]] = {}
    for job in PROMETHEUS_CONFIG["scrape_configs"]:
        address = [r["replacement"] for r in job.get("relabel_configs", []) if r.get("target_label") == "__address__"]
        targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        out[job["job_name"]] = address or targets
    return out


def _reaches(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def test_every_host_prometheus_reaches_is_a_service_with_that_port() -> None:
    addresses = [a for targets in _scrape_addresses().values() for a in targets]
    for am in PROMETHEUS_CONFIG.get("alerting", {}).get("alertmanagers", []):
        addresses += [t for sc in am.get("static_configs", []) for t in sc["targets"]]
    for rw in PROMETHEUS_CONFIG.get("remote_write", []):
        url = urlsplit(rw["url"])
        addresses.append(f"{url.hostname}:{url.port}")
    checked = 0
    for address in addresses:
        host, port = _reaches(address)
        if host == "localhost":  # Prometheus itself
            continue
        assert host in SERVICES, f"prometheus.yml reaches {address}: no such service"
        assert port in _ports(SERVICES[host]), f"prometheus.yml reaches {address}: {host} does not declare {port}"
        checked += 1
    assert {"telltale", "telltale-exporter", "node", "blackbox"} <= set(_scrape_addresses())
    assert checked >= 5


def test_the_blackbox_modules_prometheus_uses_are_configured() -> None:
    modules = yaml.safe_load((ROOT / "deploy" / "blackbox" / "blackbox.yml").read_text())["modules"]
    used = {m for job in PROMETHEUS_CONFIG["scrape_configs"] for m in job.get("params", {}).get("module", [])}
    assert used and used <= set(modules)


def _flags(svc: dict[str, Any]) -> dict[str, str]:
    out = {}
    for arg in svc.get("command", []):
        if arg.startswith("-") and "=" in arg:
            key, value = arg.lstrip("-").split("=", 1)
            out[key] = value
        elif arg.startswith("-"):
            out[arg.lstrip("-")] = ""
    return out


def test_prometheus_keeps_30_days_with_exemplars_and_the_lifecycle_api() -> None:
    flags = _flags(SERVICES["prometheus"])
    assert flags["storage.tsdb.retention.time"] == "30d"
    assert set(flags["enable-feature"].split(",")) == {"exemplar-storage", "expand-external-labels"}
    assert "web.enable-lifecycle" in flags
    # prometheus.yml's replica label is expanded from the environment, so it must be set
    assert "${PROMETHEUS_REPLICA}" in (ROOT / "prometheus" / "prometheus.yml").read_text()
    assert SERVICES["prometheus"]["environment"]["PROMETHEUS_REPLICA"]


def test_the_long_term_store_keeps_a_year_and_dedups_at_the_aggregates_interval() -> None:
    """Only recording.yml's aggregates are written there: the HA replicas' samples of one evaluation step
    fall in one dedup window only if the window is that group's interval."""
    flags = _flags(SERVICES["victoriametrics"])
    assert flags["retentionPeriod"] in {"1y", "12", "12M", "365d"}
    (group,) = yaml.safe_load((ROOT / "prometheus" / "rules" / "recording.yml").read_text())["groups"]
    assert flags["dedup.minScrapeInterval"] == group["interval"]
    assert flags["httpListenAddr"].endswith(":8428")


def test_telltale_sends_traces_to_tempos_otlp_http_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint the OTLP/HTTP exporter derives from the compose environment is Tempo's receiver."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    tempo = yaml.safe_load((ROOT / "deploy" / "tempo" / "tempo.yml").read_text())
    receivers = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert receivers["http"]["endpoint"] == "0.0.0.0:4318" and receivers["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert tempo["server"]["http_listen_port"] == 3200
    assert tempo["storage"]["trace"]["backend"] == "local"
    volumes = {m.target: m for m in _mounts(SERVICES["tempo"])}
    assert (
        tempo["storage"]["trace"]["local"]["path"].startswith("/var/tempo/") and volumes["/var/tempo"].kind == "volume"
    )
    assert volumes["/etc/tempo/tempo.yml"].source == "deploy/tempo/tempo.yml"

    env = SERVICES["telltale"]["environment"]
    for var in [v for v in os.environ if v.startswith("OTEL_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        if var.startswith("OTEL_"):
            monkeypatch.setenv(var, str(value))
    exporter = OTLPSpanExporter()
    try:
        assert exporter._endpoint == "http://tempo:4318/v1/traces"
    finally:
        exporter.shutdown()


def test_grafana_reads_its_secrets_from_files() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET__FILE"].startswith("/run/secrets/")
    assert not any(k.startswith("GF_AUTH_ANONYMOUS") for k in env), "anonymous access is grafana.ini's to refuse"


def test_every_secret_file_grafana_ini_names_is_mounted() -> None:
    named = set(re.findall(r"\$__file\{(/run/secrets/[^}]+)\}", (ROOT / "grafana" / "grafana.ini").read_text()))
    assert named, "grafana.ini reads its secrets from files"
    mounted = {target for _, target in _secret_refs(SERVICES["grafana"])}
    assert named <= mounted, f"grafana.ini reads {sorted(named - mounted)}, which compose does not mount"


def test_alloy_reads_the_engines_logs_and_its_config() -> None:
    mounts = {m.target: m for m in _mounts(SERVICES["alloy"])}
    assert mounts["/var/run/docker.sock"].source == "/var/run/docker.sock"
    assert mounts["/var/lib/docker/containers"].source == "/var/lib/docker/containers"
    ro = [v for v in SERVICES["alloy"]["volumes"] if v.startswith(("/var/run/docker.sock", "/var/lib/docker"))]
    assert all(v.endswith(":ro") for v in ro)
    assert "/etc/alloy/config.alloy" in SERVICES["alloy"]["command"]


# --- the real binaries, with each compose service's own flags and mounted files -------------------------------


@dataclass(frozen=True)
class Binary:
    names: tuple[str, ...]
    listen_flag: str
    ready_path: str
    extra: tuple[str, ...] = ()


BINARIES = {
    "prometheus": Binary(("prometheus",), "--web.listen-address", "/-/ready"),
    "alertmanager": Binary(
        ("prometheus-alertmanager", "alertmanager"), "--web.listen-address", "/-/ready", ("--cluster.listen-address=",)
    ),
    "node-exporter": Binary(("prometheus-node-exporter", "node_exporter"), "--web.listen-address", "/metrics"),
    "blackbox-exporter": Binary(
        ("prometheus-blackbox-exporter", "blackbox_exporter"), "--web.listen-address", "/-/healthy"
    ),
    "victoriametrics": Binary(("victoria-metrics", "victoria-metrics-prod"), "-httpListenAddr", "/health"),
}


def _host_path(svc: dict[str, Any], container_path: str, volumes: Path) -> str:
    """Where a container path of this service is on this machine: the longest mount prefix, mapped back."""
    best: Mount | None = None
    for mount in _mounts(svc):
        if (container_path == mount.target or container_path.startswith(mount.target.rstrip("/") + "/")) and (
            best is None or len(mount.target) > len(best.target)
        ):
            best = mount
    if best is None:
        return container_path
    rest = container_path[len(best.target) :].lstrip("/")
    base = {"repo": ROOT / best.source, "host": Path(best.source), "volume": volumes / best.source}[best.kind]
    if best.kind == "volume":
        base.mkdir(parents=True, exist_ok=True)
    return str(base / rest) if rest else str(base)


def _local_command(name: str, port: int, volumes: Path) -> list[str]:
    svc, binary = SERVICES[name], BINARIES[name]
    exe = next((p for p in map(shutil.which, binary.names) if p), None)
    if exe is None:
        pytest.fail(f"{binary.names[0]} is not installed: run `make system-deps`")
    args = [exe]
    for arg in svc.get("command", []):
        key, eq, value = arg.partition("=")
        if key == binary.listen_flag:
            continue
        if eq and value.startswith("/"):
            arg = f"{key}={_host_path(svc, value, volumes)}"
        args.append(arg)
    return [*args, f"{binary.listen_flag}=127.0.0.1:{port}", *binary.extra]


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, str]]:
    """Each Prometheus-family compose service started from its compose command; name -> base URL."""
    root = Path(tempfile.mkdtemp(prefix="telltale-compose-"))
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for name in BINARIES:
            port = free_port()
            with open(root / f"{name}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        _local_command(name, port, root / "volumes"), cwd=root, stdout=log, stderr=subprocess.STDOUT
                    )
                )
            urls[name] = f"http://127.0.0.1:{port}"
        for name, url in urls.items():
            try:
                wait_ready(url + BINARIES[name].ready_path, timeout=30)
            except TimeoutError:
                pytest.fail(f"{name} did not start from its compose command:\n{(root / f'{name}.log').read_text()}")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_prometheus_starts_with_its_compose_flags_and_loads_every_rule_group(running: dict[str, str]) -> None:
    groups = _get_json(running["prometheus"] + "/api/v1/rules")["data"]["groups"]
    shipped = [
        g
        for p in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
        for g in yaml.safe_load(p.read_text())["groups"]
    ]
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in shipped)
    flags = _get_json(running["prometheus"] + "/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "30d" and flags["web.enable-lifecycle"] == "true"
    assert "exemplar-storage" in flags["enable-feature"]


def test_alertmanager_starts_with_its_compose_config(running: dict[str, str]) -> None:
    status = _get_json(running["alertmanager"] + "/api/v2/status")
    assert "route:" in status["config"]["original"]


def test_node_exporter_reads_the_host_through_its_rootfs_mapping(running: dict[str, str]) -> None:
    assert "node_filesystem_size_bytes" in _get_text(running["node-exporter"] + "/metrics")


def test_the_blackbox_module_prometheus_uses_probes_a_live_endpoint(running: dict[str, str]) -> None:
    """The compose blackbox config's http_2xx module, probing VictoriaMetrics's /health for real."""
    query = urlencode({"module": "http_2xx", "target": running["victoriametrics"] + "/health"})
    assert "probe_success 1" in _get_text(f"{running['blackbox-exporter']}/probe?{query}")
    query = urlencode({"module": "http_2xx", "target": "http://127.0.0.1:1/"})
    assert "probe_success 0" in _get_text(f"{running['blackbox-exporter']}/probe?{query}")


def test_victoriametrics_starts_with_a_year_of_retention(running: dict[str, str]) -> None:
    flags = _get_text(running["victoriametrics"] + "/metrics")
    assert re.search(r'flag\{name="retentionPeriod", value="1y", is_set="true"\}', flags), (
        "retention flag not in effect"
    )
    assert re.search(r'flag\{name="dedup.minScrapeInterval", value="1m0s", is_set="true"\}', flags)


# --- the compose Postgres's first start: the role Telltale connects as -----------------------------------------


def _init_postgres(server: PostgresServer, dsn: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """What the postgres image's entrypoint does with ./deploy/sql: each file in name order, .sql through psql,
    an executable .sh run with the entrypoint's variables (here pointed at the test server over TCP)."""
    secret = tmp_path / "telltale_database_url"
    secret.write_text(dsn + "\n")
    env = {
        **os.environ,
        "PATH": f"{Path(pg_bin('psql')).parent}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "TELLTALE_DATABASE_URL_FILE": str(secret),
    }
    proc = None
    for path in sorted((ROOT / "deploy" / "sql").iterdir()):
        if path.suffix == ".sql":
            server.psql_file(path)
        else:
            assert path.suffix == ".sh" and os.access(path, os.X_OK), f"{path.name}: the entrypoint would source it"
            proc = subprocess.run([str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert proc is not None
    return proc


async def test_the_first_start_makes_the_role_the_dsn_names_and_the_exporter_reads_as_it(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families
    from telltale.config.exporter import load_exporter_settings
    from telltale.config.settings import load_settings
    from telltale.exporter.main import create_exporter

    proc = _init_postgres(own_postgres, "postgresql://telltale:s3cret-pw@postgres:5432/platform", tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = own_postgres.psql(
        "select rolcanlogin, rolsuper, rolpassword like 'SCRAM-SHA-256$%',"
        " pg_has_role('telltale', 'pg_monitor', 'member') from pg_authid where rolname = 'telltale'"
    )
    assert row == "t|f|t|t"
    # the exporter as that role (trust auth here: the password is checked above, the privileges here)
    app = create_exporter(
        load_settings(database_url=own_postgres.dsn_for("postgres", user="telltale")), load_exporter_settings()
    )
    try:
        text = await app.exporter.scrape()
    finally:
        await app.aclose()
    success = {
        (s.name, s.labels.get("collector") or s.labels.get("query")): s.value
        for family in text_string_to_metric_families(text.decode() if isinstance(text, bytes) else text)
        for s in family.samples
        if s.name in {"telltale_exporter_collector_success", "telltale_exporter_query_success"}
    }
    assert success[("telltale_exporter_collector_success", "postgres")] == 1
    assert success[("telltale_exporter_collector_success", "sql")] == 1
    queries = {k: v for k, v in success.items() if k[0] == "telltale_exporter_query_success"}
    assert queries and all(v == 1 for v in queries.values()), queries


def test_a_superuser_dsn_makes_no_role_and_a_role_without_password_is_refused(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    proc = _init_postgres(own_postgres, "postgresql://postgres:pw@postgres:5432/platform", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert own_postgres.psql("select count(*) from pg_roles where not rolname ~ '^(pg_|postgres$)'") == "0"
    for path in (ROOT / "deploy" / "sql").glob("*.sh"):
        (tmp_path / "telltale_database_url").write_text("postgresql://telltale@postgres:5432/platform\n")
        env = {**os.environ, "TELLTALE_DATABASE_URL_FILE": str(tmp_path / "telltale_database_url")}
        proc = subprocess.run([str(path)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "without a password" in proc.stderr
