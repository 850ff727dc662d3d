"""Real servers for the tests: PostgreSQL and Redis started on free loopback ports in temp dirs.

Each server can be stopped, frozen (SIGSTOP, a hung dependency) and brought back, so tests can
break a dependency without touching the machine's own services.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Wait for an HTTP readiness endpoint to answer 200: Prometheus and Alertmanager listen before
    they are ready, and answer 503 "Service Unavailable" until then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install Debian's postgresql (make test does)")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster; trust auth; user `postgres`, password-less."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-pg-")))
    proc_pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, db: str, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def init(self) -> PostgresServer:
        os.chmod(self.root, 0o777)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(
                "\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_preload_libraries = 'pg_stat_statements'\nmax_connections = 50\n"
            )
        return self

    def start(self) -> PostgresServer:
        subprocess.run(
            _as_postgres(
                [
                    pg_bin("pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.root / "log"),
                    "-w",
                    "-o",
                    f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        wait_port(self.port)
        self.proc_pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        if self.proc_pid is None:
            return
        self.resume()
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        self.proc_pid = None

    def _all_pids(self) -> list[int]:
        """The postmaster and its children: SIGSTOP on all of them is a truly hung server."""
        assert self.proc_pid is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc_pid)], capture_output=True, text=True).stdout
        return [self.proc_pid, *(int(p) for p in out.split())]

    def freeze(self) -> None:
        for pid in self._all_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc_pid is None:
            return
        for pid in self._all_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [
                pg_bin("psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def psql_file(self, path: str | Path, db: str = "postgres") -> None:
        subprocess.run(
            [
                pg_bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-f",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A throwaway redis-server that keeps nothing on disk."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-redis-")))
    proc: subprocess.Popen | None = None
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class _Process:
    """A server process with a temp dir: stop() terminates it, destroy() also removes the dir."""

    proc: subprocess.Popen | None
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self, args: list[str], timeout: float = 20.0) -> None:
        """Start the binary in the temp dir, its stderr kept in `log` there, and wait for its port."""
        with open(self.root / "log", "wb") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, cwd=self.root)
        wait_port(self.port, timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PodmanService(_Process):
    """`podman system service` on a unix socket: the Docker Engine API, for the Docker check."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-podman-")))
    proc: subprocess.Popen | None = None

    @property
    def socket_path(self) -> str:
        return str(self.root / "podman.sock")

    def start(self) -> PodmanService:
        self.proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket_path}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket_path):
            if time.monotonic() > deadline:
                raise TimeoutError("podman system service did not create its socket")
            time.sleep(0.05)
        return self


def binary(*names: str) -> str:
    """The first of `names` on PATH: Debian's name for a daemon, then upstream's."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(f"none of {names} found: `make system-deps` installs Debian's packages")


def node_exporter_args(port: int) -> list[str]:
    """prometheus-node-exporter on a loopback port, default collectors (NodeExporterServer, `make stack`)."""
    return [binary("prometheus-node-exporter", "node_exporter"), f"--web.listen-address=127.0.0.1:{port}"]


def blackbox_exporter_args(port: int, config: Path) -> list[str]:
    """prometheus-blackbox-exporter on a loopback port with the given modules (BlackboxExporterServer, `make stack`)."""
    return [
        binary("prometheus-blackbox-exporter", "blackbox_exporter"),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]


def telltale_env(env: dict[str, str]) -> dict[str, str]:
    """This environment without the caller's TELLTALE_/OTEL_ settings, plus `env`: a child `telltale` sees only
    what the test (or the stack) gives it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_"))}
    return {**clean, **env}


def spawn_telltale(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`telltale <args>` from this checkout, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "telltale.app.cli", *args],
            env=telltale_env(env),
            cwd=Path(__file__).resolve().parent.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class AlertmanagerServer(_Process):
    """Debian's real Alertmanager on a free port, with the given configuration text."""

    config: str
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-am-")))
    proc: subprocess.Popen | None = None

    def start(self) -> AlertmanagerServer:
        cfg = self.root / "alertmanager.yml"
        cfg.write_text(self.config)
        self._launch(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={cfg}",
                f"--storage.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ]
        )
        wait_ready(f"http://127.0.0.1:{self.port}/-/ready")
        return self


@dataclass
class PrometheusServer(_Process):
    """Debian's real Prometheus on a free port, with the given configuration and rule files."""

    config: str
    rules: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-prom-")))
    proc: subprocess.Popen | None = None

    def start(self) -> PrometheusServer:
        (self.root / "rules").mkdir(exist_ok=True)
        for name, text in self.rules.items():
            (self.root / "rules" / name).write_text(text)
        cfg = self.root / "prometheus.yml"
        cfg.write_text(self.config)
        self._launch(
            [
                binary("prometheus"),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            timeout=30,
        )
        wait_ready(f"http://127.0.0.1:{self.port}/-/ready")
        return self


class WebhookRecorder:
    """A local HTTP receiver that records every POST by path: the stand-in for Slack, PagerDuty and
    email endpoints, which cannot run here. Each record is (monotonic time, path, parsed JSON body)."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.records: list[tuple[float, str, object]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body: object = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with recorder._lock:
                    recorder.records.append((time.monotonic(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self, path: str | None = None) -> list[tuple[float, str, object]]:
        with self._lock:
            return [r for r in self.records if path is None or r[1] == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class NodeExporterServer(_Process):
    """Debian's real prometheus-node-exporter (1.5) on a free loopback port, default collectors."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-node-exporter-")))
    proc: subprocess.Popen | None = None

    def start(self) -> NodeExporterServer:
        self._launch(node_exporter_args(self.port))
        wait_ready(f"{self.url}/metrics")
        return self


@dataclass
class BlackboxExporterServer(_Process):
    """Debian's real prometheus-blackbox-exporter (0.23) on a free loopback port, with an http_2xx module."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telltale-blackbox-")))
    proc: subprocess.Popen | None = None

    def start(self) -> BlackboxExporterServer:
        cfg = self.root / "blackbox.yml"
        cfg.write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
        self._launch(blackbox_exporter_args(self.port, cfg))
        wait_ready(f"{self.url}/metrics")
        return self
