"""Grafana's provisioning (grafana/provisioning/) and its grafana.ini: datasources, the dashboards provider, SSO.

No Grafana binary can run on this machine, so these read the files as Grafana would and check what
they promise: the fixed datasource uids every dashboard and link relies on, that every link between
datasources names one that is provisioned and survives Grafana's environment-variable expansion, the
provider's path and folders, and an SSO-only sign-in whose role mapping is evaluated with a real
JMESPath implementation (the language Grafana evaluates it in). That a span finds its log lines and a
log line its trace is checked against a real run's lines in tests/test_loki_config.py.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "telltale.yml"
EXPECTED = {
    "telltale-prometheus": ("prometheus", "http://prometheus:9090"),
    "telltale-longterm": ("prometheus", "http://victoriametrics:8428"),
    "telltale-loki": ("loki", "http://loki:3100"),
    "telltale-tempo": ("tempo", "http://tempo:3200"),
    "telltale-alertmanager": ("alertmanager", "http://alertmanager:9093"),
}
SECRET_NAME = re.compile(r"(password|secret|credential|token|(^|_)key)$", re.IGNORECASE)
SECRET_FIELD = re.compile(r"password|secret|token|credential", re.IGNORECASE)  # in provisioning YAML
SECRET_REFERENCE = re.compile(r"\$__(file|env|vault)\{[^}]+\}")
_SPECIAL = set("*#$@!?-0123456789")


def _expand_env(text: str, named: list[str]) -> str:
    """Go's os.ExpandEnv with an empty environment, recording the names it looked up."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        rest = text[i + 1 :]
        if rest[0] == "{":
            end = rest.find("}")
            if end <= 1:  # `${` without a name: Go eats it
                i += 1 + (2 if end == 1 else 1)
                continue
            named.append(rest[1:end])
            i += 1 + end + 1
        elif rest[0] in _SPECIAL:
            named.append(rest[0])
            i += 2
        else:
            name = re.match(r"[A-Za-z0-9_]*", rest).group()  # type: ignore[union-attr]
            if name:
                named.append(name)
            else:
                out.append("$")  # `$` before anything else stays
            i += 1 + len(name)
    return "".join(out)


def interpolate(value: Any, named: list[str]) -> Any:
    """Grafana's interpolation of every string in a provisioning file
    (pkg/services/provisioning/values): `$$` is a literal `$`, the rest goes through os.ExpandEnv."""
    if isinstance(value, dict):
        return {k: interpolate(v, named) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, named) for v in value]
    if isinstance(value, str):
        return "$".join(_expand_env(part, named) for part in value.split("$$"))
    return value


