"""Telltale's settings: environment (`TELLTALE_*`) over an optional YAML file (`TELLTALE_CONFIG`).

Invalid settings never reach a running process: `load_settings` raises `SettingsError` whose text is
one line naming the setting (the variable, or the file and its key) and the problem, and the CLI turns it
into exit code 2. A secret setting present but empty is invalid; each may come from `<NAME>_FILE`, and
Kubernetes service-link variables are ignored (config/environment.py). Token settings hold several values.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError
from telltale.config.environment import FILE_SUFFIX, TelltaleBaseSettings, effective_environ, read_secret_file
from telltale.config.errors import SettingsError, env_name, from_validation
from telltale.config.redact import redact_tree, secret_values, url_secrets

ENV_PREFIX = "TELLTALE_"
CONFIG_ENV = "TELLTALE_CONFIG"
NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,62}$"

RESERVED_CHECK_NAMES = frozenset(
    {
        "disk",
        "memory",
        "cpu",
        "event_loop",
        "postgres",
        "redis",
        "queue",
        "scheduler",
        "terraform",
        "docker",
        "websocket",
        "tls",
    }
)

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
Ratio = Annotated[float, Field(ge=0, le=1)]
# one or more accepted values: `old,new` in the environment, a list in the file (rotation without downtime)
Tokens = Annotated[tuple[SecretStr, ...] | None, NoDecode]

TOKEN_SETTINGS = ("health_token", "metrics_token", "ingest_token", "alert_webhook_token")
URL_SECRET_SETTINGS = ("database_url", "redis_url", "alertmanager_url")
# every setting that may carry a credential: never empty, also readable from `<NAME>_FILE`
SECRET_SETTINGS = TOKEN_SETTINGS + URL_SECRET_SETTINGS
# plain text settings that must not be blank either
TEXT_SETTINGS = ("environment", "host", "terraform_binary", "docker_socket", "tls_ca_file", "scheduler_heartbeat_key")

__all__ = ["SECRET_SETTINGS", "Settings", "SettingsError", "load_settings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueSpec(_Strict):
    """A job queue to watch. `key` defaults to the backend's own naming for `name`."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    backend: Literal["redis_list", "laravel", "celery", "rq", "sql"] = "laravel"
    key: str | None = None
    table: str = "jobs"
    failed_table: str = "failed_jobs"
    heartbeat_key: str | None = None
    heartbeat_max_age_seconds: PositiveSeconds = 120
    require_workers: bool = False
    depth_degraded: Annotated[int, Field(ge=0)] | None = None
    depth_unhealthy: Annotated[int, Field(ge=0)] | None = None

    def redis_key(self) -> str:
        if self.key:
            return self.key
        return {"laravel": f"queues:{self.name}", "rq": f"rq:queue:{self.name}"}.get(self.backend, self.name)


