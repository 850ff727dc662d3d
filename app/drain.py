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
        log.info("SIGTERM: draining", extra={"drain_seconds": seconds})
        loop.call_soon_threadsafe(loop.call_later, seconds, previous, signum, None)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return restore
