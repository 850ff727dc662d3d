"""Helpers shared by the benchmarks: start uvicorn apps, drive them with wrk, summarise."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from tests.servers import free_port, wait_port

PY = sys.executable
T = TypeVar("T")


@contextmanager
def uvicorn_app(
    target: str, *, factory: bool = False, env: dict[str, str] | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """Serve `module:attr` under uvicorn (1 worker, uvloop, httptools, no access log); yield the base URL."""
    port = free_port()
    cmd = [
        PY,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]
    if factory:
        cmd.append("--factory")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    proc = subprocess.Popen(cmd, env={**clean, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(url: str, seconds: float = 5, connections: int = 32, threads: int = 1) -> dict[str, float]:
    """Requests per second and latency percentiles from Debian's wrk."""
    binary = shutil.which("wrk")
    if not binary:
        raise RuntimeError("wrk not found: apt-get install wrk (make bench installs it)")
    out = subprocess.run(
        [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            lat[pct] = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def rotated(runs: Sequence[T], round_: int, rounds: int) -> list[T]:
    """The runs in this round's order. Benchmarks run each variant in several processes (identical
    servers differ by up to 5% from process to process on this machine) and start each round elsewhere
    (a round's first run was measured 2-6% slower than the rest)."""
    shift = round_ * len(runs) // rounds
    return [*runs[shift:], *runs[:shift]]


def interleaved(
    targets: dict[str, Sequence[str]], path: str, rounds: int = 6, seconds: float = 2
) -> dict[str, list[float]]:
    """Throughput of already-running targets (several processes each), rounds interleaved so drift hits
    all alike, in `rotated` order."""
    runs = [(name, base) for name, bases in targets.items() for base in bases]
    results: dict[str, list[float]] = {name: [] for name in targets}
    for _, base in runs:
        wrk(base + path, seconds=1)  # warm up
    for round_ in range(rounds):
        for name, base in rotated(runs, round_, rounds):
            results[name].append(wrk(base + path, seconds=seconds)["rps"])
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def now() -> float:
    return time.perf_counter()