def datasources(named: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The provisioned datasources by uid, as Grafana reads them (interpolated, empty environment)."""
    raw = yaml.safe_load(DATASOURCES.read_text())
    config = interpolate(raw, named if named is not None else [])
    return {d["uid"]: d for d in config["datasources"]}


def grafana_ini() -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), inline_comment_prefixes=None)
    ini.read_string((GRAFANA / "grafana.ini").read_text())
    return ini


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _walk(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


# --- datasources -------------------------------------------------------------------------------


def test_datasources_have_the_fixed_uids_types_and_stack_addresses() -> None:
    provisioned = datasources()
    assert {uid: (d["type"], d["url"]) for uid, d in provisioned.items()} == EXPECTED
    assert len({d["name"] for d in provisioned.values()}) == len(provisioned)
    assert [uid for uid, d in provisioned.items() if d.get("isDefault")] == ["telltale-prometheus"]
    assert all(d["access"] == "proxy" and d["editable"] is False for d in provisioned.values())


def test_every_link_between_datasources_names_a_provisioned_uid() -> None:
    provisioned = datasources()
    links = [
        (uid, path, value)
        for uid, d in provisioned.items()
        for path, value in _walk(d.get("jsonData", {}))
        if path.endswith(".datasourceUid")
    ]
    assert len(links) >= 4
    for uid, path, value in links:
        assert value in provisioned, f"{uid}{path} -> {value!r} is not provisioned"


def test_metrics_logs_and_traces_link_to_each_other() -> None:
    provisioned = datasources()
    [exemplar] = provisioned["telltale-prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar == {**exemplar, "name": "trace_id", "datasourceUid": "telltale-tempo"}
    [derived] = provisioned["telltale-loki"]["jsonData"]["derivedFields"]
    assert derived["matcherType"] == "label" and derived["matcherRegex"] == "trace_id"
    assert derived["datasourceUid"] == "telltale-tempo" and derived["url"] == "${__value.raw}"
    tempo = provisioned["telltale-tempo"]["jsonData"]
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "telltale-loki"
    assert tempo["tracesToMetrics"]["datasourceUid"] == "telltale-prometheus"
    for query in tempo["tracesToMetrics"]["queries"]:
        assert "{$__tags" in query["query"] and "[$__rate_interval]" in query["query"], query


def test_grafanas_own_variables_survive_environment_expansion() -> None:
    """An unescaped `${__value.raw}` would be read as an (empty) environment variable: the link breaks."""
    named: list[str] = []
    text = json.dumps(datasources(named))
    assert named == [], f"environment variables named (escape Grafana's `$` as `$$`): {named}"
    for macro in ("${__value.raw}", "${__tags}", "${__trace.traceId}", "$__rate_interval"):
        assert macro in text, macro


def test_prometheus_time_interval_is_the_telltale_scrape_interval() -> None:
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "telltale"]
    assert datasources()["telltale-prometheus"]["jsonData"]["timeInterval"] == job["scrape_interval"]


def test_trace_to_metrics_tag_is_a_label_of_the_telltale_job() -> None:
    """Spans carry service.name=telltale; Grafana maps it to `service`, which the scrape job must set."""
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "telltale"]
    tags = datasources()["telltale-tempo"]["jsonData"]["tracesToMetrics"]["tags"]
    assert tags == [{"key": "service.name", "value": "service"}]
    assert job["static_configs"][0]["labels"]["service"] == "telltale"


# --- dashboards provider -----------------------------------------------------------------------


def test_dashboards_provider_reads_the_mounted_folder_tree() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "telltale.yml").read_text())
    [provider] = config["providers"]
    assert provider["type"] == "file" and provider["orgId"] == 1
    assert provider["options"] == {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": True}
    # a fixed folder would override the one the file tree gives
    assert "folder" not in provider and "folderUid" not in provider
    assert provider["allowUiUpdates"] is False


def test_generated_dashboards_sit_one_folder_deep() -> None:
    """grafana/dashboards/<Folder>/<dashboard>.json: the folder is the Grafana folder's name."""
    root = GRAFANA / "dashboards"
    for path in root.rglob("*.json") if root.exists() else []:
        assert len(path.relative_to(root).parts) == 2, path


# --- grafana.ini: sign-in ------------------------------------------------------------------------


def test_anonymous_access_sign_up_and_the_login_form_are_off() -> None:
    ini = grafana_ini()
    assert ini.getboolean("auth.anonymous", "enabled") is False
    assert ini.getboolean("auth", "disable_login_form") is True
    assert ini.getboolean("auth.basic", "enabled") is False
    assert ini.getboolean("users", "allow_sign_up") is False
    assert ini.getboolean("users", "allow_org_create") is False
    assert ini.getboolean("snapshots", "external_enabled") is False


def test_cookies_are_secure() -> None:
    ini = grafana_ini()
    assert ini.getboolean("security", "cookie_secure") is True
    assert ini.get("security", "cookie_samesite") in ("lax", "strict")
    assert ini.get("server", "root_url").startswith("https://")


def test_sso_is_openid_connect_over_https_with_pkce() -> None:
    oauth = grafana_ini()["auth.generic_oauth"]
    assert oauth.getboolean("enabled") and oauth.getboolean("use_pkce") and oauth.getboolean("auto_login")
    assert oauth.getboolean("tls_skip_verify_insecure") is False
    assert "openid" in oauth["scopes"].split()
    for key in ("auth_url", "token_url", "api_url"):
        assert oauth[key].startswith("https://"), key


@pytest.mark.parametrize(
    "groups,role",
    [
        (["telltale-admins"], "Admin"),
        (["telltale-viewers", "telltale-admins"], "Admin"),
        (["telltale-editors", "staff"], "Editor"),
        (["telltale-viewers"], "Viewer"),
        (["staff"], None),
        ([], None),
    ],
)
def test_role_comes_from_the_groups_claim(groups: list[str], role: str | None) -> None:
    oauth = grafana_ini()["auth.generic_oauth"]
    found = jmespath.search(oauth["role_attribute_path"], {"sub": "u1", "groups": groups})
    assert (found or None) == role
    # a user in no Telltale group has no role: strict mode refuses the sign-in instead of a default role
    assert oauth.getboolean("role_attribute_strict") is True
    assert oauth.getboolean("skip_org_role_sync") is False


def test_organizations_come_from_the_same_claim() -> None:
    oauth = grafana_ini()["auth.generic_oauth"]
    claim = {"groups": ["telltale-editors", "staff"]}
    assert jmespath.search(oauth["org_attribute_path"], claim) == claim["groups"]
    allowed = set(oauth["allowed_groups"].split())
    role_groups = set(re.findall(r"'(telltale-[a-z-]+)'", oauth["role_attribute_path"]))
    assert role_groups <= allowed
    mapping = [entry.split(":") for entry in oauth["org_mapping"].split()]
    assert mapping and all(len(entry) == 3 for entry in mapping), mapping
    for group, org, role in mapping:
        assert group in allowed and org == "1" and role in ("Admin", "Editor", "Viewer", "None"), (group, org, role)
    assert role_groups <= {group for group, _, _ in mapping}


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_are_read_from_files() -> None:
    ini = grafana_ini()
    assert ini.get("security", "admin_password") == "$__file{/run/secrets/grafana_admin_password}"
    assert ini.get("auth.generic_oauth", "client_secret") == "$__file{/run/secrets/grafana_oauth_client_secret}"
    assert ini.get("security", "secret_key") == "$__file{/run/secrets/grafana_secret_key}"


def test_no_file_holds_a_literal_secret() -> None:
    ini = grafana_ini()
    for section in ini.sections():
        for key, value in ini.items(section):
            if SECRET_NAME.search(key) and value not in ("", "true", "false"):
                assert SECRET_REFERENCE.fullmatch(value), f"[{section}] {key} holds a literal value"
    for path in PROVISIONING.rglob("*.yml"):
        for location, value in _walk(yaml.safe_load(path.read_text())):
            key = location.rsplit(".", 1)[-1]
            if SECRET_FIELD.search(key) or "secureJsonData" in location:
                reference = SECRET_REFERENCE.fullmatch(str(value)) or re.fullmatch(r"\$\{\w+\}", str(value))
                assert not value or reference, f"{path.name}{location} holds a literal value"
