"""Graceful drain: on SIGTERM, readiness turns 503 for `drain_seconds` before the server stops accepting.

Kubernetes sends SIGTERM and removes the pod from Service endpoints at about the same time; serving a
503 on /health/ready for a few seconds first lets every load balancer notice before connections close.
Uvicorn installs its own SIGTERM/SIGINT handlers before the app starts; this wraps them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from telltale.app.state import ServiceState

log = logging.getLogger("telltale.drain")


def install_drain(state: ServiceState, seconds: float) -> Callable[[], None]:
    """Wrap the current SIGTERM handler; returns a function that restores it."""
    loop = asyncio.get_running_loop()
    previous: Any = signal.getsignal(signal.SIGTERM)
    if seconds <= 0 or not callable(previous):
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.draining:  # a second SIGTERM: stop now
            previous(signum, frame)
            return
        state.draining = True
        # logged from the loop, not inside the signal handler (which may interrupt a logging call)
        loop.call_soon_threadsafe(_announce, seconds)
        loop.call_soon_threadsafe(loop.call_later, seconds, previous, signum, None)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return restore


def _announce(seconds: float) -> None:
    """One line, so whoever reads the log knows why the process did not stop at once, and what to change."""
    log.info(f"SIGTERM: draining for {seconds:g} s (TELLTALE_DRAIN_SECONDS)", extra={"drain_seconds": seconds})
