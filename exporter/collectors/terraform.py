"""Terraform: binary present and its version (refreshed on an interval), and deployments from the database."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric
from telltale.checks.sqlident import quote_ident
from telltale.checks.terraform import terraform_version
from telltale.exporter.collectors.base import Collector, PgPool, Refreshed, described, gauge

_ACTIVE_DONE = ("completed", "failed", "cancelled", "canceled", "destroyed")


def deployments_sql(table: str) -> str:
    t = quote_ident(table)
    done = ", ".join(f"'{s}'" for s in _ACTIVE_DONE)
    return f"""
select (select count(*) from {t} where completed_at is null and status not in ({done})) as active,
       (select count(*) from {t} where status = 'completed' and completed_at >= now() - interval '24 hours')
         as completed,
       (select count(*) from {t} where status = 'failed'
          and coalesce(completed_at, started_at) >= now() - interval '24 hours') as failed,
       (select avg(extract(epoch from completed_at - started_at)) from {t}
          where status = 'completed' and completed_at >= now() - interval '24 hours'
          and started_at is not null)::float8 as avg_seconds
"""


class TerraformCollector(Collector):
    name = "terraform"

    def __init__(
        self, *, binary: str | None, pg: PgPool | None, table: str | None, refresh_interval: float, timeout: float
    ) -> None:
        self.binary, self.pg, self.table = binary, pg, table
        self.timeout = timeout
        self.version = Refreshed(self._version, refresh_interval, "terraform version") if binary else None
        self._sql = deployments_sql(table) if table else ""

    async def _version(self) -> str:
        assert self.binary is not None
        info = await terraform_version(self.binary, self.timeout)
        return str(info.get("terraform_version", "unknown"))

    def down(self) -> list[Metric]:
        if self.version is None:
            return []
        return [gauge("telltale_terraform_up", "1 when the terraform binary ran.", 1 if self.version.ok else 0)]

    def describe(self) -> list[Metric]:
        names = ["telltale_terraform_up", "telltale_terraform_info"] if self.version is not None else []
        if self.pg is not None and self.table:
            names += [
                "telltale_terraform_deployments_active",
                "telltale_terraform_deployments_last_24h",
                "telltale_terraform_deployment_duration_seconds_avg",
            ]
        return described(names)

    async def collect(self) -> list[Metric]:
        out: list[Metric] = []
        if self.version is not None:
            version = await self.version.get()
            out.append(gauge("telltale_terraform_up", "1 when the terraform binary ran.", 1 if self.version.ok else 0))
            if version is not None:
                info = GaugeMetricFamily("telltale_terraform_info", "Terraform version.", labels=["version"])
                info.add_metric([version], 1)
                out.append(info)
        if self.pg is not None and self.table:
            row = (await self.pg.fetch(self._sql))[0]
            out.append(gauge("telltale_terraform_deployments_active", "Deployments running now.", row["active"]))
            last = GaugeMetricFamily(
                "telltale_terraform_deployments_last_24h",
                "Deployments finished in the last 24 hours.",
                labels=["status"],
            )
            last.add_metric(["completed"], row["completed"])
            last.add_metric(["failed"], row["failed"])
            out.append(last)
            out.append(
                gauge(
                    "telltale_terraform_deployment_duration_seconds_avg",
                    "Average duration of deployments completed in the last 24 hours.",
                    row["avg_seconds"] or 0.0,
                )
            )
        return out

    async def aclose(self) -> None:
        if self.version is not None:
            await self.version.aclose()
