"""docs/metrics.md's worst case for the event metrics, as events: every label of every event type flooded
with new values past its cap. `test_events` records them in-process and counts the series; `test_scrape_limits`
posts them to a real service and has Prometheus scrape the result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ORGANIZATIONS = 1100  # 100 past the default organization cap
_KINDS = ["brute_force", "credential_stuffing", "account_takeover", "impossible_travel", "token_reuse", "scanner"]


def _currency(n: int) -> str:
    return f"C{chr(65 + n % 26)}{chr(65 + n // 26 % 26)}"


def worst_case_events() -> Iterator[dict[str, Any]]:
    """1,100 organizations x 6 values of every other label (40 providers, 70 resources and objectives), the
    organization-less events, every provider with both duration statuses, every (provider, currency, status)."""
    for i in range(6 * ORGANIZATIONS):
        j, org, p, currency = i // ORGANIZATIONS, f"org-{i % ORGANIZATIONS}", f"p{i % 40}", _currency(i)
        for event in (
            {"type": ("deployment.started", "deployment.completed", "deployment.failed")[j % 3], "provider": p},
            {
                "type": "license.validated",
                "result": ("valid", "invalid", "expired", "error")[j % 4],
                "latency_seconds": 0.1,
            },
            {"type": "license.expiry", "expires_at": "2030-01-01T00:00:00Z"},
            {"type": ("payment.succeeded", "payment.failed")[j % 2], "provider": p, "currency": currency, "amount": 1},
            {"type": "websocket.connections", "connections": i},
            {"type": "quota.usage", "resource": f"r{i % 70}", "used": 1, "limit": 2},
            {"type": "login.failed"},
            {"type": "rate_limit.hit"},
            {"type": "suspicious_activity", "kind": _KINDS[j]},
            {"type": "sla.violation", "objective": f"o{i % 70}", "target": 1, "actual": 0},
            {
                "type": "requests.summary",
                "requests": 3,
                "client_errors": 1,
                "server_errors": 1,
                "durations_seconds": [1],
            },
        ):
            yield {**event, "organization": org}
    yield {"type": "login.failed"}  # without an organization: `unknown`
    yield {"type": "rate_limit.hit"}
    yield {"type": "websocket.connections", "connections": 1}
    yield {"type": "requests.summary", "requests": 1, "durations_seconds": [0.1]}
    for p in range(40):
        for status in ("completed", "failed"):
            yield {"type": f"deployment.{status}", "provider": f"p{p}", "duration_seconds": 1}
        for c in range(40):
            for status in ("succeeded", "failed"):
                yield {"type": f"payment.{status}", "provider": f"p{p}", "currency": _currency(c), "amount": 1}
