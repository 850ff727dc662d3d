"""`python -m grafana.dashgen [OUT]`: write the dashboards (default grafana/dashboards)."""

from __future__ import annotations

import sys
from pathlib import Path

from .generate import OUT, write


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    for path in write(out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
