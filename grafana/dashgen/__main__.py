"""`python -m grafana.dashgen [OUT]`: write the dashboards (default grafana/dashboards).

`python -m grafana.dashgen --queries [--empty]`: list every panel query (uid, panel, refId, expression) and
why it may be empty, or only those that may be."""

from __future__ import annotations

import sys
from pathlib import Path

from .generate import OUT, write


def _list(only_empty: bool) -> None:
    from .queries import panel_queries

    for q in panel_queries():
        if only_empty and q.may_be_empty is None:
            continue
        why = f"  # may be empty: {q.may_be_empty}" if q.may_be_empty else ""
        print(f"{q.uid}\t{q.panel}\t{q.ref_id}\t{q.expr}{why}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--queries":
        _list(only_empty="--empty" in argv[1:])
        return 0
    out = Path(argv[0]) if argv else OUT
    for path in write(out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
