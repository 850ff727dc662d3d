"""Database: PostgreSQL and Redis as the exporter sees them (USE plus the alerting ratios)."""

from __future__ import annotations

from ..board import ONCE, UP_DOWN, Board, Q, above, below, once

DB = 'datname=~"$datname"'


def per_db(function: str, counter: str) -> str:
    """function(counter[$__rate_interval]) per database, each exporter replica's copy counted once."""
    return f"sum by (datname) ({once(function + '(' + counter + '{' + DB + '}[$__rate_interval])')})"


def build() -> Board:
    b = Board(
        uid="telltale-database",
        title="Database",
        folder="Infrastructure",
        description="PostgreSQL (connections vs max, cache hit ratio, deadlocks, rollbacks, slow statements, "
        "sizes) and Redis, from Telltale's exporter.",
        refresh="5s",
        tags=("infrastructure", "database", "realtime"),
    )
    b.variable("datname", "Database", "label_values(telltale_postgres_database_size_bytes, datname)", "Databases.")

    b.row("PostgreSQL: utilisation and saturation")
    b.stat(
        "PostgreSQL up",
        "1 when the exporter reached PostgreSQL; DatabaseDown pages after 1 minute at 0.",
        "none",
        [Q("telltale_postgres_up", "{{instance}}")],
        thresholds=UP_DOWN,
    )
    b.stat(
        "Connections used",
        "Client connections / max_connections; DatabaseConnectionsHigh warns above its threshold.",
        "percentunit",
        [
            Q(
                "sum by (job, instance) (telltale_postgres_connections) "
                "/ on (job, instance) max by (job, instance) (telltale_postgres_max_connections)",
                "{{instance}}",
            )
        ],
        thresholds=above("DatabaseConnectionsHigh"),
    )
    b.stat(
        "Backends waiting on a lock",
        "Backends waiting for a lock now (saturation).",
        "short",
        [Q("telltale_postgres_locks_waiting", "{{instance}}")],
    )
    b.stat(
        "Oldest running query",
        "Age of the longest running active query; SlowDatabaseQueries warns above its threshold.",
        "s",
        [Q("telltale_postgres_oldest_query_age_seconds", "{{instance}}")],
        thresholds=above("SlowDatabaseQueries", nth=0),
    )
    b.timeseries(
        "Connections by state",
        "Client backends by database and state (active, idle, idle in transaction...) against max_connections.",
        "short",
        [
            Q(
                f"sum by (datname, state) ({ONCE} (telltale_postgres_connections{{{DB}}}))",
                "{{datname}} {{state}}",
            ),
            Q("max(telltale_postgres_max_connections)", "max_connections"),
        ],
    )
    b.timeseries(
        "Transactions",
        "Commits and rollbacks per second by database.",
        "ops",
        [
            Q(
                per_db("rate", "telltale_postgres_xact_commit_total"),
                "commit",
            ),
            Q(
                per_db("rate", "telltale_postgres_xact_rollback_total"),
                "rollback",
            ),
        ],
    )

    b.row("PostgreSQL: errors and efficiency")
    b.timeseries(
        "Buffer cache hit ratio",
        "Share of block reads served from shared buffers; LowDatabaseCacheHitRatio warns below its threshold.",
        "percentunit",
        [
            Q(
                f"{per_db('rate', 'telltale_postgres_blocks_hit_total')} / ("
                f"{per_db('rate', 'telltale_postgres_blocks_hit_total')} + "
                f"{per_db('rate', 'telltale_postgres_blocks_read_total')})",
                "{{datname}}",
            )
        ],
        thresholds=below("LowDatabaseCacheHitRatio"),
        max_value=1,
    )
    b.timeseries(
        "Rollback ratio",
        "Share of transactions rolled back; HighRollbackRate warns above its threshold.",
        "percentunit",
        [
            Q(
                f"{per_db('rate', 'telltale_postgres_xact_rollback_total')} / ("
                f"{per_db('rate', 'telltale_postgres_xact_commit_total')} + "
                f"{per_db('rate', 'telltale_postgres_xact_rollback_total')})",
                "{{datname}}",
            )
        ],
        thresholds=above("HighRollbackRate"),
        min_value=0,
    )
    b.timeseries(
        "Deadlocks",
        "Deadlocks detected per interval by database; DatabaseDeadlocks warns on any.",
        "short",
        [
            Q(
                per_db("increase", "telltale_postgres_deadlocks_total"),
                "{{datname}}",
            )
        ],
    )
    b.timeseries(
        "Slowest statements (mean duration)",
        "Mean duration of the slowest statements (pg_stat_statements); SlowDatabaseQueries warns above its "
        "mean-duration threshold.",
        "s",
        [
            Q(
                f"topk(10, {ONCE} (telltale_postgres_statement_mean_duration_seconds))",
                "{{queryid}}",
                empty="present only when the pg_stat_statements extension is installed",
            )
        ],
        thresholds=above("SlowDatabaseQueries", nth=1),
    )
    b.timeseries(
        "Temp files written",
        "Bytes written to temporary files per second (sorts and hashes spilling out of work_mem).",
        "Bps",
        [
            Q(
                per_db("rate", "telltale_postgres_temp_bytes_total"),
                "{{datname}}",
            )
        ],
    )
    b.timeseries(
        "Database sizes",
        "Size of each database (refreshed every exporter refresh interval).",
        "bytes",
        [Q(once(f"telltale_postgres_database_size_bytes{{{DB}}}"), "{{datname}}")],
    )
    b.timeseries(
        "Oldest transaction and replication lag",
        "Age of the oldest open transaction (vacuum blocker) and, on a replica, the replay lag.",
        "s",
        [
            Q(once("telltale_postgres_oldest_transaction_age_seconds"), "oldest transaction"),
            Q(
                once("telltale_postgres_replication_lag_seconds"),
                "replication lag",
                empty="reported by replicas only (a primary has no replay lag)",
            ),
        ],
    )

    b.row("Redis")
    b.stat(
        "Redis up",
        "1 when the exporter reached Redis; RedisDown pages after 1 minute at 0.",
        "none",
        [Q("telltale_redis_up", "{{instance}}")],
        thresholds=UP_DOWN,
    )
    b.stat(
        "Redis memory used", "Memory Redis uses (used_memory).", "bytes", [Q(once("telltale_redis_memory_used_bytes"))]
    )
    b.stat(
        "Redis clients",
        "Connected and blocked clients.",
        "short",
        [
            Q(once("telltale_redis_connected_clients"), "connected"),
            Q(once("telltale_redis_blocked_clients"), "blocked"),
        ],
    )
    b.stat(
        "Redis keys",
        "Keys over all databases.",
        "short",
        [
            Q(
                f"sum({ONCE} (telltale_redis_db_keys))",
                "keys",
                empty="an empty Redis has no keyspace line, so no db series",
            )
        ],
    )
    b.timeseries(
        "Redis cache hit ratio",
        "Share of keyspace lookups that hit; LowRedisCacheHitRatio warns below its threshold.",
        "percentunit",
        [
            Q(
                f"sum({ONCE} (rate(telltale_redis_keyspace_hits_total[$__rate_interval]))) / ("
                f"sum({ONCE} (rate(telltale_redis_keyspace_hits_total[$__rate_interval]))) + "
                f"sum({ONCE} (rate(telltale_redis_keyspace_misses_total[$__rate_interval]))))",
                "hit ratio",
            )
        ],
        thresholds=below("LowRedisCacheHitRatio"),
        max_value=1,
    )
    b.timeseries(
        "Redis commands and key churn",
        "Commands processed, keys evicted (memory saturation) and expired, and connections rejected, per second.",
        "ops",
        [
            Q(once("rate(telltale_redis_commands_processed_total[$__rate_interval])"), "commands"),
            Q(once("rate(telltale_redis_evicted_keys_total[$__rate_interval])"), "evicted"),
            Q(once("rate(telltale_redis_expired_keys_total[$__rate_interval])"), "expired"),
            Q(once("rate(telltale_redis_rejected_connections_total[$__rate_interval])"), "rejected connections"),
        ],
    )
    return b
