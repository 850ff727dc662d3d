"""Settings: read once at start, validated, passed in."""

from telltale.config.settings import HttpDependency, QueueSpec, Settings, SettingsError, TlsHost, load_settings

__all__ = ["HttpDependency", "QueueSpec", "Settings", "SettingsError", "TlsHost", "load_settings"]
