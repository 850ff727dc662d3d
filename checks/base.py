"""The probe model: a Check produces an Observation; the runner turns it into a timed Result."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def ietf(self) -> str:
        """The IETF health-check draft's word for this status."""
        return {"healthy": "pass", "degraded": "warn", "unhealthy": "fail"}[self.value]


_RANK = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNHEALTHY: 2}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.HEALTHY)


def grade(value: float, degraded: float | None, unhealthy: float | None) -> Status:
    """Higher is worse: compare a reading with its degraded and unhealthy thresholds."""
    if unhealthy is not None and value >= unhealthy:
        return Status.UNHEALTHY
    if degraded is not None and value >= degraded:
        return Status.DEGRADED
    return Status.HEALTHY


class ProbeError(Exception):
    """A probe failure whose text is the whole message (`connect failed: role "app" does not exist`);
    raise it `from` the driver's exception, which the runner reports as the result's `error`."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe saw: its own verdict, a message and the readings behind it."""

    status: Status
    message: str = ""
    observed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """A check's reported outcome, as the endpoints and metrics serve it."""

    name: str
    component: str
    status: Status
    message: str
    latency_seconds: float
    checked_at: float  # wall clock, seconds since the epoch
    critical: bool
    tags: frozenset[str]
    observed: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    raw_status: Status | None = None  # the probe's own verdict when thresholds held it back

    def age(self, now: float) -> float:
        return max(0.0, now - self.checked_at)

    def to_dict(self, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status.value,
            "component": self.component,
            "message": self.message,
            "latency_ms": round(self.latency_seconds * 1000, 3),
            "critical": self.critical,
            "tags": sorted(self.tags),
            "checked_at": self.checked_at,
            "age_seconds": round(self.age(now), 3),
            "observed": self.observed,
        }
        if self.error:
            data["error"] = self.error
        if self.raw_status is not None and self.raw_status != self.status:
            data["probe_status"] = self.raw_status.value
        return data


class Check(ABC):
    """One dependency probe. Subclasses implement `probe`; the runner times, bounds and caches it."""

    component: str = "custom"

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 1.0,
        critical: bool = False,
        tags: frozenset[str] | set[str] = frozenset(),
        failure_threshold: int = 1,
        success_threshold: int = 1,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.critical = critical
        self.tags = frozenset(tags)
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold

    @abstractmethod
    async def probe(self) -> Observation:
        """Look at the dependency once. Raise on failure; the runner turns it into `unhealthy`."""

    async def close(self) -> None:
        """Release pools and clients."""
