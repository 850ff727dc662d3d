"""Every dashboard, generated into <out>/<Folder>/<uid>.json (the layout Grafana's file provider reads with
foldersFromFilesStructure)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .board import Board
from .boards import (
    business,
    database,
    deployments,
    organization,
    overview,
    payments,
    queues,
    resources,
    security,
    self_monitoring,
    slo,
)

OUT = Path(__file__).resolve().parents[1] / "dashboards"
BUILDERS: tuple[Callable[[], Board], ...] = (
    overview.build,
    resources.build,
    queues.build,
    deployments.build,
    organization.build,
    payments.build,
    security.build,
    business.build,
    database.build,
    slo.build,
    self_monitoring.build,
)


def boards() -> list[Board]:
    return [build() for build in BUILDERS]


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline (stable diffs)."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Relative path -> JSON text of every dashboard."""
    out: dict[str, str] = {}
    for board in boards():
        out[f"{board.folder}/{board.uid}.json"] = render(board.build())
    return out


def write(out: Path = OUT) -> list[Path]:
    """Write every dashboard under `out`, removing JSON files there that no dashboard produces any more."""
    wanted = files()
    written = []
    for rel, text in wanted.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    for stale in out.glob("*/*.json"):
        if stale.relative_to(out).as_posix() not in wanted:
            stale.unlink()
    return written
