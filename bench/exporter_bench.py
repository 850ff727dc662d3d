"""Exporter benchmark: `telltale exporter` beside Debian's postgres and redis exporters, same servers.

For each exporter: median and p99 latency of 100 scrapes, CPU seconds per scrape, resident memory,
and whether `promtool check metrics` passes. Run: `python -m bench.exporter_bench`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import stop_process  # noqa: E402
from tests.servers import PostgresServer, RedisServer, free_port, wait_port  # noqa: E402

SCRAPES, WARMUP = 100, 5
PG_EXPORTER, REDIS_EXPORTER = "/usr/bin/prometheus-postgres-exporter", "/usr/bin/prometheus-redis-exporter"


def _measure(name: str, proc: subprocess.Popen, port: int) -> dict:
    wait_port(port, timeout=20)
    url = f"http://127.0.0.1:{port}/metrics"
    ps = psutil.Process(proc.pid)
    with httpx.Client(timeout=10) as client:
        for _ in range(WARMUP):
            client.get(url).raise_for_status()
        cpu0 = ps.cpu_times()
        times = []
        body = b""
        for _ in range(SCRAPES):
            t = time.perf_counter()
            r = client.get(url)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
            body = r.content
        cpu1 = ps.cpu_times()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    check = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body, capture_output=True)
    problems = (check.stdout + check.stderr).decode().strip().splitlines()
    times.sort()
    return {
        "name": name,
        "median": statistics.median(times),
        "p99": times[int(len(times) * 0.99) - 1],
        "max": times[-1],
        "cpu": cpu / SCRAPES,
        "rss": ps.memory_info().rss,
        "samples": body.count(b"\n"),
        "promtool": check.returncode == 0,
        "problems": len(problems),
    }


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_stop = stop_process


def run() -> list[str]:
    """Run the benchmark; returns the lines of its report."""
    pg, rs = PostgresServer().init().start(), RedisServer().start()
    procs: list[subprocess.Popen] = []
    results = []
    try:
        pg.psql_file(ROOT / "deploy/sql/001_schema.sql")
        pg.psql_file(ROOT / "deploy/sql/002_seed.sql")
        pg.psql("create extension if not exists pg_stat_statements")
        for i in range(50):
            rs.cli("set", f"bench:{i}", "x")
        base = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}

        port = free_port()
        env = {
            **base,
            "TELLTALE_DATABASE_URL": pg.dsn,
            "TELLTALE_REDIS_URL": rs.url,
            "TELLTALE_QUEUES": '[{"name": "default", "backend": "sql"}, {"name": "emails"}]',
            "TELLTALE_EXPORTER_LOG_LEVEL": "warning",
        }
        python = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
        procs.append(_start([python, "-m", "exporter", "--port", str(port)], env))
        results.append(_measure("telltale exporter (postgres+redis+queues+disk+sql)", procs[-1], port))

        port = free_port()
        env = {**base, "DATA_SOURCE_NAME": f"{pg.dsn}?sslmode=disable"}
        procs.append(_start([PG_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"], env))
        results.append(_measure("prometheus-postgres-exporter", procs[-1], port))

        port = free_port()
        procs.append(
            _start(
                [REDIS_EXPORTER, f"--redis.addr=redis://127.0.0.1:{rs.port}", f"--web.listen-address=127.0.0.1:{port}"],
                base,
            )
        )
        results.append(_measure("prometheus-redis-exporter", procs[-1], port))
    finally:
        for p in procs:
            _stop(p)
        pg.destroy()
        rs.destroy()

    lines = [
        f"exporter scrape benchmark: {SCRAPES} scrapes each after {WARMUP} warm-up, keep-alive HTTP",
        f"{'exporter':52} {'median':>9} {'p99':>9} {'max':>9} {'cpu/scrape':>11} {'rss':>8} {'lines':>6}  promtool",
    ]
    for r in results:
        verdict = "pass" if r["promtool"] else f"FAIL ({r['problems']} problems)"
        lines.append(
            f"{r['name']:52} {r['median'] * 1e3:7.2f}ms {r['p99'] * 1e3:7.2f}ms {r['max'] * 1e3:7.2f}ms "
            f"{r['cpu'] * 1e3:9.2f}ms {r['rss'] / 2**20:6.1f}MB {r['samples']:6d}  {verdict}"
        )
    tt, pgx, rdx = results
    both = pgx["median"] + rdx["median"]
    lines.append(
        f"sum of the two exporters' medians: {both * 1e3:.2f} ms; telltale median {tt['median'] * 1e3:.2f} ms"
        f" -> {'OK' if tt['median'] <= both else 'SLOWER'} (goal: telltale <= sum)"
    )
    fast = "OK" if tt["max"] < 0.05 else "MISSED"
    lines.append(
        f"telltale slowest scrape {tt['max'] * 1e3:.1f} ms (goal < 50 ms): {fast};"
        f" rss {tt['rss'] / 2**20:.1f} MB (goal < 64 MB): {'OK' if tt['rss'] < 64 * 2**20 else 'MISSED'}"
    )
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