class HttpDependency(_Strict):
    """An HTTP API the platform depends on (cloud provider, payment gateway...)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    url: AnyUrl
    method: Literal["GET", "HEAD"] = "GET"
    expected_status: list[int] = Field(default_factory=lambda: [200, 204])
    degraded_seconds: PositiveSeconds = 1.0
    timeout_seconds: PositiveSeconds | None = None
    critical: bool = False


class TlsHost(_Strict):
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 443
    server_name: str | None = None


class Settings(TelltaleBaseSettings):
    """Everything Telltale reads, with defaults that run with no external service."""

    secret_fields: ClassVar[tuple[str, ...]] = SECRET_SETTINGS

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False, validate_default=True
    )

    # service
    environment: str = "development"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8000
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # tokens (compared in constant time by config/tokens.py; never printed); each accepts several values
    health_token: Tokens = None
    metrics_token: Tokens = None
    ingest_token: Tokens = None
    alert_webhook_token: Tokens = None

    # dependencies: each check turns on when its setting is given
    database_url: PostgresDsn | None = None
    redis_url: RedisDsn | None = None
    queues: list[QueueSpec] = Field(default_factory=list)
    disk_paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["/"])
    terraform_binary: str | None = None
    docker_socket: str | None = None
    websocket_url: AnyUrl | None = None
    http_dependencies: list[HttpDependency] = Field(default_factory=list)
    tls_hosts: list[TlsHost] = Field(default_factory=list)
    tls_ca_file: str | None = None
    scheduler_heartbeat_key: str | None = None

    # thresholds (the seeds' numbers)
    postgres_degraded_seconds: PositiveSeconds = 1.0
    postgres_connections_degraded_ratio: Ratio = 0.8
    postgres_connections_unhealthy_ratio: Ratio = 0.95
    redis_degraded_seconds: PositiveSeconds = 0.1
    redis_memory_degraded_ratio: Ratio = 0.8
    redis_memory_unhealthy_ratio: Ratio = 0.95
    queue_depth_degraded: Annotated[int, Field(ge=0)] = 1000
    queue_depth_unhealthy: Annotated[int, Field(ge=0)] = 10000
    disk_degraded_ratio: Ratio = 0.8
    disk_unhealthy_ratio: Ratio = 0.9
    memory_degraded_ratio: Ratio = 0.9
    memory_unhealthy_ratio: Ratio = 0.97
    cpu_load_degraded_per_core: Annotated[float, Field(gt=0)] = 2.0
    cpu_load_unhealthy_per_core: Annotated[float, Field(gt=0)] = 4.0
    event_loop_lag_degraded_seconds: PositiveSeconds = 0.1
    event_loop_lag_unhealthy_seconds: PositiveSeconds = 1.0
    tls_degraded_days: Annotated[float, Field(ge=0)] = 14
    tls_unhealthy_days: Annotated[float, Field(ge=0)] = 3
    scheduler_max_age_seconds: PositiveSeconds = 120
    terraform_cache_seconds: PositiveSeconds = 300

    # the probe engine
    check_timeout_seconds: PositiveSeconds = 1.0
    check_timeouts: dict[str, PositiveSeconds] = Field(default_factory=dict)
    health_deadline_seconds: PositiveSeconds = 2.0
    cache_ttl_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 1
    success_threshold: Annotated[int, Field(ge=1, le=100)] = 1
    background_interval_seconds: PositiveSeconds | None = None
    drain_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0

    # request metrics, events, tracing, logs
    metrics_exclude_paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["/metrics", "/health/live"])
    trace_exclude_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/metrics", "/health/live", "/health/ready"]
    )
    organization_label_cap: Annotated[int, Field(ge=1, le=100_000)] = 1000
    events_max_batch: Annotated[int, Field(ge=1, le=10_000)] = 1000
    otel_enabled: bool = True  # tracing also needs OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    otel_export_process: bool = True  # encode and send spans in a child process (app/span_export.py)
    access_log: bool = True
    metrics_render: Literal["fork", "thread"] = "fork"
    gc_tuning: bool = True

    # business-event alerts (alerting/)
    # one URL, or every peer of an Alertmanager cluster (comma-separated): each alert goes to all of them
    alertmanager_url: Annotated[tuple[AnyUrl, ...] | None, NoDecode] = None
    license_warning_days: Annotated[float, Field(gt=0, le=365)] = 7.0
    payment_spike_failures: Annotated[int, Field(ge=1, le=100_000)] = 5
    payment_spike_window_seconds: PositiveSeconds = 300.0

    @field_validator(*TOKEN_SETTINGS, mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        """`a,b` (or one per line, from a `_FILE`) or a list; an empty or blank token is refused, never stored."""
        if value is None:
            return None
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("is empty; give a token or unset the setting")
            items: list[Any] = re.split(r"[,\n]", value)
        elif isinstance(value, list | tuple):
            items = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in value]
            if not items:
                raise ValueError("is empty; give a token or unset the setting")
        else:
            raise ValueError("must be a string or a list of strings (quote a numeric token in YAML)")
        out: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise ValueError("each token must be a string (quote a numeric token in YAML)")
            token = item.strip()
            if not token:
                raise ValueError("holds an empty token (a stray comma?)")
            if any(c.isspace() for c in token):
                raise ValueError("a token must not contain whitespace")
            out.append(token)
        return tuple(out)

    @field_validator(*URL_SECRET_SETTINGS, mode="before")
    @classmethod
    def _url_not_blank(cls, value: Any) -> Any:
        """`TELLTALE_DATABASE_URL=` is a template left unfilled, not a URL."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; give a URL or unset the setting")
        return value

    @field_validator("alertmanager_url", mode="before")
    @classmethod
    def _peers(cls, value: Any) -> Any:
        """`http://am-0:9093,http://am-1:9093` (or one per line from a `_FILE`) or a list: the peers of a
        cluster, every one of which gets each alert (Alertmanager does not gossip alerts between peers)."""
        if isinstance(value, str):
            value = [u for u in re.split(r"[,\s]+", value) if u]
            if not value:
                raise ValueError("is empty; give a URL or unset the setting")
        if isinstance(value, list | tuple) and not value:
            raise ValueError("is empty; give a URL or unset the setting")
        return value

    @field_validator(*TEXT_SETTINGS, mode="before")
    @classmethod
    def _text_not_blank(cls, value: Any) -> Any:
        """`TELLTALE_HOST=` is a variable left unfilled: refused, never a silent bind-all or a check turned off."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; give a value or unset the setting")
        return value

    @field_validator("disk_paths", "metrics_exclude_paths", "trace_exclude_paths", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """Path lists from the environment: JSON (`["/", "/var"]`) or comma-separated (`/,/var`).

        An empty string is an error, not a list of nothing (a disk check watching no filesystem); an empty
        list must be asked for as `[]`.
        """
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return yaml.safe_load(value)
            paths = [p.strip() for p in value.split(",") if p.strip()]
            if not paths:
                raise ValueError("is empty; give paths, comma-separated or as a JSON list ([] for none)")
            return paths
        return value

    @field_validator("disk_paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not os.path.isabs(path):
                raise ValueError(f"{path!r} is not an absolute path")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.disk_degraded_ratio > self.disk_unhealthy_ratio:
            raise ValueError("disk_degraded_ratio must not exceed disk_unhealthy_ratio")
        if self.tls_unhealthy_days > self.tls_degraded_days:
            raise ValueError("tls_unhealthy_days must not exceed tls_degraded_days")
        reserved = {d.name for d in self.http_dependencies} & RESERVED_CHECK_NAMES
        if reserved:
            raise ValueError(f"http_dependencies name {sorted(reserved)[0]!r} is a built-in check's name")
        if self.tls_ca_file and not os.path.isfile(self.tls_ca_file):
            raise ValueError(f"tls_ca_file {self.tls_ca_file!r} does not exist")
        if self.websocket_url is not None and self.websocket_url.scheme not in ("ws", "wss"):
            raise ValueError("websocket_url must be a ws:// or wss:// URL")
        names = [d.name for d in self.http_dependencies] + [q.name for q in self.queues]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate names in http_dependencies/queues: {', '.join(sorted(dupes))}")
        needs_redis = [q.name for q in self.queues if q.backend != "sql"]
        if needs_redis and self.redis_url is None:
            raise ValueError(f"queues {', '.join(needs_redis)} need redis_url")
        if any(q.backend == "sql" for q in self.queues) and self.database_url is None:
            raise ValueError("sql queues need database_url")
        if self.scheduler_heartbeat_key and self.redis_url is None:
            raise ValueError("scheduler_heartbeat_key needs redis_url")
        return self

    def timeout_for(self, check: str) -> float:
        return self.check_timeouts.get(check, self.check_timeout_seconds)

    def secrets(self) -> list[str]:
        """Every secret value this configuration holds, for redaction."""
        out = [t.get_secret_value() for name in TOKEN_SETTINGS for t in (getattr(self, name) or ())]
        if self.database_url is not None:  # a multi-host DSN: a password per host
            out.extend(h["password"] for h in self.database_url.hosts() if h.get("password"))
        for url in (self.redis_url, *(self.alertmanager_url or ())):
            if url is not None and url.password:
                out.append(url.password)
        for url in (self.websocket_url, *(d.url for d in self.http_dependencies)):  # userinfo, ?token=...
            out.extend(url_secrets(url) if url is not None else ())
        return [s for s in out if s]

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data, every secret replaced by `***`."""
        data = self.model_dump(mode="json")
        for key in TOKEN_SETTINGS:
            if data.get(key):
                data[key] = ["***"] * len(data[key])
        # by value only: key names such as `scheduler_heartbeat_key` are Redis keys, not credentials
        return redact_tree(data, secret_values(self.secrets()), names=False)


