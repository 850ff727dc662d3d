"""The terraform and docker checks.

Terraform: every test runs a FAKE `terraform` — a shell script written to tmp_path that prints what
`terraform version -json` prints — because a real Terraform binary cannot be relied on here (and must
not reach the network for its update check). The script appends a line to a file per invocation, so
the tests can count real runs.

Docker: against the `podman system service` fixture (the Docker Engine API on a unix socket). Podman
here has no network, no images and cannot start containers, so no container can run a health check
and none can become `unhealthy`: with podman the tests cover the healthy engine and the
`health=unhealthy` filter query (a created container that carries a health check is listed by the
engine but not by the filter). The unhealthy-container path runs against a stub Engine API on a unix
socket that answers like Docker does.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from telltale.checks.base import Status
from telltale.checks.docker import DockerCheck
from telltale.checks.registry import build_checks
from telltale.checks.runner import CheckRunner
from telltale.checks.terraform import TerraformCheck
from telltale.config.settings import load_settings

from tests.servers import PodmanService
from tests.stub_http import Request, StubHttp, reply

VERSION_JSON = {
    "terraform_version": "1.9.8",
    "platform": "linux_amd64",
    "provider_selections": {},
    "terraform_outdated": True,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("TELLTALE_"):
            monkeypatch.delenv(key)


def fake_terraform(directory: Path, body: str | None = None, name: str = "terraform") -> tuple[Path, Path]:
    """Write a fake terraform; returns (script, file with one line per run)."""
    runs = directory / f"{name}.runs"
    if body is None:
        body = (
            '[ "$1" = version ] && [ "$2" = -json ] || { echo "unexpected args: $*" >&2; exit 64; }\n'
            '[ "$CHECKPOINT_DISABLE" = 1 ] || { echo "update check not disabled" >&2; exit 65; }\n'
            f"cat <<'EOF'\n{json.dumps(VERSION_JSON, indent=2)}\nEOF\n"
        )
    script = directory / name
    script.write_text(f'#!/bin/sh\necho "$$" >> "{runs}"\n{body}')
    script.chmod(0o755)
    return script, runs


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# terraform ------------------------------------------------------------------------------------------


async def test_terraform_version_is_reported(tmp_path: Path) -> None:
    script, count = fake_terraform(tmp_path)
    runner = CheckRunner([TerraformCheck("terraform", str(script), timeout=2.0)])

    result = (await runner.run()).results["terraform"]

    assert result.status is Status.HEALTHY, result
    assert result.message == "terraform 1.9.8"
    assert result.observed == {"binary": str(script), "version": "1.9.8", "outdated": True, "platform": "linux_amd64"}
    assert runs(count) == 1


async def test_terraform_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, count = fake_terraform(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    obs = await TerraformCheck("terraform", "terraform", timeout=2.0).probe()

    assert obs.status is Status.HEALTHY
    assert obs.observed["version"] == "1.9.8"
    assert runs(count) == 1  # our fake ran, not some other terraform on PATH


async def test_terraform_result_is_cached_not_run_per_probe(tmp_path: Path) -> None:
    script, count = fake_terraform(tmp_path)
    check = TerraformCheck("terraform", str(script), cache_seconds=0.5, timeout=2.0)
    runner = CheckRunner([check], cache_ttl=0)  # the runner caches nothing: the check must

    for _ in range(5):
        result = (await runner.run()).results["terraform"]
        assert result.status is Status.HEALTHY
    assert runs(count) == 1

    await asyncio.sleep(0.55)
    assert (await runner.run()).results["terraform"].message == "terraform 1.9.8"
    assert runs(count) == 2


@pytest.mark.parametrize("binary", ["/nonexistent/bin/terraform", "telltale-no-such-terraform"])
async def test_missing_terraform_is_unhealthy(binary: str) -> None:
    result = (await CheckRunner([TerraformCheck("terraform", binary)]).run()).results["terraform"]
    assert result.status is Status.UNHEALTHY
    assert result.message == f"terraform binary not found: {binary}"
    assert result.observed == {"binary": binary}


async def test_terraform_file_that_is_not_executable_is_unhealthy(tmp_path: Path) -> None:
    script, count = fake_terraform(tmp_path)
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.access(script, os.X_OK):  # root may execute anything with any x bit; none is set here
        pytest.skip("running with CAP_DAC_OVERRIDE and an x bit")
    obs = await TerraformCheck("terraform", str(script)).probe()
    assert obs.status is Status.UNHEALTHY
    assert "not found" in obs.message
    assert runs(count) == 0


async def test_terraform_directory_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    directory = tmp_path / "terraform"
    directory.mkdir()  # os.access(X_OK) is true for a directory; exec fails with PermissionError
    obs = await TerraformCheck("terraform", str(directory)).probe()
    assert obs.status is Status.UNHEALTHY
    assert "Permission denied" in obs.message


async def test_failing_terraform_is_unhealthy_with_its_stderr_redacted(tmp_path: Path) -> None:
    script, _ = fake_terraform(tmp_path, 'echo "Error: credentials token=tf-s3cret rejected" >&2\nexit 1\n')
    runner = CheckRunner([TerraformCheck("terraform", str(script), timeout=2.0)])

    result = (await runner.run()).results["terraform"]

    assert result.status is Status.UNHEALTHY
    assert result.message == "terraform version exited 1: Error: credentials token=*** rejected"
    assert "tf-s3cret" not in json.dumps(result.to_dict(time.time()))


@pytest.mark.parametrize("output", ["Terraform v1.9.8 on linux_amd64", '["1.9.8"]'])
async def test_terraform_output_that_is_not_a_json_object_is_unhealthy(tmp_path: Path, output: str) -> None:
    script, _ = fake_terraform(tmp_path, f"echo '{output}'\n")
    obs = await TerraformCheck("terraform", str(script), timeout=2.0).probe()
    assert obs.status is Status.UNHEALTHY
    assert obs.message.startswith("terraform version -json did not print")


async def test_failure_is_cached_too_so_a_broken_binary_is_not_run_per_probe(tmp_path: Path) -> None:
    script, count = fake_terraform(tmp_path, "exit 3\n")
    runner = CheckRunner([TerraformCheck("terraform", str(script), timeout=2.0)], cache_ttl=0)
    for _ in range(3):
        assert (await runner.run()).results["terraform"].status is Status.UNHEALTHY
    assert runs(count) == 1


async def test_hung_terraform_is_a_timeout_and_the_process_is_killed(tmp_path: Path) -> None:
    script, count = fake_terraform(tmp_path, "exec sleep 30\n")  # exec: the pid we record is the sleeper
    # The runner's deadline cuts the probe short (not the check's own 5 s subprocess timeout).
    runner = CheckRunner([TerraformCheck("terraform", str(script), timeout=5.0)], deadline=0.4)

    started = time.perf_counter()
    result = (await runner.run()).results["terraform"]

    assert time.perf_counter() - started < 0.7
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.4s"
    pid = int(count.read_text().split()[0])
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.02)
    else:
        os.kill(pid, 9)
        pytest.fail("terraform was left running after the probe timed out")
    # and a timeout is not cached: the next probe tries again
    await runner.run(fresh=True)
    assert runs(count) == 2


async def test_build_checks_wires_terraform_only_when_a_binary_is_configured(tmp_path: Path, clean_env: None) -> None:
    assert "terraform" not in {c.name for c in build_checks(load_settings())}
    script, _ = fake_terraform(tmp_path)
    checks = {c.name: c for c in build_checks(load_settings(terraform_binary=str(script), terraform_cache_seconds=600))}
    check = checks["terraform"]
    assert isinstance(check, TerraformCheck)
    assert (check.binary, check.cache_seconds) == (str(script), 600)
    assert (await check.probe()).status is Status.HEALTHY


# docker ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def health_checked_container(podman: PodmanService) -> Iterator[str]:
    """A created (never started) container that carries a health check, from an empty imported image."""
    # Our own tag: other test modules import `telltale-test:latest`, and removing theirs would break them.
    suffix = uuid.uuid4().hex[:8]
    image, name = f"telltale-test-checks-{suffix}:latest", f"telltale-health-{suffix}"
    subprocess.run(
        f"tar cf - --files-from /dev/null | podman import - {image}",
        shell=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["podman", "create", "--name", name, "--health-cmd", "false", "--health-retries", "1", image, "/bin/false"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield name
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60)
    subprocess.run(["podman", "rmi", image], capture_output=True, timeout=60)


async def test_docker_engine_via_podman_is_healthy(podman: PodmanService) -> None:
    runner = CheckRunner([DockerCheck("docker", podman.socket_path, timeout=5.0)], deadline=5.0)
    try:
        result = (await runner.run()).results["docker"]
    finally:
        await runner.close()

    assert result.status is Status.HEALTHY, result
    version = result.observed["version"]
    assert version and result.message == f"engine {version}"
    assert str(result.observed["api_version"]).startswith("1.")
    assert result.observed["unhealthy_containers"] == []


async def test_docker_unhealthy_filter_query_against_podman(
    podman: PodmanService, health_checked_container: str
) -> None:
    """Podman cannot run containers here, so none becomes unhealthy: check the filter is applied."""
    async with httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=podman.socket_path), base_url="http://docker", timeout=10
    ) as api:
        everything = (await api.get("/containers/json", params={"all": "true"})).json()
    assert health_checked_container in [n.lstrip("/") for c in everything for n in c["Names"]]

    check = DockerCheck("docker", podman.socket_path, timeout=5.0)
    try:
        obs = await check.probe()
    finally:
        await check.close()
    assert obs.status is Status.HEALTHY
    assert health_checked_container not in obs.observed["unhealthy_containers"]


@pytest.fixture
async def stub_engine(tmp_path: Path):
    """An Engine API stub on a unix socket that reports one unhealthy container."""

    async def containers(request: Request) -> tuple[int, object]:
        filters = json.loads(request.query["filters"][0])
        assert filters == {"health": ["unhealthy"]} and request.query["all"] == ["true"]
        return 200, [{"Id": "abc", "Names": ["/web-1"], "State": "running", "Status": "Up 3 hours (unhealthy)"}]

    socket = str(tmp_path / "docker.sock")
    stub = await StubHttp(
        {
            "/_ping": reply(200, b"OK"),
            "/version": reply(200, {"Version": "27.3.1", "ApiVersion": "1.47"}),
            "/containers/json": containers,
        }
    ).start(unix_path=socket)
    yield stub, socket
    await stub.stop()


async def test_unhealthy_containers_degrade_the_docker_check(stub_engine) -> None:
    stub, socket = stub_engine
    check = DockerCheck("docker", socket)
    try:
        obs = await check.probe()
    finally:
        await check.close()
    assert obs.status is Status.DEGRADED
    assert obs.message == "unhealthy containers: web-1"
    assert obs.observed == {"version": "27.3.1", "api_version": "1.47", "unhealthy_containers": ["web-1"]}
    assert [r.path for r in stub.requests] == ["/_ping", "/version", "/containers/json"]


async def test_engine_api_error_is_unhealthy_not_a_bogus_container_list(tmp_path: Path) -> None:
    socket = str(tmp_path / "docker.sock")
    stub = await StubHttp(
        {
            "/_ping": reply(200, b"OK"),
            "/version": reply(200, {"Version": "27.3.1"}),
            "/containers/json": reply(500, {"message": "invalid filter 'health'"}),
        }
    ).start(unix_path=socket)
    runner = CheckRunner([DockerCheck("docker", socket)])
    try:
        result = (await runner.run()).results["docker"]
    finally:
        await runner.close()
        await stub.stop()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("docker check failed: ")
    assert result.error and "500" in result.error


async def test_missing_docker_socket_is_unhealthy(tmp_path: Path) -> None:
    socket = str(tmp_path / "nope" / "docker.sock")
    runner = CheckRunner([DockerCheck("docker", socket)])
    try:
        result = (await runner.run()).results["docker"]
    finally:
        await runner.close()
    assert result.status is Status.UNHEALTHY
    assert result.message == f"docker socket {socket} not found"


async def test_a_socket_nobody_listens_on_is_unhealthy(tmp_path: Path) -> None:
    import socket as sockets

    path = str(tmp_path / "dead.sock")
    sock = sockets.socket(sockets.AF_UNIX)
    sock.bind(path)
    sock.close()  # the file stays, nothing accepts
    runner = CheckRunner([DockerCheck("docker", path)])
    try:
        result = (await runner.run()).results["docker"]
    finally:
        await runner.close()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("docker check failed: ")
    assert result.error and result.error.startswith("ConnectError")


async def test_hung_engine_is_a_timeout(tmp_path: Path) -> None:
    from tests.stub_http import hang

    socket = str(tmp_path / "docker.sock")
    stub = await StubHttp({"/_ping": hang}).start(unix_path=socket)
    runner = CheckRunner([DockerCheck("docker", socket, timeout=0.3)])
    try:
        result = (await runner.run()).results["docker"]
    finally:
        await runner.close()
        await stub.stop()
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"
    assert result.latency_seconds < 0.5


async def test_build_checks_wires_docker_only_when_a_socket_is_configured(
    podman: PodmanService, clean_env: None
) -> None:
    assert "docker" not in {c.name for c in build_checks(load_settings())}
    checks = {
        c.name: c for c in build_checks(load_settings(docker_socket=podman.socket_path, check_timeouts={"docker": 3}))
    }
    check = checks["docker"]
    try:
        assert isinstance(check, DockerCheck)
        assert (check.socket_path, check.timeout) == (podman.socket_path, 3)
        assert (await check.probe()).status is Status.HEALTHY
    finally:
        await check.close()
