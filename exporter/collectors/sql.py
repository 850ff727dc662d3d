"""Operator-defined SQL queries (a YAML file) become `telltale_sql_*` gauges; a broken query fails alone.

File format::

    queries:
      - name: organization            # metric telltale_sql_<name>[_<value column>]
        help: Per organization.
        query: select name as organization, 3 as servers from organizations
        labels: [organization]        # columns that become labels
        values: [servers]             # numeric columns; one value -> telltale_sql_<name>
        interval: 30                  # seconds between runs (0 = every scrape); default 0
        timeout: 2                    # seconds; default the collector timeout

A value that is NULL gives no sample. With several value columns each becomes
`telltale_sql_<name>_<column>`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.config.exporter import DEFAULT_QUERIES_FILE
from telltale.config.settings import SettingsError
from telltale.exporter.collectors.base import Collector, PgPool, Refreshed, described

log = logging.getLogger("telltale.exporter")
SETTING = "TELLTALE_EXPORTER_QUERIES_FILE"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_LABEL = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$")
_RESERVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")


@dataclass(frozen=True)
class QuerySpec:
    name: str
    help: str
    query: str
    labels: tuple[str, ...]
    values: tuple[str, ...]
    interval: float
    timeout: float | None

    def metric_names(self) -> list[str]:
        if len(self.values) == 1:
            return [f"telltale_sql_{self.name}"]
        return [f"telltale_sql_{self.name}_{v}" for v in self.values]


def load_queries(path: str) -> list[QuerySpec]:
    """Read and validate the queries file; any problem is one SettingsError line."""
    try:
        text = _read(path)
    except OSError as exc:
        raise SettingsError(f"{SETTING}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{SETTING}: {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{SETTING}: {path} is not valid YAML{where}") from None
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("queries", []), list):
        raise SettingsError(f"{SETTING}: {path} must be a mapping with a `queries` list")
    unknown = set(data) - {"queries"}
    if unknown:
        raise SettingsError(f"{SETTING}: {path}: unknown key {sorted(unknown)[0]!r}")
    specs: list[QuerySpec] = []
    seen: set[str] = set()
    for i, item in enumerate(data.get("queries") or []):
        spec = _spec(item, f"{SETTING}: {path}: queries[{i}]")
        for metric in spec.metric_names():
            if metric in seen:
                raise SettingsError(f"{SETTING}: {path}: queries[{i}]: metric {metric} defined twice")
            seen.add(metric)
        specs.append(spec)
    return specs


def _read(path: str) -> str:
    """The default is the queries.yml shipped inside the package, read through importlib.resources: it is
    there wherever the wheel is installed (an image, a zip on sys.path), with no copy in /etc to keep in step."""
    if path == DEFAULT_QUERIES_FILE:
        return files("telltale.exporter").joinpath("queries.yml").read_text(encoding="utf-8")
    return Path(path).read_text(encoding="utf-8")


def _spec(item: Any, where: str) -> QuerySpec:
    if not isinstance(item, dict):
        raise SettingsError(f"{where}: must be a mapping")
    extra = set(item) - {"name", "help", "query", "labels", "values", "interval", "timeout"}
    if extra:
        raise SettingsError(f"{where}: unknown key {sorted(extra)[0]!r}")
    for key in ("name", "help", "query", "values"):
        if not item.get(key):
            raise SettingsError(f"{where}: `{key}` is required")
    name = item["name"]
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(_RESERVED_SUFFIXES):
        raise SettingsError(f"{where}.name: {name!r} must be lowercase [a-z0-9_] and not end in _total/_count/...")
    if not isinstance(item["query"], str) or not isinstance(item["help"], str):
        raise SettingsError(f"{where}: `query` and `help` must be strings")
    labels, values = item.get("labels") or [], item["values"]
    if isinstance(values, str):
        values = [values]
    for key, cols in (("labels", labels), ("values", values)):
        if not isinstance(cols, list) or not all(isinstance(c, str) and _LABEL.match(c) for c in cols):
            raise SettingsError(f"{where}.{key}: must be a list of column names")
    if set(labels) & set(values):
        raise SettingsError(f"{where}: a column cannot be both a label and a value")
    if len(values) > 1 and any(not _NAME.match(v.lower()) or v.endswith(_RESERVED_SUFFIXES) for v in values):
        raise SettingsError(f"{where}.values: column names must be lowercase metric-name suffixes")
    interval, timeout = item.get("interval", 0), item.get("timeout")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or not 0 <= interval <= 86400:
        raise SettingsError(f"{where}.interval: must be a number of seconds between 0 and 86400")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 60
    ):
        raise SettingsError(f"{where}.timeout: must be a number of seconds in (0, 60]")
    return QuerySpec(
        name,
        item["help"].strip(),
        item["query"],
        tuple(labels),
        tuple(values),
        float(interval),
        float(timeout) if timeout is not None else None,
    )


class _Query:
    def __init__(self, spec: QuerySpec, pg: PgPool, timeout: float) -> None:
        self.spec = spec
        self.pg = pg
        self.timeout = min(spec.timeout or timeout, timeout)
        self.reading = Refreshed(self._run, spec.interval, f"query {spec.name}")

    async def _run(self) -> list[tuple[list[str], list[float | None]]]:
        rows = await self.pg.fetch(self.spec.query, timeout=self.timeout)
        out = []
        for row in rows:
            labels = ["" if row[c] is None else str(row[c]) for c in self.spec.labels]
            vals = [None if row[c] is None else float(row[c]) for c in self.spec.values]
            out.append((labels, vals))
        return out


class SqlCollector(Collector):
    name = "sql"

    def __init__(self, specs: list[QuerySpec], pg: PgPool, timeout: float) -> None:
        self.queries = [_Query(s, pg, timeout) for s in specs]

    async def _one(self, q: _Query) -> list[Metric]:
        try:
            async with asyncio.timeout(q.timeout):
                rows = await q.reading.get()
        except TimeoutError:
            if q.reading.ok or q.reading.error is None:
                log.warning("exporter query %s timed out after %.1fs", q.spec.name, q.timeout)
            q.reading.ok, q.reading.error = False, "timeout"
            q.reading.duration, q.reading.fetched_at = q.timeout, time.monotonic()
            return []
        if not q.reading.ok or rows is None:
            return []
        names = q.spec.metric_names()
        fams = [GaugeMetricFamily(n, q.spec.help, labels=list(q.spec.labels)) for n in names]
        for labels, vals in rows:
            for fam, v in zip(fams, vals, strict=True):
                if v is not None:
                    fam.add_metric(labels, v)
        return list(fams)

    def describe(self) -> list[Metric]:
        names = [n for q in self.queries for n in q.spec.metric_names()]
        return described([*names, "telltale_exporter_query_success", "telltale_exporter_query_duration_seconds"])

    async def collect(self) -> list[Metric]:
        results = await asyncio.gather(*(self._one(q) for q in self.queries))
        out: list[Metric] = [m for fams in results for m in fams]
        ok = GaugeMetricFamily(
            "telltale_exporter_query_success", "1 when the SQL query's last run succeeded.", labels=["query"]
        )
        dur = GaugeMetricFamily(
            "telltale_exporter_query_duration_seconds", "How long the SQL query's last run took.", labels=["query"]
        )
        for q in self.queries:
            ok.add_metric([q.spec.name], 1 if q.reading.ok else 0)
            dur.add_metric([q.spec.name], q.reading.duration)
        return [*out, ok, dur]

    async def aclose(self) -> None:
        for q in self.queries:
            await q.reading.aclose()
