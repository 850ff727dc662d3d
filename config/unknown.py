"""Unknown `TELLTALE_*` variables: a warning at start naming each with the closest known setting, never a refusal.

A typo (`TELLTALE_HEATH_TOKEN`) would otherwise leave an endpoint silently unguarded. It is a warning, not an
error, because the environment is shared: Kubernetes service links (config/environment.py) and other
tools' variables may start with `TELLTALE_` too. Service links are recognised and not reported.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from telltale.config.environment import FILE_SUFFIX, is_service_link
from telltale.config.exporter import EXPORTER_ENV_PREFIX, ExporterSettings
from telltale.config.settings import CONFIG_ENV, ENV_PREFIX, SECRET_SETTINGS, Settings


def known_variables() -> frozenset[str]:
    """Every variable the service and the exporter read."""
    names = {CONFIG_ENV}
    names.update(ENV_PREFIX + f.upper() for f in Settings.model_fields)
    names.update(ENV_PREFIX + f.upper() + FILE_SUFFIX for f in SECRET_SETTINGS)
    names.update(EXPORTER_ENV_PREFIX + f.upper() for f in ExporterSettings.model_fields)
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each unknown `TELLTALE_*` variable with the closest known name (None when nothing is close)."""
    env = os.environ if environ is None else environ
    known = known_variables()
    out: dict[str, str | None] = {}
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or is_service_link(upper, env[name]):
            continue
        # compare what follows the shared prefix, or every name would look close to every other
        rest = {k.removeprefix(ENV_PREFIX): k for k in known}
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), rest, n=1, cutoff=0.6)
        out[name] = rest[close[0]] if close else None
    return out


def unknown_variables_warning(environ: Mapping[str, str] | None = None) -> str | None:
    """One line naming every unknown variable, or None when there is none."""
    unknown = unknown_variables(environ)
    if not unknown:
        return None
    parts = [f"{n} (did you mean {m}?)" if m else n for n, m in unknown.items()]
    return "warning: unknown settings ignored: " + ", ".join(parts)
