"""Helpers (no tests) shared by the exporter tests: build an exporter, scrape it, read samples."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from telltale.config.exporter import load_exporter_settings
from telltale.config.settings import load_settings
from telltale.exporter.main import ExporterApp, create_exporter

from tests.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA, SEED = ROOT / "deploy/sql/001_schema.sql", ROOT / "deploy/sql/002_seed.sql"


def seeded_database(pg: PostgresServer) -> str:
    """A fresh database holding the demo schema and seed; returns its DSN."""
    db = f"exp_{uuid.uuid4().hex[:10]}"
    pg.psql(f"create database {db}")
    pg.psql_file(SCHEMA, db)
    pg.psql_file(SEED, db)
    return pg.dsn_for(db)


def make_exporter(exporter: dict[str, Any] | None = None, **settings: Any) -> ExporterApp:
    settings.setdefault("disk_paths", ["/"])
    return create_exporter(load_settings(**settings), load_exporter_settings(**(exporter or {})))


def samples(body: bytes) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def promtool(body: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body, capture_output=True)
