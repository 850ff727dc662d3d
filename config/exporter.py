"""The exporter sidecar's own settings (`TELLTALE_EXPORTER_*`), beside the shared `Settings`.

`load_exporter_settings` raises `config.errors.SettingsError` with one line naming the setting, formatted as
the service's settings are (config/errors.py); Kubernetes service links are ignored here too (config/environment.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError
from telltale.config.environment import TelltaleBaseSettings
from telltale.config.errors import SettingsError, env_name, from_validation

EXPORTER_ENV_PREFIX = "TELLTALE_EXPORTER_"
# Not a path: the packaged queries.yml, read through importlib.resources (exporter/collectors/sql.py).
DEFAULT_QUERIES_FILE = "telltale.exporter:queries.yml"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


class ExporterSettings(TelltaleBaseSettings):
    """Where the exporter listens and how long it may spend per scrape."""

    model_config = SettingsConfigDict(
        env_prefix=EXPORTER_ENV_PREFIX,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        validate_default=True,
    )

    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 9465
    # Below Prometheus's scrape_timeout (10 s by default) so a hung target never fails the scrape.
    collector_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    # Expensive readings (terraform version, database sizes) are refreshed this often, in the background.
    refresh_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    queries_file: str | None = DEFAULT_QUERIES_FILE
    pg_stat_statements_top: Annotated[int, Field(ge=0, le=100)] = 10
    terraform_deployments_table: str | None = "terraform_deployments"
    pool_max_size: Annotated[int, Field(ge=1, le=20)] = 4
    log_level: str = "info"

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Any:
        """`TELLTALE_EXPORTER_HOST=` is a variable left unfilled, not a request to bind every interface."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; give an address or unset the setting")
        return value

    @field_validator("queries_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("terraform_deployments_table", mode="before")
    @classmethod
    def _table(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not re.match(_IDENT, value):
            raise ValueError("must be a table name, optionally schema-qualified (letters, digits, _)")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()


def load_exporter_settings(**overrides: Any) -> ExporterSettings:
    """Environment plus explicit overrides (CLI flags); one-line SettingsError on a bad value."""
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ExporterSettings(**values)
    except ValidationError as exc:
        raise from_validation(exc, env_name(EXPORTER_ENV_PREFIX)) from None
    except _SourceError:
        raise SettingsError("TELLTALE_EXPORTER_*: cannot parse the environment") from None
