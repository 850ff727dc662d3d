"""Instructions per request under callgrind: an overhead figure that repeats, unlike wall-clock ratios.

`python -m bench callgrind [--keep DIR] [--profile] [VARIANT ...]` (or `run()` inside `make bench`).
Each variant runs `bench.callgrind_driver` in its own process under
`setarch -R valgrind --tool=callgrind --instr-atstart=no`: the same app as the throughput
benchmark, requests through uvicorn's HTTP protocol on uvloop, one connection, one at a time. The
driver dumps the counters after start-up plus WARM requests, after N1 more and after N2 more; a
variant's instructions per request are (window N2 - window N1) / (N2 - N1), so start-up and
everything a window costs besides its requests cancel out.

Why it repeats: PYTHONHASHSEED=0, `random` seeded before the first request, address-space
randomisation off (`setarch -R`: with it on, type-cache and dict collisions by address moved bare's
count by 0.2 % between runs), a fixed environment and every .pyc compiled before (either one changes
the allocator's state when the requests begin, by about 0.1 %), and `time.time`/`time.perf_counter`
pinned to clocks that advance per reading (durations and timestamps read from the wall made the count
follow the machine's load). Then two runs give the same count to within an instruction per request.
Callgrind counts instructions, not time, so other processes on the machine do not change the figure. What is left:
the span queue's export thread (traced variants) takes the GIL by time, which can move their count by
a few hundred instructions per request. Timers that would fire by wall time (the log flusher's 0.1 s,
the span queue's 5 s) are set to an hour: under callgrind they would fire fifty times as often per
request as in service.

Overhead is (variant - bare) / bare, both measured in the same run.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
WARM = int(os.environ.get("BENCH_CALLGRIND_WARM", "200"))
N1 = int(os.environ.get("BENCH_CALLGRIND_N1", "100"))
N2 = int(os.environ.get("BENCH_CALLGRIND_N2", "600"))
JOBS = int(os.environ.get("BENCH_CALLGRIND_JOBS", "2"))

# the span queue exports when 512 spans wait, as under load; its 5 s timer would cut batches short when a
# window takes fifty times its native time (bench/callgrind_driver.py: _no_timed_flushes)
_BATCH_BY_SIZE = {"OTEL_BSP_SCHEDULE_DELAY": "3600000"}
# variant -> (extra environment, what it is)
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "bare": ({}, "FastAPI, one async JSON route"),
    "asgi-layer": ({}, "floor: a pure-ASGI middleware that only awaits the app"),
    "asgi-layer+send-wrapper": ({}, "floor: the same with a send wrapper keeping the status"),
    "handwritten": ({}, "calibration: hand-written prometheus-client middleware (counter + histogram)"),
    "telltale": ({}, "TelemetryMiddleware: metrics with sizes, in-progress, request id, log context"),
    "telltale+trace10": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "sink", **_BATCH_BY_SIZE},
        "the same + server spans, parentbased_traceidratio 0.1, export in a child",
    ),
    "telltale+trace100": ({"OTEL_EXPORTER_OTLP_ENDPOINT": "sink", **_BATCH_BY_SIZE}, "the same at 1.0"),
    "telltale+access-log": ({}, "metrics + the JSON access line, no create_app (what the access line adds)"),
    "default": ({}, "`telltale serve` as shipped: create_app(defaults), JSON access line, GC tuning"),
    "default-nogc": ({"TELLTALE_GC_TUNING": "false"}, "the same with TELLTALE_GC_TUNING=false"),
}
# variant -> (goal as overhead fraction, compare with the calibration middleware too)
GOALS: dict[str, tuple[float, bool]] = {
    "telltale": (0.05, True),
    "telltale+trace10": (0.08, False),
    "telltale+trace100": (0.25, False),
    "default": (0.12, False),
}


def _environment(extra: dict[str, str], sink: str) -> dict[str, str]:
    """A fixed environment, not this shell's: with address randomisation off, the environment's size
    still moves the stack, and with it the count (by 0.1 % between two shells)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    if extra.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "sink":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink  # a port of five digits, so the same length every run
    return env


def measure(variant: str, out_dir: Path, sink: str) -> dict[str, float]:
    """Run one variant under callgrind; its instructions per request and the run's wall time."""
    extra, _ = VARIANTS[variant]
    prefix = out_dir / f"{variant}.out"
    cmd = [
        *(["setarch", "-R"] if shutil.which("setarch") else []),
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={prefix}",
        sys.executable,
        "-m",
        "bench.callgrind_driver",
        variant,
        str(WARM),
        str(N1),
        str(N2),
    ]
    started = time.monotonic()
    log = out_dir / f"{variant}.log"
    with open(log, "wb") as stderr:
        proc = subprocess.run(cmd, cwd=ROOT, env=_environment(extra, sink), stdout=subprocess.DEVNULL, stderr=stderr)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{variant}: exit {proc.returncode}: " + " | ".join(tail))
    first, second = total(Path(f"{prefix}.2")), total(Path(f"{prefix}.3"))
    return {"per_request": (second - first) / (N2 - N1), "seconds": time.monotonic() - started}


def total(dump: Path) -> int:
    m = re.search(r"^summary: (\d+)$", dump.read_text(errors="replace"), re.M)
    if m is None:
        raise RuntimeError(f"{dump}: no summary line")
    return int(m.group(1))


