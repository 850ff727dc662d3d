"""`python -m scripts.stack` (`make stack`): start the stack, print its URLs and every notification it sends,
stop everything and remove its directory on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter

from scripts.stack import FAST, Ports, Stack, Timing


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__)
    parser.add_argument("--free-ports", action="store_true", help="free loopback ports instead of the defaults")
    parser.add_argument("--ha", action="store_true", help="a second Prometheus replica (the HA pair)")
    parser.add_argument("--fast", action="store_true", help="1 s scrapes, evaluations and `for`: alerts in seconds")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _interrupt)
    stack = Stack(
        Ports.free() if args.free_ports else Ports(),
        replicas=2 if args.ha else 1,
        timing=FAST if args.fast else Timing(),
    )
    try:
        print(f"stack: starting in {stack.workdir} ...", flush=True)
        stack.start()
        width = max(len(name) for name in stack.urls())
        for name, url in stack.urls().items():
            print(f"  {name:<{width}}  {url}")
        print(
            f"  token (health, events): {stack.token}\n"
            f"  curl -H 'Authorization: Bearer {stack.token}' {stack.service_url}/health/detailed\n"
            "Notifications (Slack, PagerDuty, email go to local sinks) are printed below. Ctrl-C stops everything.",
            flush=True,
        )
        shown: Counter[str] = Counter()
        beats = 0
        while not (dead := stack.dead()):
            beats += 1
            if beats % 30 == 0:
                with contextlib.suppress(subprocess.CalledProcessError):  # Redis stopped on purpose
                    stack.beat()
            lines = Counter(stack.notifications())
            for line in (lines - shown).elements():
                print(f"notification: {line}", flush=True)
            shown = lines
            time.sleep(1)
        print(f"stack: {', '.join(dead)} exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as exc:  # a port taken, a binary missing or not starting
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    finally:
        # a second Ctrl-C must not cut the cleanup short: PostgreSQL, started by pg_ctl in its own process
        # group, would outlive it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stack: stopping", flush=True)
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
