"""Which business events deserve a person, as Alertmanager alerts.

A failed deployment, a license about to expire, an organization's SLA violation and a spike of failed
payments become alerts with a severity, the organization and a bounded `endsAt`; Alertmanager then
routes, groups, silences and rate-limits them like every other alert. Each alert carries a runbook link.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telltale.alerting.alertmanager import Alert

RUNBOOK = "https://github.com/telltale/telltale/blob/main/docs/runbook.md#"
DAY = 86400.0


def _alert(
    alertname: str,
    severity: str,
    team: str,
    component: str,
    summary: str,
    description: str,
    organization: str | None,
    now: float,
    ttl: float,
    extra: dict[str, str] | None = None,
    environment: str = "",
) -> Alert:
    labels = {
        "alertname": alertname,
        "severity": severity,
        "team": team,
        "component": component,
        "service": "telltale",
        "source": "events",
    }
    if organization:
        labels["organization"] = organization
    if environment:
        labels["environment"] = environment
    labels.update(extra or {})
    annotations = {"summary": summary, "description": description, "runbook_url": RUNBOOK + alertname.lower()}
    return Alert(labels, annotations, starts_at=now, ends_at=now + ttl)


@dataclass
class EventAlerts:
    """Maps accepted events to alerts; keeps the small sliding window the payment-spike rule needs."""

    license_warning_days: float = 7.0
    payment_spike_failures: int = 5
    payment_spike_window: float = 300.0
    deployment_alert_ttl: float = 3600.0
    environment: str = ""
    max_organizations: int = 1000
    _payment_failures: dict[str, deque[float]] = field(default_factory=dict)
    _spike_sent: dict[str, float] = field(default_factory=dict)

    def alerts_for(self, event: Any, now: float | None = None) -> list[Alert]:
        now = time.time() if now is None else now
        kind = event.type
        org = getattr(event, "organization", None)
        env = self.environment
        if kind == "deployment.failed":
            provider = getattr(event, "provider", "unknown")
            return [
                _alert(
                    "DeploymentFailed",
                    "warning",
                    "platform",
                    "deployments",
                    f"Deployment failed for {org or 'an organization'} on {provider}",
                    f"A {provider} deployment reported failure to the events API.",
                    org,
                    now,
                    self.deployment_alert_ttl,
                    {"provider": provider},
                    env,
                )
            ]
        if kind == "license.expiry":
            expires = (
                event.expires_at.timestamp() if isinstance(event.expires_at, datetime) else float(event.expires_at)
            )
            days = (expires - now) / DAY
            if days > self.license_warning_days:
                return []
            severity = "warning" if days <= 1 else "info"
            when = "has expired" if days <= 0 else f"expires in {days:.1f} days"
            return [
                _alert(
                    "LicenseExpiringSoon",
                    severity,
                    "business",
                    "licensing",
                    f"License of {org} {when}",
                    f"The license of organization {org} {when}; renew it.",
                    org,
                    now,
                    DAY,
                    environment=env,
                )
            ]
        if kind == "sla.violation":
            objective = getattr(event, "objective", "availability")
            return [
                _alert(
                    "OrganizationSLAViolation",
                    "critical" if getattr(event, "severe", False) else "warning",
                    "business",
                    "sla",
                    f"SLA violated for {org}: {objective}",
                    f"Objective {objective}: target {getattr(event, 'target', '?')}, "
                    f"measured {getattr(event, 'actual', '?')}.",
                    org,
                    now,
                    3600.0,
                    {"objective": str(objective)},
                    env,
                )
            ]
        if kind == "payment.failed":
            return self._payment_spike(org or "unknown", getattr(event, "provider", "unknown"), now)
        return []

    def _payment_spike(self, org: str, provider: str, now: float) -> list[Alert]:
        window = self._payment_failures.get(org)
        if window is None:
            if len(self._payment_failures) >= self.max_organizations:
                self._evict(now)
            window = self._payment_failures.setdefault(org, deque(maxlen=10_000))
        window.append(now)
        while window and window[0] < now - self.payment_spike_window:
            window.popleft()
        if len(window) < self.payment_spike_failures:
            return []
        if now - self._spike_sent.get(org, 0.0) < 60:  # refresh at most once a minute per organization
            return []
        self._spike_sent[org] = now
        return [
            _alert(
                "PaymentFailureSpike",
                "critical",
                "payments",
                "payments",
                f"{len(window)} failed payments for {org} in {self.payment_spike_window / 60:.0f} min",
                f"Payments through {provider} are failing for organization {org}.",
                org,
                now,
                self.payment_spike_window * 2,
                environment=self.environment,
            )
        ]

    def _evict(self, now: float) -> None:
        stale = [o for o, w in self._payment_failures.items() if not w or w[-1] < now - self.payment_spike_window]
        for o in stale or list(self._payment_failures)[:1]:
            self._payment_failures.pop(o, None)
            self._spike_sent.pop(o, None)
