"""The service's hot path and its telemetry: request metrics, server spans, span export, exposition, logs.

`app/` wires these in; nothing here imports the HTTP routes. The public surface is `__all__`, resolved
lazily (PEP 562) so importing the package costs nothing until a name is used; everything else, and
`_compat` (the private OpenTelemetry names), is internal.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module (in this package) that defines it
_EXPORTS = {
    "instrument_app": "middleware",
    "TelemetryMiddleware": "middleware",
    "RequestMetricsSink": "middleware",
    "BatchedRequestMetrics": "middleware",
    "setup_tracing": "tracing",
    "wrap_probe": "tracing",
    "on_probe_result": "tracing",
    "shutdown": "tracing",
    "configure_logging": "logs",
    "set_organization_id": "logs",
    "render_sync": "exposition",
    "RenderTimeout": "exposition",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
