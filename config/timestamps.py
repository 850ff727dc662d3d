"""Timestamps as Telltale reads and writes them: one parser for what workers and schedulers write, one
ISO 8601 form for what Telltale writes (responses, Alertmanager, logs' own fast path aside)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


def parse_timestamp(value: str | bytes) -> float:
    """Seconds since the epoch from a Unix timestamp (seconds or milliseconds) or an ISO 8601 time.

    A naive ISO time is UTC (RQ and most schedulers write UTC). Raises ValueError for anything else,
    including a non-finite number and bytes that are not UTF-8: callers treat that as "no timestamp".
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise ValueError("not a timestamp: not UTF-8") from None
    try:
        ts = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a timestamp: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(ts):
        raise ValueError(f"not a timestamp: {value[:40]!r}")
    if ts > 1e11:  # milliseconds (JavaScript's Date.now(), Laravel's now()->getTimestampMs())
        ts /= 1000
    return ts


def iso_utc(ts: float) -> str:
    """`2026-12-01T20:31:05.123Z`: UTC, milliseconds, the `Z` suffix."""
    whole = math.floor(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts - whole) * 1000):03d}Z"
