"""`make demo`: a throwaway PostgreSQL (demo schema and rows from deploy/sql) and Redis on free ports,
with `telltale serve` on :8000 and `telltale exporter` on :9465 reading them. Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer, RedisServer  # noqa: E402


def main() -> int:
    pg = PostgresServer().init().start()
    redis = RedisServer().start()
    procs: list[subprocess.Popen] = []
    try:
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):
            pg.psql_file(sql)
        redis.cli("rpush", "queues:default", *[f'{{"job":"demo","n":{i}}}' for i in range(12)])
        redis.cli("set", "schedule:heartbeat", str(int(time.time())))
        env = {
            **os.environ,
            "TELLTALE_DATABASE_URL": pg.dsn,
            "TELLTALE_REDIS_URL": redis.url,
            "TELLTALE_QUEUES": '[{"name": "default"}]',
            "TELLTALE_SCHEDULER_HEARTBEAT_KEY": "schedule:heartbeat",
            "TELLTALE_SCHEDULER_MAX_AGE_SECONDS": "3600",
            "TELLTALE_HEALTH_TOKEN": "demo-token",
            "TELLTALE_INGEST_TOKEN": "demo-token",
            "TELLTALE_ENVIRONMENT": "demo",
        }
        cli = [sys.executable, "-m", "telltale.app.cli"]
        procs.append(subprocess.Popen([*cli, "serve", "--log-format", "console"], env=env, cwd=ROOT))
        procs.append(subprocess.Popen([*cli, "exporter"], env=env, cwd=ROOT))
        print(
            f"demo: postgres {pg.dsn}, redis {redis.url}\n"
            "  curl -H 'Authorization: Bearer demo-token' http://127.0.0.1:8000/health/detailed\n"
            "  curl http://127.0.0.1:9465/metrics",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.destroy()
        redis.destroy()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # a signal mask would be inherited by the children
    sys.exit(main())
