"""Foundation benchmarks.

1. /health/detailed with every check on and one slow dependency: latency tracks the slowest check,
   not the sum of them.
2. /health/live throughput under uvicorn next to a bare FastAPI endpoint, same run (goal ≥ 0.9x).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.common import interleaved, median, now, percentile, uvicorn_app
from tests.servers import PostgresServer, RedisServer, free_port

DELAYS = {"slow_api": 0.40, "billing_api": 0.15, "cloud_api": 0.15, "dns_api": 0.15}
TOKEN = "bench-token"


class _Delayed(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        import time

        time.sleep(DELAYS.get(self.path.strip("/"), 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _terraform_stand_in(root: Path) -> str:
    script = root / "terraform"
    script.write_text('#!/bin/sh\necho \'{"terraform_version":"1.9.0","platform":"linux_amd64"}\'\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def bench_detailed() -> list[str]:
    pg, redis = PostgresServer().init().start(), RedisServer().start()
    http_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", http_port), _Delayed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = Path(tempfile.mkdtemp(prefix="telltale-bench-"))
    deps = [{"name": n, "url": f"http://127.0.0.1:{http_port}/{n}", "timeout_seconds": 1.5} for n in DELAYS]
    env = {
        "TELLTALE_DATABASE_URL": pg.dsn,
        "TELLTALE_REDIS_URL": redis.url,
        "TELLTALE_HEALTH_TOKEN": TOKEN,
        "TELLTALE_HTTP_DEPENDENCIES": json.dumps(deps),
        "TELLTALE_QUEUES": json.dumps([{"name": "default"}]),
        "TELLTALE_SCHEDULER_HEARTBEAT_KEY": "schedule:heartbeat",
        "TELLTALE_TERRAFORM_BINARY": _terraform_stand_in(root),
        "TELLTALE_CACHE_TTL_SECONDS": "0",
        "TELLTALE_HEALTH_DEADLINE_SECONDS": "2",
    }
    redis.cli("set", "schedule:heartbeat", str(int(__import__("time").time())))
    try:
        with uvicorn_app("telltale.app.main:app_from_env", factory=True, env=env) as base:
            times, sums, slowest = [], [], []
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
                c.get("/health/detailed")
                for _ in range(20):
                    t = now()
                    body = c.get("/health/detailed").json()
                    times.append(now() - t)
                    lat = [chk["latency_ms"] / 1000 for chk in body["checks"].values()]
                    sums.append(sum(lat))
                    slowest.append(max(lat))
        n_checks = len(body["checks"])
    finally:
        server.shutdown()
        pg.destroy()
        redis.destroy()
        shutil.rmtree(root, ignore_errors=True)
    return [
        "## /health/detailed, every check on, one slow dependency (400 ms), cache off",
        f"checks per call: {n_checks}; 20 calls",
        f"response latency: median {median(times) * 1000:.0f} ms, p95 {percentile(times, 95) * 1000:.0f} ms",
        f"slowest check (median): {median(slowest) * 1000:.0f} ms; sum of all checks (median): "
        f"{median(sums) * 1000:.0f} ms",
        f"latency / slowest check: {median(times) / median(slowest):.2f}x; "
        f"latency / sum of checks: {median(times) / median(sums):.2f}x",
    ]


def bench_live() -> list[str]:
    with contextlib.ExitStack() as stack:
        bare = [stack.enter_context(uvicorn_app("bench.apps:bare")) for _ in range(2)]
        telltale = [stack.enter_context(uvicorn_app("telltale.app.main:app_from_env", factory=True)) for _ in range(2)]
        rps = interleaved({"bare FastAPI": bare, "telltale": telltale}, "/health/live", rounds=6, seconds=2)
    b, t = median(rps["bare FastAPI"]), median(rps["telltale"])
    return [
        "## /health/live throughput (uvicorn, 1 worker, uvloop, httptools; wrk -c32; 2 processes each, "
        "6 interleaved rounds x 2 s)",
        f"bare FastAPI: {b:,.0f} req/s (rounds {', '.join(f'{x:,.0f}' for x in rps['bare FastAPI'])})",
        f"telltale:     {t:,.0f} req/s (rounds {', '.join(f'{x:,.0f}' for x in rps['telltale'])})",
        f"ratio: {t / b:.2f}x bare (goal >= 0.90x)",
    ]


def run() -> list[str]:
    return [*bench_detailed(), "", *bench_live()]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
    asyncio.get_event_loop_policy()
    print("\n".join(run()))
