"""The whole monitoring stack on one machine from Debian's packages, no Docker: the platform's PostgreSQL
(demo schema and rows) and Redis, Telltale's service and exporter, one or two Prometheus replicas,
Alertmanager, node-exporter, blackbox-exporter and VictoriaMetrics as the long-term store, on loopback ports
in one temporary directory. `make stack` runs it for a person; the end-to-end tests run it for themselves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scripts.stack import processes
from scripts.stack.processes import Server
from scripts.stack.render import (
    REPLICAS,
    ROOT,
    Ports,
    Timing,
    render_alertmanager,
    render_blackbox,
    render_prometheus,
    render_rules,
)
from tests.servers import AlertmanagerServer, PostgresServer, RedisServer
from tests.sinks import Sink, SmtpSink

DEMO_JOBS = 12


class Stack:
    """Start with `start()` (or `with Stack() as s:`), stop with `close()`, which also removes the directory.

    `replicas=2` adds the second Prometheus of the HA pair; `extra_rules` adds rule files (name -> text) to
    both; `service_env`/`exporter_env` add or override TELLTALE_ settings of the service and the exporter.
    Slack and PagerDuty notifications land in `sink`, emails in `smtp`.
    """

    def __init__(
        self,
        ports: Ports | None = None,
        *,
        replicas: int = 1,
        timing: Timing = Timing(),
        extra_rules: dict[str, str] | None = None,
        service_env: dict[str, str] | None = None,
        exporter_env: dict[str, str] | None = None,
    ) -> None:
        if replicas not in (1, 2):
            raise ValueError("replicas: 1, or 2 for the HA pair")
        self.ports = ports or Ports.free()
        self.replicas = replicas
        self.timing = timing
        self.extra_rules = extra_rules or {}
        self.service_env = service_env or {}
        self.exporter_env = exporter_env or {}
        self.token = secrets.token_urlsafe(12)
        self.workdir = Path(tempfile.mkdtemp(prefix="telltale-stack-"))
        os.chmod(self.workdir, 0o711)  # PostgreSQL runs as `postgres` in a subdirectory
        self._started: list[Any] = []  # what close() stops
        self.prometheus: list[Server] = []

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        p, w = self.ports, self.workdir
        _check_free(p, self.replicas)
        self.sink = self._keep(Sink())
        self.smtp = self._keep(SmtpSink())
        (w / "postgres").mkdir()
        self.pg = self._keep(PostgresServer(port=p.postgres, root=w / "postgres").init().start())
        for sql in sorted((ROOT / "deploy" / "sql").glob("*.sql")):  # the demo platform's schema and rows
            self.pg.psql_file(sql)
        (w / "redis").mkdir()
        self.redis = self._keep(RedisServer(port=p.redis, root=w / "redis").start())
        self.redis.cli("rpush", "queues:default", *[f'{{"job":"demo","n":{i}}}' for i in range(DEMO_JOBS)])
        self.beat()

        self.victoriametrics = self._server(
            processes.victoriametrics(
                p.victoriametrics, w / "victoriametrics", self.timing.dedup, self.timing.latency_offset
            )
        )
        am_config = render_alertmanager(w / "alertmanager", p, self.sink.url, self.smtp.port, self.timing)
        self.alertmanager = self._keep(
            AlertmanagerServer(am_config, port=p.alertmanager, root=w / "alertmanager").start()
        )
        self.node_exporter = self._server(processes.node_exporter(p.node_exporter, w / "node-exporter"))
        self.blackbox = self._server(processes.blackbox_exporter(p.blackbox, w / "blackbox", render_blackbox()))

        common = {
            "TELLTALE_DATABASE_URL": self.pg.dsn,
            "TELLTALE_REDIS_URL": self.redis.url,
            "TELLTALE_QUEUES": '[{"name": "default"}]',
        }
        self.service = self._server(
            processes.telltale(
                "serve",
                p.telltale,
                w / "telltale",
                {
                    **common,
                    "TELLTALE_SCHEDULER_HEARTBEAT_KEY": "schedule:heartbeat",
                    "TELLTALE_SCHEDULER_MAX_AGE_SECONDS": "3600",
                    "TELLTALE_HEALTH_TOKEN": self.token,
                    "TELLTALE_INGEST_TOKEN": self.token,
                    "TELLTALE_ALERTMANAGER_URL": self.alertmanager.url,
                    "TELLTALE_ENVIRONMENT": "stack",
                    **self.service_env,
                },
            )
        )
        exporter_env = dict(common)
        if self.timing.exporter_collector_timeout:
            exporter_env["TELLTALE_EXPORTER_COLLECTOR_TIMEOUT_SECONDS"] = self.timing.exporter_collector_timeout
        self.exporter = self._server(
            processes.telltale("exporter", p.exporter, w / "telltale-exporter", {**exporter_env, **self.exporter_env})
        )

        config = render_prometheus(p, self.replicas, self.timing)
        rules = render_rules(self.timing, self.extra_rules)
        self.prometheus = [
            self._server(
                processes.prometheus(name, port, w / f"prometheus-{name}", config, rules, self.timing.resend_delay)
            )
            for name, port in zip(REPLICAS[: self.replicas], p.prometheus, strict=False)
        ]

    def _keep(self, thing: Any) -> Any:
        self._started.append(thing)
        return thing

    def _server(self, server: Server) -> Server:
        self._started.append(server)
        return server.start()

    def close(self) -> None:
        """Stop everything and remove the directory. Prometheus first, while the long-term store still takes
        its last remote-write batch (otherwise it waits for it until killed); then the other servers, all
        asked at once, since each takes a moment to shut down."""
        servers = [s for s in self._started if isinstance(s, Server)]
        for stage in ([s for s in servers if s in self.prometheus], [s for s in servers if s not in self.prometheus]):
            for server in stage:
                server.terminate()
            for server in stage:
                server.stop()
        for thing in reversed(self._started):
            with contextlib.suppress(Exception):
                if isinstance(thing, Sink | SmtpSink):
                    thing.close()
                elif not isinstance(thing, Server):
                    thing.destroy()
        self._started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- what a person or a test needs -----------------------------------------------------------
    @property
    def service_url(self) -> str:
        return self.service.url

    def urls(self) -> dict[str, str]:
        out = {
            "telltale": self.service.url,
            "telltale-exporter": f"{self.exporter.url}/metrics",
            **{f"prometheus {p.name.split()[-1]}": p.url for p in self.prometheus},
            "alertmanager": self.alertmanager.url,
            "node-exporter": f"{self.node_exporter.url}/metrics",
            "blackbox-exporter": self.blackbox.url,
            "victoriametrics": f"{self.victoriametrics.url}/vmui",
            "postgres": self.pg.dsn,
            "redis": self.redis.url,
        }
        return out

    def beat(self) -> None:
        """The scheduler heartbeat the platform's scheduler (not part of the stack) would write."""
        self.redis.cli("set", "schedule:heartbeat", str(int(time.time())))

    def dead(self) -> list[str]:
        """Names of the stack's processes that have exited."""
        return [s.name for s in self._started if isinstance(s, Server) and not s.alive()]

    def query(self, promql: str, replica: int = 0) -> list[dict]:
        """An instant query on a Prometheus replica."""
        return _query(self.prometheus[replica].url, promql)

    def longterm_query(self, promql: str) -> list[dict]:
        """An instant query on the long-term store (VictoriaMetrics answers Prometheus' API)."""
        return _query(self.victoriametrics.url, promql)

    def traffic(self, rounds: int = 20) -> None:
        """Requests on the service's endpoints and a few benign business events, so that request rates,
        latency histograms and the per-organization counters have something to aggregate."""
        auth = {"Authorization": f"Bearer {self.token}"}
        events = [
            {"type": "deployment.completed", "organization": "acme", "provider": "aws", "duration_seconds": 42.0},
            {
                "type": "payment.succeeded",
                "organization": "acme",
                "provider": "stripe",
                "currency": "EUR",
                "amount": 9.5,
            },
            {"type": "license.validated", "organization": "globex", "result": "valid", "latency_seconds": 0.02},
            {"type": "websocket.connections", "connections": 3},
            {"type": "login.failed", "organization": "acme"},
            {"type": "rate_limit.hit", "organization": "acme"},
        ]
        with httpx.Client(base_url=self.service.url, timeout=10) as c:
            for _ in range(rounds):
                c.get("/health/live")
                c.get("/health/ready")
                c.get("/health/detailed", headers=auth)
                c.get("/no-such-page")
            r = c.post("/api/v1/events", headers=auth, json={"events": events})
            r.raise_for_status()

    def notifications(self) -> Iterator[str]:
        """One line per notification the local Slack/PagerDuty/email sinks have received, oldest first."""
        with self.sink.lock:
            received = list(self.sink.received)
        for path, body in received:
            if path == "/slack":
                titles = [a.get("title", "") for a in body.get("attachments", [])]
                yield f"slack {body.get('channel', '?')}: {' / '.join(titles)}"
            else:
                yield f"pagerduty {body.get('event_action', '?')}: {body.get('payload', {}).get('summary', '')}"
        for rcpts, message in self.smtp.received():
            yield f"email {', '.join(rcpts)}: {message['Subject']}"


def _check_free(ports: Ports, replicas: int) -> None:
    """Fail before starting anything when a port is taken: a server of someone else's answering on it would
    pass for ours."""
    wanted = {name: getattr(ports, name) for name in ports.__dataclass_fields__ if name != "prometheus"}
    wanted |= {f"prometheus {r}": port for r, port in zip(REPLICAS, ports.prometheus[:replicas], strict=False)}
    taken = []
    for name, port in wanted.items():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"{name} {port}")
    if taken:
        raise RuntimeError(f"ports in use: {', '.join(taken)} (make stack STACK_ARGS=--free-ports picks free ones)")


def _query(base: str, promql: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]