def self_costs(dump: Path) -> collections.Counter[str]:
    """Instructions spent in each function itself (not its callees), from a callgrind dump."""
    names: dict[str, str] = {}
    cost: collections.Counter[str] = collections.Counter()
    fn = ""
    after_calls = False
    name_line = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")
    with open(dump, errors="replace") as f:
        for line in f:
            m = name_line.match(line.rstrip("\n"))
            if m:
                kind, ident, name = m.groups()
                if name:
                    names[ident] = name
                if kind == "fn":
                    fn = ident
                continue
            if line.startswith("calls="):
                after_calls = True
            elif line[:1] in "0123456789+-*":
                if after_calls:  # the inclusive cost of a call, not this function's own
                    after_calls = False
                else:
                    cost[fn] += int(line.split()[-1])
    return collections.Counter({names.get(k, k): v for k, v in cost.items()})


def per_request_self(out_dir: Path, variant: str) -> collections.Counter[str]:
    a, b = self_costs(out_dir / f"{variant}.out.2"), self_costs(out_dir / f"{variant}.out.3")
    return collections.Counter({k: (b[k] - a[k]) / (N2 - N1) for k in set(a) | set(b)})


def profile_lines(out_dir: Path, variants: Iterable[str], top: int = 12) -> list[str]:
    """Where each variant's instructions over bare go, by C function (self cost per request)."""
    bare = per_request_self(out_dir, "bare")
    lines = []
    for v in variants:
        if v == "bare":
            continue
        diff = per_request_self(out_dir, v)
        diff.subtract(bare)
        lines.append(f"{v}: instructions per request over bare, by function (self)")
        for name, value in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
            lines.append(f"    {value:+10.0f}  {name[:100]}")
    return lines


def table(results: dict[str, dict[str, float]], wallclock: dict[str, float] | None = None) -> list[str]:
    bare = results["bare"]["per_request"]
    calib = results.get("handwritten", {}).get("per_request")
    lines = [
        f"callgrind: instructions per request = (window of {N2} - window of {N1}) / {N2 - N1}, after {WARM} "
        "warm requests; uvicorn httptools protocol on uvloop, in-process; overhead over bare, same run",
        f"  {'variant':<23} {'instr/req':>10} {'overhead':>9}  {'goal':<33}"
        + ("  wall-clock ratio" if wallclock else ""),
    ]
    for v, r in results.items():
        per = r["per_request"]
        over = (per - bare) / bare
        goal = ""
        if v in GOALS:
            limit, below_calib = GOALS[v]
            met = over <= limit
            goal = f"<= {limit:.0%}"
            if below_calib and calib is not None:
                met = met and per < calib
                goal += " and < handwritten"
            goal += ": met" if met else ": MISSED"
        wall = ""
        if wallclock and v in wallclock:
            wall = f"  {wallclock[v]:.2f}x"
        lines.append(f"  {v:<23} {per:10.0f} {over:+9.1%}  {goal:<33}{wall}")
    return lines


def _compile() -> None:
    """Bring every .pyc up to date first: a variant that compiles a changed module at start-up leaves the
    allocator in another state, and its requests then cost some hundred instructions more or less."""
    import compileall

    for folder in ("bench", "app", "config", "checks", "alerting", "exporter", "tests"):
        if (ROOT / folder).is_dir():
            compileall.compile_dir(ROOT / folder, quiet=2)


def measure_all(variants: Sequence[str], out_dir: Path) -> dict[str, dict[str, float]]:
    if not shutil.which("valgrind"):
        raise RuntimeError("valgrind not found: apt-get install valgrind")
    from bench.middleware_bench import SINK

    _compile()
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    try:
        wait_port(sink_port)
        with ThreadPoolExecutor(max(1, JOBS)) as pool:
            futures = {v: pool.submit(measure, v, out_dir, f"http://127.0.0.1:{sink_port}") for v in variants}
            return {v: f.result() for v, f in futures.items()}
    finally:
        sink.terminate()
        sink.wait()


def run(
    variants: Sequence[str] | None = None,
    keep: Path | None = None,
    profile: bool = False,
    wallclock: dict[str, float] | None = None,
) -> list[str]:
    chosen = list(variants or VARIANTS)
    if "bare" not in chosen:
        chosen.insert(0, "bare")
    out_dir = keep or Path(tempfile.mkdtemp(prefix="telltale-callgrind-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        results = measure_all(chosen, out_dir)
        if wallclock is None:
            wallclock = _last_wallclock()
        lines = table(results, wallclock)
        lines += [f"  {v}: {VARIANTS[v][1]}" for v in chosen]
        lines.append(f"  code: {_revision()}")
        lines.append(f"  ({len(chosen)} variants, {JOBS} at a time, {time.monotonic() - started:.0f} s)")
        if profile:
            lines += profile_lines(out_dir, chosen)
        if keep is not None:
            lines.append(f"  dumps kept in {out_dir} (callgrind_annotate {out_dir}/<variant>.out.3)")
        return lines
    finally:
        if keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)


def _revision() -> str:
    """The commit measured, and whether the hot path had uncommitted edits then."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "config", "bench"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown (no git)"
    edited = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted edits in {', '.join(edited)}" if edited else "")


def _last_wallclock() -> dict[str, float] | None:
    """The throughput benchmark's ratios when it ran in this process (`make bench`)."""
    module = sys.modules.get("bench.middleware_bench")
    return getattr(module, "LAST_RATIOS", None) or None


def main(argv: Sequence[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench callgrind", description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="*", choices=[[], *VARIANTS], metavar="VARIANT", help=", ".join(VARIANTS))
    p.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    p.add_argument("--profile", action="store_true", help="also list, per variant, where its extra instructions go")
    args = p.parse_args(argv)
    for line in run(args.variants or None, args.keep, args.profile):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