def read_yaml_settings(path: str) -> dict[str, tuple[str, Any]]:
    """The file's settings by lower-cased name, each with the key as written (errors name the file's key)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{CONFIG_ENV}: {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{CONFIG_ENV}: {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{CONFIG_ENV}: {path} must hold a mapping of setting names to values")
    return {str(k).lower(): (str(k), v) for k, v in data.items()}


def _file_values(path: str, environ: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Values the file gives (an environment variable for the same setting wins), and each one's file key."""
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    entries = read_yaml_settings(path)
    for field in SECRET_SETTINGS:
        file_key = field + FILE_SUFFIX.lower()
        if file_key not in entries:
            continue
        written, where = entries.pop(file_key)
        if field in entries:
            raise SettingsError(f"{path}: {entries[field][0]} and {written} are both set; keep one")
        if not isinstance(where, str):
            raise SettingsError(f"{path}: {written}: give the path of a file holding the secret")
        if ENV_PREFIX + field.upper() in environ:
            continue  # the environment wins; its file is not read
        # a relative path is relative to the settings file, wherever the process starts
        secret_path = str(Path(path).parent / where) if where.strip() else where
        entries[field] = (written, read_secret_file(f"{path}: {written}", secret_path))
    for key, (written, value) in entries.items():
        if key not in Settings.model_fields:
            close = difflib.get_close_matches(key.removeprefix(ENV_PREFIX.lower()), Settings.model_fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(f"{path}: {written}: unknown setting{hint}")
        if key in SECRET_SETTINGS and value is None:
            raise SettingsError(f"{path}: {written}: is empty; give a value or remove the key")
        if ENV_PREFIX + key.upper() not in environ:
            values[key] = value
            keys[key] = written
    return values, keys


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Read and validate settings once: CLI overrides > environment > YAML file.

    Raises SettingsError with one line on any problem; a problem with a value from the file names the file's
    key (`settings.yml: heath_token: unknown setting`), one from the environment the variable.
    """
    environ = effective_environ(ENV_PREFIX, SECRET_SETTINGS)
    path = config_file or os.environ.get(CONFIG_ENV)
    values: dict[str, Any] = {}
    file_keys: dict[str, str] = {}
    if path:
        values, file_keys = _file_values(path, environ)
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    from_secret_file = {f for f in SECRET_SETTINGS if ENV_PREFIX + f.upper() + FILE_SUFFIX in os.environ}
    as_env = env_name(ENV_PREFIX)

    def name_of(field: str) -> str:
        if field in file_keys and field not in given:
            return f"{path}: {file_keys[field]}"
        if field in from_secret_file and field not in given:
            return as_env(field) + FILE_SUFFIX
        return as_env(field)

    try:
        return Settings(**values)
    except ValidationError as exc:
        raise from_validation(exc, name_of) from None
    except _SourceError as exc:
        field = re.search(r'field "([^"]+)"', str(exc))
        raise SettingsError(f"{name_of(field.group(1)) if field else 'settings'}: not valid JSON") from None
