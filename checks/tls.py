"""TLS certificate expiry: degraded under 14 days, unhealthy under 3 or when the chain does not verify."""

from __future__ import annotations

import asyncio
import ssl
import time

from telltale.checks.base import Check, Observation, Status, worst
from telltale.config.settings import TlsHost


class TlsCheck(Check):
    component = "tls"

    def __init__(
        self,
        name: str,
        hosts: list[TlsHost],
        *,
        ca_file: str | None = None,
        degraded_days: float = 14,
        unhealthy_days: float = 3,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self.hosts = hosts
        self.degraded_days, self.unhealthy_days = degraded_days, unhealthy_days
        self.context = ssl.create_default_context(cafile=ca_file)

    async def _one(self, target: TlsHost) -> tuple[Status, str, dict]:
        label = f"{target.host}:{target.port}"
        try:
            _, writer = await asyncio.open_connection(
                target.host, target.port, ssl=self.context, server_hostname=target.server_name or target.host
            )
        except ssl.SSLCertVerificationError as exc:
            return Status.UNHEALTHY, f"{label} invalid certificate: {exc.verify_message}", {"valid": False}
        except (OSError, ssl.SSLError) as exc:
            return Status.UNHEALTHY, f"{label} TLS handshake failed: {exc}", {"valid": False}
        try:
            cert = writer.get_extra_info("peercert")
        finally:
            writer.close()
        expires = ssl.cert_time_to_seconds(cert["notAfter"])
        days = (expires - time.time()) / 86400
        if days < self.unhealthy_days:
            status = Status.UNHEALTHY
        elif days < self.degraded_days:
            status = Status.DEGRADED
        else:
            status = Status.HEALTHY
        observed = {"valid": True, "expires_at": expires, "days_left": round(days, 2)}
        return status, f"{label} expires in {days:.1f} days", observed

    async def probe(self) -> Observation:
        outcomes = await asyncio.gather(*(self._one(h) for h in self.hosts))
        observed = {f"{h.host}:{h.port}": o[2] for h, o in zip(self.hosts, outcomes, strict=True)}
        status = worst([o[0] for o in outcomes])
        return Observation(status, "; ".join(o[1] for o in outcomes), {"hosts": observed})
