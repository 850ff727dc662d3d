"""Settings errors as one line naming the setting: the single formatter for the service's and the exporter's settings.

The CLI prints `telltale: <line>` and exits 2. A line never holds a secret (URL passwords, query-string
credentials) and never a newline, whatever pydantic's message says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from telltale.config.redact import redact


class SettingsError(Exception):
    """A one-line description of invalid settings (never contains a secret)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(redact(str(message)).split()))


def env_name(prefix: str) -> Callable[[str], str]:
    """Names a top-level setting as the environment variable that sets it (`port` -> `TELLTALE_PORT`)."""
    return lambda field: prefix + field.upper()


def describe(error: Any, name_of: Callable[[str], str]) -> str:
    """`<setting>[0].key: <reason>` for one pydantic error; `name_of` names the top-level setting."""
    loc = [str(p) for p in error.get("loc", ())]
    head = name_of(loc[0]) if loc else "settings"
    rest = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    msg = "unknown setting" if error.get("type") == "extra_forbidden" else str(error.get("msg", "invalid"))
    msg = re.sub(r"^(Value|Assertion) error, ", "", msg)
    return f"{head}{rest}: {msg}"


def from_validation(exc: ValidationError, name_of: Callable[[str], str]) -> SettingsError:
    """The first problem as one line, with how many more there are."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return SettingsError("settings: invalid")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return SettingsError(describe(errors[0], name_of) + more)
