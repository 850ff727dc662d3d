"""The scrape limits docs/scaling.md quotes, measured on real processes: `telltale serve` flooded through
the events API with every label of every event type (requests.summary included) past its cap (1,100
organizations, the worst case of docs/metrics.md), and `telltale exporter` over a real PostgreSQL holding
1,000 organizations and a Redis, both scraped by Debian's Prometheus. Prints series per scrape, scrape time
and exposition size, and fails when a scrape outgrows the series bound or the shipped scrape timeout.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers import (
    PostgresServer,
    PrometheusServer,
    RedisServer,
    free_port,
    spawn_telltale,
    stop_process,
    wait_port,
)
from tests.worst_case import worst_case_events

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
INGEST = "limits-ingest-token"
EVENT_SAMPLES_BOUND = 36_512  # docs/metrics.md, "Series budget": the event metrics' worst case
OTHER_SAMPLES_BOUND = 2_000  # health, HTTP, process and span metrics of a service with a few routes
EXPORTER_ORGANIZATION_ROWS = 500  # exporter/queries.yml reads at most 500 organizations per query
SHIPPED = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())


def shipped_timeout(job: str) -> float:
    scrape = next(j for j in SHIPPED["scrape_configs"] if j["job_name"] == job)
    return float(str(scrape.get("scrape_timeout", SHIPPED["global"]["scrape_timeout"])).rstrip("s"))


ORGANIZATION_ROWS = """
insert into organizations (name, slug) select 'org-' || g, 'org-' || g from generate_series(1, 1000) g;
insert into servers (organization_id, name) select id, 'web-' || id from organizations;
insert into applications (organization_id, name) select id, 'app-' || id from organizations;
insert into licenses (organization_id, license_key, expires_at)
  select id, 'key-' || id, now() + interval '90 days' from organizations;
"""


@dataclass
class Scrape:
    samples: int
    seconds_median: float
    seconds_max: float
    bytes: int


def prometheus_view(prom: PrometheusServer, job: str) -> tuple[int, float, float]:
    """Samples of the last scrape, and the median and max scrape duration over the last 25 s, in which
    every scrape must have succeeded."""

    def one(q: str) -> float:
        r = httpx.get(f"{prom.url}/api/v1/query", params={"query": q}, timeout=5).json()["data"]["result"]
        return float(r[0]["value"][1])

    assert one(f'min_over_time(up{{job="{job}"}}[25s])') == 1, f"a scrape of {job} failed"
    return (
        int(one(f'scrape_samples_scraped{{job="{job}"}}')),
        one(f'quantile_over_time(0.5, scrape_duration_seconds{{job="{job}"}}[25s])'),
        one(f'max_over_time(scrape_duration_seconds{{job="{job}"}}[25s])'),
    )


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scrape]]:
    tmp = tmp_path_factory.mktemp("limits")
    pg = PostgresServer().init().start()
    redis = RedisServer().start()
    procs: list[subprocess.Popen] = []
    prom: PrometheusServer | None = None
    try:
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):
            pg.psql_file(sql)
        pg.psql(ORGANIZATION_ROWS)
        service, exporter = free_port(), free_port()
        env = {"TELLTALE_DATABASE_URL": pg.dsn, "TELLTALE_REDIS_URL": redis.url}
        service_env = {**env, "TELLTALE_INGEST_TOKEN": INGEST}
        procs.append(spawn_telltale(["serve", "--port", str(service)], service_env, tmp / "service.log"))
        procs.append(spawn_telltale(["exporter", "--port", str(exporter)], env, tmp / "exporter.log"))
        wait_port(service, 30)
        wait_port(exporter, 30)
        events = list(worst_case_events())
        with httpx.Client(base_url=f"http://127.0.0.1:{service}", timeout=30) as c:
            for start in range(0, len(events), 1000):
                r = c.post(
                    "/api/v1/events",
                    json={"events": events[start : start + 1000]},
                    headers={"Authorization": f"Bearer {INGEST}"},
                )
                assert r.status_code == 202, r.text
            for path in ("/health", "/health/ready", "/health/live", "/openapi.json", "/nope"):
                for _ in range(20):
                    c.get(path)
        cfg = {
            "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "5s"},
            "scrape_configs": [
                {"job_name": "telltale", "static_configs": [{"targets": [f"127.0.0.1:{service}"]}]},
                {"job_name": "telltale-exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter}"]}]},
            ],
        }
        prom = PrometheusServer(yaml.safe_dump(cfg)).start()
        time.sleep(27)  # five scrapes of each
        out: dict[str, Scrape] = {}
        for job, port in (("telltale", service), ("telltale-exporter", exporter)):
            samples, median, worst = prometheus_view(prom, job)
            size = len(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).content)
            out[job] = Scrape(samples, median, worst, size)
        # the same scrape timed from a client, five times, as a cross-check of Prometheus' figure
        for job, port in (("telltale", service), ("telltale-exporter", exporter)):
            took = []
            for _ in range(5):
                started = time.perf_counter()
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
                took.append(time.perf_counter() - started)
            print(f"\n{job}: client-timed scrape median {statistics.median(took) * 1000:.0f} ms")
        yield out
    finally:
        if prom is not None:
            prom.destroy()
        for proc in procs:
            stop_process(proc)
        pg.destroy()
        redis.destroy()


def test_the_service_scrape_stays_within_its_series_bound_and_timeout(measured: dict[str, Scrape]) -> None:
    s = measured["telltale"]
    print(
        f"\nservice: {s.samples} samples per scrape, scrape {s.seconds_median * 1000:.0f} ms median,"
        f" {s.seconds_max * 1000:.0f} ms max (Prometheus), {s.bytes / 1024:.0f} KiB"
    )
    assert s.samples > 1000 * 10, "the flood did not reach the service's event metrics"
    assert s.samples <= EVENT_SAMPLES_BOUND + OTHER_SAMPLES_BOUND
    assert s.seconds_max < shipped_timeout("telltale")


def test_the_exporter_scrape_is_bounded_by_its_queries_and_timeout(measured: dict[str, Scrape]) -> None:
    s = measured["telltale-exporter"]
    print(
        f"\nexporter: {s.samples} samples per scrape, scrape {s.seconds_median * 1000:.0f} ms median,"
        f" {s.seconds_max * 1000:.0f} ms max (Prometheus), {s.bytes / 1024:.0f} KiB"
    )
    # 1,000 organizations in the database, at most 500 read by each per-organization query (4 series each)
    assert 4 * EXPORTER_ORGANIZATION_ROWS <= s.samples <= 4 * EXPORTER_ORGANIZATION_ROWS + 1500
    assert s.seconds_max < shipped_timeout("telltale-exporter")
