"""PostgreSQL: one round trip per scrape for activity and per-database counters; sizes on an interval."""

from __future__ import annotations

import json

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from telltale.exporter.collectors.base import Collector, PgPool, Refreshed, described, gauge

_MAIN = """
select current_setting('server_version') as version,
       current_setting('max_connections')::int as max_connections,
       pg_is_in_recovery() as replica,
       case when pg_is_in_recovery() then
         case when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
              else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0) end
       end::float8 as replication_lag,
       (select coalesce(json_agg(json_build_array(d, s, n)), '[]') from (
          select coalesce(datname, '') d, coalesce(state, 'unknown') s, count(*) n from pg_stat_activity
          where backend_type = 'client backend' group by 1, 2) c)::text as connections,
       (select coalesce(json_agg(json_build_array(datname, xact_commit, xact_rollback, deadlocks, blks_hit,
                                                  blks_read, temp_bytes)), '[]')
          from pg_stat_database where datname is not null)::text as databases,
       (select coalesce(extract(epoch from now() - min(xact_start)), 0) from pg_stat_activity
          where xact_start is not null and backend_type = 'client backend' and pid <> pg_backend_pid()
       )::float8 as oldest_xact,
       (select coalesce(extract(epoch from now() - min(query_start)), 0) from pg_stat_activity
          where state = 'active' and backend_type = 'client backend' and pid <> pg_backend_pid()
       )::float8 as oldest_query,
       (select count(distinct pid) from pg_locks where not granted) as locks_waiting,
       exists(select 1 from pg_extension where extname = 'pg_stat_statements') as has_pgss
"""

_SIZES = "select datname, pg_database_size(datname) as size from pg_database where datallowconn"

_PGSS = """
select queryid::text as queryid, mean_exec_time / 1000.0 as mean_seconds from pg_stat_statements
where queryid is not null order by mean_exec_time desc limit $1
"""

_COUNTERS = (
    ("xact_commit", "telltale_postgres_xact_commit", "Transactions committed."),
    ("xact_rollback", "telltale_postgres_xact_rollback", "Transactions rolled back."),
    ("deadlocks", "telltale_postgres_deadlocks", "Deadlocks detected."),
    ("blocks_hit", "telltale_postgres_blocks_hit", "Buffer cache hits."),
    ("blocks_read", "telltale_postgres_blocks_read", "Blocks read from disk."),
    ("temp_bytes", "telltale_postgres_temp_bytes", "Bytes written to temporary files."),
)


class PostgresCollector(Collector):
    name = "postgres"

    def __init__(self, pg: PgPool, *, refresh_interval: float, statements_top: int = 10) -> None:
        self.pg = pg
        self.statements_top = statements_top
        self.sizes = Refreshed(self._sizes, refresh_interval, "postgres database sizes")

    async def _sizes(self) -> list[tuple[str, int]]:
        return [(r["datname"], r["size"]) for r in await self.pg.fetch(_SIZES)]

    async def _read(self, conn: asyncpg.Connection) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
        row = await conn.fetchrow(_MAIN)
        stmts: list[asyncpg.Record] = []
        if row["has_pgss"] and self.statements_top:
            stmts = await conn.fetch(_PGSS, self.statements_top)
        return row, stmts

    def down(self) -> list[Metric]:
        return [gauge("telltale_postgres_up", "1 when PostgreSQL answered.", 0)]

    def describe(self) -> list[Metric]:
        gauges = [
            f"telltale_postgres_{n}"
            for n in (
                "up",
                "info",
                "max_connections",
                "connections",
                "oldest_transaction_age_seconds",
                "oldest_query_age_seconds",
                "locks_waiting",
                "replica",
                "replication_lag_seconds",
                "statement_mean_duration_seconds",
                "database_size_bytes",
            )
        ]
        return described(gauges, [name for _, name, _ in _COUNTERS])

    async def collect(self) -> list[Metric]:
        row, stmts = await self.pg.run(self._read)
        out: list[Metric] = [gauge("telltale_postgres_up", "1 when PostgreSQL answered.", 1)]
        info = GaugeMetricFamily("telltale_postgres_info", "PostgreSQL server version.", labels=["version"])
        info.add_metric([row["version"]], 1)
        out.append(info)
        out.append(gauge("telltale_postgres_max_connections", "max_connections.", row["max_connections"]))
        conns = GaugeMetricFamily(
            "telltale_postgres_connections", "Client backends by database and state.", labels=["datname", "state"]
        )
        for d, s, n in json.loads(row["connections"]):
            conns.add_metric([d, s], n)
        out.append(conns)
        counters = {key: CounterMetricFamily(name, doc, labels=["datname"]) for key, name, doc in _COUNTERS}
        for d, commit, rollback, deadlocks, hit, read, temp in json.loads(row["databases"]):
            for key, v in zip(
                ("xact_commit", "xact_rollback", "deadlocks", "blocks_hit", "blocks_read", "temp_bytes"),
                (commit, rollback, deadlocks, hit, read, temp),
                strict=True,
            ):
                counters[key].add_metric([d], v or 0)
        out.extend(counters.values())
        out.append(
            gauge(
                "telltale_postgres_oldest_transaction_age_seconds",
                "Age of the oldest open transaction.",
                row["oldest_xact"],
            )
        )
        out.append(
            gauge(
                "telltale_postgres_oldest_query_age_seconds",
                "Age of the longest running active query.",
                row["oldest_query"],
            )
        )
        out.append(gauge("telltale_postgres_locks_waiting", "Backends waiting on a lock.", row["locks_waiting"]))
        out.append(
            gauge(
                "telltale_postgres_replica", "1 when the server is a replica (in recovery).", 1 if row["replica"] else 0
            )
        )
        if row["replica"]:
            out.append(
                gauge(
                    "telltale_postgres_replication_lag_seconds",
                    "Replay lag of this replica.",
                    row["replication_lag"] or 0.0,
                )
            )
        if row["has_pgss"] and self.statements_top:
            st = GaugeMetricFamily(
                "telltale_postgres_statement_mean_duration_seconds",
                "Mean execution time of the slowest statements (pg_stat_statements).",
                labels=["queryid"],
            )
            for r in stmts:
                st.add_metric([r["queryid"]], r["mean_seconds"])
            out.append(st)
        sizes = await self.sizes.get()
        if sizes is not None:
            fam = GaugeMetricFamily("telltale_postgres_database_size_bytes", "Database size.", labels=["datname"])
            for d, size in sizes:
                fam.add_metric([d], size)
            out.append(fam)
        return out

    async def aclose(self) -> None:
        await self.sizes.aclose()
