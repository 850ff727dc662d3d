"""The `TELLTALE_*` environment as settings see it: Kubernetes service links left out, `*_FILE` secrets read in.

Kubernetes injects docker-link variables for every Service in the namespace into every pod started after it
(unless the pod sets `enableServiceLinks: false`). A Service named `telltale` gives `TELLTALE_PORT=tcp://...`,
which would fail the `port` setting and crash-loop the pod, so the exact forms Kubernetes writes (name *and*
value) are recognised and ignored. A secret setting `X` may instead come from the file named by `X_FILE`
(the Docker and Kubernetes secrets convention): its trailing newline is stripped, and an unreadable or empty
file, or both `X` and `X_FILE` set, is a settings error.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic_settings import BaseSettings, EnvSettingsSource
from telltale.config.errors import SettingsError

FILE_SUFFIX = "_FILE"

# {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME}, {SVC}_PORT,
# {SVC}_PORT_{PORT}_{PROTO}, and that with _PROTO, _PORT or _ADDR (kubelet's pkg/kubelet/envvars)
_LINK = re.compile(
    r"^(?P<svc>[A-Z][A-Z0-9_]*?)_(?:"
    r"(?P<host>SERVICE_HOST)"
    r"|(?P<sport>SERVICE_PORT(?:_[A-Z0-9_]+)?)"
    r"|(?P<first>PORT)"
    r"|PORT_(?P<num>\d{1,5})_(?P<proto>TCP|UDP|SCTP)(?:_(?P<part>PROTO|PORT|ADDR))?"
    r")$"
)
_LINK_URL = re.compile(r"^(?P<proto>tcp|udp|sctp)://(?P<addr>\[[0-9a-fA-F:.]+\]|[0-9.]+):(?P<port>\d{1,5})$")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def _is_link_url(text: str, proto: str | None = None, port: str | None = None) -> bool:
    m = _LINK_URL.match(text)
    return bool(
        m
        and _is_ip(m["addr"])
        and _is_port(m["port"])
        and (proto is None or m["proto"] == proto.lower())
        and (port is None or m["port"] == port)
    )


def is_service_link(name: str, value: str) -> bool:
    """True when `name=value` is exactly what Kubernetes injects for a Service (both name and value forms)."""
    m = _LINK.match(name.upper())
    if m is None:
        return False
    if m["host"]:
        return _is_ip(value)
    if m["sport"]:
        return _is_port(value)
    if m["first"]:
        return _is_link_url(value)
    part = m["part"]
    if part is None:
        return _is_link_url(value, m["proto"], m["num"])
    if part == "PROTO":
        return value == m["proto"].lower()
    if part == "PORT":
        return value == m["num"]
    return _is_ip(value)


def read_secret_file(variable: str, path: str) -> str:
    """The secret held in `path` (trailing newline stripped); SettingsError naming `variable` otherwise."""
    if not path.strip():
        raise SettingsError(f"{variable}: is empty; give the path of a file holding the secret")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}: {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text.strip():
        raise SettingsError(f"{variable}: {path} is empty")
    return text


def effective_environ(
    prefix: str, secret_fields: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`prefix`-ed variables (upper-cased names) minus service links, with each `X_FILE` read into `X`."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name, value in env.items():
        upper = name.upper()
        if upper.startswith(prefix) and not is_service_link(upper, value):
            out[upper] = value
    for field in secret_fields:
        var = prefix + field.upper()
        file_var = var + FILE_SUFFIX
        if file_var not in out:
            continue
        path = out.pop(file_var)
        if var in out:
            raise SettingsError(f"{var} and {file_var} are both set; keep one")
        out[var] = read_secret_file(file_var, path)
    return out


class TelltaleEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading `effective_environ` instead of `os.environ`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        secret_fields: tuple[str, ...] = getattr(self.settings_cls, "secret_fields", ())
        env = effective_environ(self.env_prefix.upper(), secret_fields)
        if self.case_sensitive:
            return dict(env)
        return {k.lower(): v for k, v in env.items()}


class TelltaleBaseSettings(BaseSettings):
    """Settings read from `effective_environ`: service links ignored, `*_FILE` secrets supported."""

    secret_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        """Constructor values (the YAML file, CLI flags) over the filtered environment; no dotenv, no secrets dir."""
        return init_settings, TelltaleEnvSource(settings_cls)
