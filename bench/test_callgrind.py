"""The callgrind benchmark's own checks (`.venv/bin/python -m pytest -q bench/test_callgrind.py`, seconds):
the driver serves every variant natively, the dump parser and the goal table are right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import callgrind_bench as cb
from bench.callgrind_driver import valgrind_request

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("variant", ["bare", "handwritten", "telltale", "telltale+access-log", "default"])
def test_driver_answers_every_request_200(variant: str) -> None:
    """The driver exits non-zero when a window's responses are not all 200 (`check`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.callgrind_driver", variant, "3", "2", "5"],
        cwd=ROOT,
        env={**env, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    if variant == "default":  # the JSON access line is written, one per request
        lines = [line for line in proc.stdout.decode().splitlines() if '"telltale.access"' in line]
        assert len(lines) == 3 + 2 + 5


def test_client_request_is_a_no_op_outside_valgrind() -> None:
    assert valgrind_request(0x1001) == 0  # RUNNING_ON_VALGRIND answers the default natively


DUMP = """# callgrind format
events: Ir
summary: 1000

fl=(1) a.c
fn=(1) outer
0 100
cfn=(2) inner
calls=2 0
0 700
fn=(2)
0 700
fn=(3) other
0 200
"""


def test_self_costs_exclude_callees(tmp_path: Path) -> None:
    dump = tmp_path / "x.out.3"
    dump.write_text(DUMP)
    assert cb.self_costs(dump) == {"outer": 100, "inner": 700, "other": 200}
    assert cb.total(dump) == 1000


def test_metrics_goal_needs_both_limits() -> None:
    results = {
        "bare": {"per_request": 1000.0},
        "handwritten": {"per_request": 1030.0},
        "telltale": {"per_request": 1040.0},  # within 5 %, but above the calibration middleware
        "default": {"per_request": 1100.0},
    }
    lines = cb.table(results, {"telltale": 0.9})
    telltale = next(line for line in lines if line.strip().startswith("telltale "))
    default = next(line for line in lines if line.strip().startswith("default "))
    assert "+4.0%" in telltale and "MISSED" in telltale and "0.90x" in telltale
    assert "+10.0%" in default and "met" in default
