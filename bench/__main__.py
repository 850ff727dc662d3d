"""Run every benchmark and print its report; a benchmark that fails is reported, not fatal to the rest.

`python -m bench callgrind [...]` runs only the instruction counts (a few minutes; see
bench/callgrind_bench.py for its options).
"""

from __future__ import annotations

import importlib
import sys
import traceback

MODULES = ["bench.health_bench", "bench.middleware_bench", "bench.exporter_bench", "bench.callgrind_bench"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["callgrind"]:
        from bench.callgrind_bench import main as callgrind

        return callgrind(argv[1:])
    failed = 0
    for name in MODULES:
        print(f"\n# {name}\n", flush=True)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"(not available: {exc})")
            continue
        try:
            for line in module.run():
                print(line, flush=True)
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
