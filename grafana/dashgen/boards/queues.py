"""Queues: how much work waits, how long, how much failed, and whether workers are alive (exporter)."""

from __future__ import annotations

from ..board import ONCE, UP_DOWN, Board, Q, above, once

Q_SEL = 'queue=~"$queue"'


def build() -> Board:
    b = Board(
        uid="telltale-queues",
        title="Queues",
        folder="Infrastructure",
        description="Depth, wait time, failed jobs and live workers of every queue the exporter watches "
        "(TELLTALE_QUEUES: Laravel, RQ, Celery, SQL).",
        refresh="5s",
        tags=("infrastructure", "realtime"),
    )
    b.variable("queue", "Queue", "label_values(telltale_queue_depth, queue)", "Queues the exporter reports.")
    b.row("Utilisation and saturation")
    b.timeseries(
        "Depth",
        "Jobs waiting per queue; HighQueueDepth warns above its threshold.",
        "short",
        [Q(once(f"telltale_queue_depth{{{Q_SEL}}}"), "{{queue}} ({{backend}})")],
        thresholds=above("HighQueueDepth"),
    )
    b.timeseries(
        "Wait time of the oldest job",
        "Age of the oldest job still waiting (due) in each queue: how long new work waits. Absent for Celery.",
        "s",
        [Q(once(f"telltale_queue_oldest_job_age_seconds{{{Q_SEL}}}"), "{{queue}} ({{backend}})")],
    )
    b.stat(
        "Workers alive",
        "Live workers per queue; QueueWorkersDown pages when a queue has jobs and no worker.",
        "short",
        [
            Q(
                once(f"telltale_queue_workers{{{Q_SEL}}}"),
                "{{queue}}",
                empty="absent for queues whose workers cannot be known (no RQ registry, no heartbeat_key)",
            )
        ],
        width=12,
        thresholds=UP_DOWN,
    )
    b.stat(
        "Jobs waiting",
        "Jobs waiting in all selected queues now.",
        "short",
        [Q(f"sum({ONCE} (telltale_queue_depth{{{Q_SEL}}}))", "waiting")],
        width=12,
    )
    b.row("Errors")
    b.timeseries(
        "Failed jobs",
        "Failed jobs per queue (RQ failed registry, Laravel failed_jobs table).",
        "short",
        [
            Q(
                once(f"telltale_queue_failed_jobs{{{Q_SEL}}}"),
                "{{queue}} ({{backend}})",
                empty="absent for backends without a failed-job store (Celery, Redis queues without a database)",
            )
        ],
    )
    b.timeseries(
        "Queue collector",
        "1 when the exporter's queue collector succeeded on its last run (0: the queue figures are stale).",
        "none",
        [Q('telltale_exporter_collector_success{collector="queues"}', "{{instance}}")],
        thresholds=UP_DOWN,
    )
    return b
