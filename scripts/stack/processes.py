"""The stack's own processes: Telltale's service and exporter, Prometheus replicas, VictoriaMetrics and the
node and blackbox exporters (Debian's binaries), each in its own directory with its output in `log` there.

PostgreSQL, Redis and Alertmanager come from tests/servers.py, which the tests already share, and so do the
binaries' names and the node and blackbox exporters' command lines and Telltale's clean environment: one
implementation for the stack and for the tests' NodeExporterServer/BlackboxExporterServer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import binary, blackbox_exporter_args, node_exporter_args, telltale_env


@dataclass
class Server:
    """A process listening on a loopback port; started means its `ready` path answers 200."""

    name: str
    args: list[str]
    port: int
    root: Path
    ready: str = "/"
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "log"

    def start(self, timeout: float = 60.0) -> Server:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=self.env)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {self.url}{self.ready} not ready after {timeout}s\n{self.tail()}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(self.url + self.ready, timeout=2) as r:
            return r.status == 200
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def terminate(self) -> None:
        """Ask the process to stop, without waiting (stop() waits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def telltale(command: str, port: int, root: Path, env: dict[str, str]) -> Server:
    """`telltale serve` or `telltale exporter` from this checkout, with only the given TELLTALE_ settings
    (none inherited from the caller's environment)."""
    return Server(
        name=f"telltale {command}",
        args=[sys.executable, "-m", "telltale.app.cli", command, "--host", "127.0.0.1", "--port", str(port)],
        port=port,
        root=root,
        ready="/health/live" if command == "serve" else "/metrics",
        env=telltale_env(env),
    )


def prometheus(
    replica: str, port: int, root: Path, config: str, rules: dict[str, str], resend_delay: str | None = None
) -> Server:
    """A Prometheus replica: 30 days of raw samples, exemplar storage on, `replica` from the environment."""
    (root / "rules").mkdir(parents=True, exist_ok=True)
    for name, text in rules.items():
        (root / "rules" / name).write_text(text)
    (root / "prometheus.yml").write_text(config)
    return Server(
        name=f"prometheus {replica}",
        args=[
            binary("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            "--storage.tsdb.retention.time=30d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage,expand-external-labels",
            "--log.level=warn",
            *([f"--rules.alert.resend-delay={resend_delay}"] if resend_delay else []),
        ],
        port=port,
        root=root,
        ready="/-/ready",
        env={**os.environ, "PROMETHEUS_REPLICA": replica},
    )


def victoriametrics(port: int, root: Path, dedup: str, latency_offset: str) -> Server:
    """VictoriaMetrics single-node, the long-term store: one year of what Prometheus remote-writes to it."""
    return Server(
        name="victoria-metrics",
        args=[
            binary("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={root / 'data'}",
            "-retentionPeriod=1y",
            f"-dedup.minScrapeInterval={dedup}",
            f"-search.latencyOffset={latency_offset}",
            "-loggerLevel=WARN",
        ],
        port=port,
        root=root,
        ready="/health",
    )


def node_exporter(port: int, root: Path) -> Server:
    return Server(
        name="node-exporter",
        args=node_exporter_args(port),
        port=port,
        root=root,
        ready="/metrics",
    )


def blackbox_exporter(port: int, root: Path, config: str) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    (root / "blackbox.yml").write_text(config)
    return Server(
        name="blackbox-exporter",
        args=blackbox_exporter_args(port, root / "blackbox.yml"),
        port=port,
        root=root,
        ready="/-/healthy",
    )
