"""SQL identifiers from settings (queue tables, the deployments table): always quoted, never interpolated."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote a configured table name, `schema.table` allowed: each part in double quotes, inner quotes doubled."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
