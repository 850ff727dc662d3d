"""The service's hot path and its telemetry: request metrics, server spans, span export, exposition, logs.

`app/` wires these in; nothing here imports the HTTP routes.
"""
