"""HTTP dependency, WebSocket and TLS-expiry checks against local servers the tests start."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme
from telltale.checks.base import Status
from telltale.checks.http import HttpCheck
from telltale.checks.registry import build_checks
from telltale.checks.runner import CheckRunner
from telltale.checks.tls import TlsCheck
from telltale.checks.websocket import WebSocketCheck
from telltale.config.settings import TlsHost, load_settings
from websockets.asyncio.server import serve
from websockets.http11 import Response

from tests.servers import free_port
from tests.stub_http import StubHttp, hang, reply


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("TELLTALE_"):
            monkeypatch.delenv(key)


async def run_one(check, **runner_kw):
    runner = CheckRunner([check], **runner_kw)
    try:
        return (await runner.run()).results[check.name]
    finally:
        await runner.close()


def leak_free(result, *secrets: str) -> bool:
    text = json.dumps(result.to_dict(time.time())) + repr(result)
    return not any(s in text for s in secrets)


# HTTP dependencies ----------------------------------------------------------------------------------


@pytest.fixture
async def api() -> AsyncIterator[StubHttp]:
    stub = await StubHttp(
        {
            "/ok": reply(200, {"status": "ok"}),
            "/no-content": reply(204),
            "/slow": reply(200, {"status": "ok"}, delay=0.25),
            "/500": reply(500, {"error": "boom"}),
            "/hang": hang,
        }
    ).start()
    yield stub
    await stub.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as c:
        yield c


async def test_http_dependency_with_expected_status_is_healthy(api: StubHttp, client) -> None:
    result = await run_one(HttpCheck("payments", f"{api.base_url}/ok", client))

    assert result.status is Status.HEALTHY
    assert result.message.startswith("HTTP 200 in ")
    assert result.observed["status_code"] == 200
    assert 0 < result.observed["response_seconds"] < 0.2
    assert result.component == "http"
    assert [(r.method, r.path) for r in api.requests] == [("GET", "/ok")]


async def test_http_head_and_custom_expected_status(api: StubHttp, client) -> None:
    check = HttpCheck("cdn", f"{api.base_url}/500", client, method="HEAD", expected_status=[500])
    result = await run_one(check)
    assert result.status is Status.HEALTHY
    assert api.requests[0].method == "HEAD"


async def test_http_default_expected_status_includes_204(api: StubHttp, client) -> None:
    assert (await run_one(HttpCheck("hook", f"{api.base_url}/no-content", client))).status is Status.HEALTHY


async def test_http_wrong_status_is_unhealthy(api: StubHttp, client) -> None:
    result = await run_one(HttpCheck("payments", f"{api.base_url}/500", client))
    assert result.status is Status.UNHEALTHY
    assert result.message == "HTTP 500 (expected 200, 204)"
    assert result.observed["status_code"] == 500


async def test_http_not_found_is_unhealthy_and_redirects_are_not_followed(api: StubHttp, client) -> None:
    api.routes["/moved"] = reply(302)
    result = await run_one(HttpCheck("payments", f"{api.base_url}/moved", client))
    assert result.status is Status.UNHEALTHY
    assert result.observed["status_code"] == 302


async def test_http_slow_dependency_is_degraded(api: StubHttp, client) -> None:
    result = await run_one(HttpCheck("payments", f"{api.base_url}/slow", client, degraded_seconds=0.1, timeout=2))
    assert result.status is Status.DEGRADED
    assert result.observed["status_code"] == 200
    assert result.observed["response_seconds"] >= 0.25


async def test_http_hanging_dependency_is_unhealthy_within_its_timeout(api: StubHttp, client) -> None:
    started = time.perf_counter()
    result = await run_one(HttpCheck("payments", f"{api.base_url}/hang", client, timeout=0.3))
    assert time.perf_counter() - started < 0.5
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"


async def test_http_hanging_dependency_is_cut_by_the_runner_deadline(api: StubHttp, client) -> None:
    result = await run_one(HttpCheck("payments", f"{api.base_url}/hang", client, timeout=5), deadline=0.3)
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"
    assert result.latency_seconds < 0.5


async def test_http_refused_connection_is_unhealthy_without_leaking_credentials(client) -> None:
    url = f"http://deploy:hunter2-secret@127.0.0.1:{free_port()}/status?api_key=k3y-secret"
    result = await run_one(HttpCheck("payments", url, client))
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("http check failed: ")
    assert result.error and result.error.startswith("ConnectError")
    assert leak_free(result, "hunter2-secret", "k3y-secret")


async def test_http_wrong_status_with_credentials_in_the_url_leaks_nothing(api: StubHttp, client) -> None:
    url = f"http://deploy:hunter2-secret@127.0.0.1:{api.port}/500?token=t0k3n-secret"
    result = await run_one(HttpCheck("payments", url, client))
    assert result.status is Status.UNHEALTHY
    assert leak_free(result, "hunter2-secret", "t0k3n-secret")
    assert api.requests[0].headers["authorization"].startswith("Basic ")


async def test_build_checks_wires_one_check_per_http_dependency(api: StubHttp, clean_env: None) -> None:
    assert not any(isinstance(c, HttpCheck) for c in build_checks(load_settings()))
    settings = load_settings(
        http_dependencies=[
            {"name": "stripe", "url": f"{api.base_url}/ok", "critical": True, "timeout_seconds": 0.5},
            {"name": "s3", "url": f"{api.base_url}/500", "method": "HEAD", "expected_status": [500]},
        ]
    )
    checks = [c for c in build_checks(settings) if isinstance(c, HttpCheck)]
    runner = CheckRunner(checks)
    try:
        assert [(c.name, c.critical, c.timeout, c.method) for c in checks] == [
            ("stripe", True, 0.5, "GET"),
            ("s3", False, 1.0, "HEAD"),
        ]
        report = await runner.run()
    finally:
        await runner.close()
    assert {n: r.status for n, r in report.results.items()} == {"stripe": Status.HEALTHY, "s3": Status.HEALTHY}


# WebSocket ------------------------------------------------------------------------------------------


@pytest.fixture
async def ws_server() -> AsyncIterator[dict]:
    """A websockets server; `delay` slows its handshake, `seen` records request paths."""
    state: dict = {"delay": 0.0, "seen": []}

    async def process_request(connection, request) -> Response | None:
        state["seen"].append(request.path)
        if state["delay"]:
            await asyncio.sleep(state["delay"])
        return None

    async def handler(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        state["port"] = server.sockets[0].getsockname()[1]
        yield state


async def test_websocket_handshake_is_healthy(ws_server: dict) -> None:
    url = f"ws://127.0.0.1:{ws_server['port']}/app/reverb-key?protocol=7"
    result = await run_one(WebSocketCheck("websocket", url))
    assert result.status is Status.HEALTHY
    assert result.message.startswith("handshake in ")
    assert 0 < result.observed["handshake_seconds"] < 0.5
    assert result.observed["subprotocol"] is None
    assert ws_server["seen"] == ["/app/reverb-key?protocol=7"]


async def test_slow_websocket_handshake_is_degraded(ws_server: dict) -> None:
    ws_server["delay"] = 0.25
    check = WebSocketCheck("websocket", f"ws://127.0.0.1:{ws_server['port']}/", degraded_seconds=0.1, timeout=2)
    result = await run_one(check)
    assert result.status is Status.DEGRADED
    assert result.observed["handshake_seconds"] >= 0.25


async def test_hung_websocket_handshake_is_a_timeout(ws_server: dict) -> None:
    ws_server["delay"] = 1.0  # the server's shutdown waits for it, so keep it short
    result = await run_one(WebSocketCheck("websocket", f"ws://127.0.0.1:{ws_server['port']}/", timeout=0.3))
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"
    assert result.latency_seconds < 0.5


async def test_websocket_closed_port_is_unhealthy() -> None:
    url = f"ws://reverb:hunter2-secret@127.0.0.1:{free_port()}/app/key"
    result = await run_one(WebSocketCheck("websocket", url))
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("websocket check failed: ")
    assert result.error and "Connect call failed" in result.error
    assert leak_free(result, "hunter2-secret")


async def test_http_server_refusing_the_upgrade_is_unhealthy() -> None:
    stub = await StubHttp({"/app/key": reply(200, b"<html>not a websocket</html>")}).start()
    try:
        result = await run_one(WebSocketCheck("websocket", f"ws://127.0.0.1:{stub.port}/app/key"))
    finally:
        await stub.stop()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("websocket check failed: ")
    assert result.error and "HTTP 200" in result.error
    assert stub.requests[0].headers["upgrade"].lower() == "websocket"


async def test_build_checks_wires_websocket_only_with_a_url(ws_server: dict, clean_env: None) -> None:
    assert "websocket" not in {c.name for c in build_checks(load_settings())}
    url = f"ws://127.0.0.1:{ws_server['port']}/app/key"
    checks = {c.name: c for c in build_checks(load_settings(websocket_url=url))}
    check = checks["websocket"]
    assert isinstance(check, WebSocketCheck)
    assert (await run_one(check)).status is Status.HEALTHY


# TLS certificate expiry -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def tls_server(ca: trustme.CA, *, days: float, identity: str = "127.0.0.1") -> asyncio.AbstractServer:
    now = dt.datetime.now(dt.UTC)
    cert = ca.issue_cert(identity, not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=days))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


def port_of(server: asyncio.AbstractServer) -> int:
    return server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(("days", "status"), [(30, Status.HEALTHY), (10, Status.DEGRADED), (1, Status.UNHEALTHY)])
async def test_tls_expiry_thresholds(ca: trustme.CA, ca_file: str, days: float, status: Status) -> None:
    server = await tls_server(ca, days=days)
    port = port_of(server)
    try:
        result = await run_one(TlsCheck("tls", [TlsHost(host="127.0.0.1", port=port)], ca_file=ca_file))
    finally:
        server.close()
    assert result.status is status
    assert result.message == f"127.0.0.1:{port} expires in {days - 0.0:.1f} days"
    observed = result.observed["hosts"][f"127.0.0.1:{port}"]
    assert observed["valid"] is True
    assert observed["days_left"] == pytest.approx(days, abs=0.01)
    assert observed["expires_at"] == pytest.approx(time.time() + days * 86400, abs=5)


async def test_tls_certificate_from_an_untrusted_ca_is_invalid(ca_file: str) -> None:
    server = await tls_server(trustme.CA(), days=30)
    port = port_of(server)
    try:
        result = await run_one(TlsCheck("tls", [TlsHost(host="127.0.0.1", port=port)], ca_file=ca_file))
    finally:
        server.close()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith(f"127.0.0.1:{port} invalid certificate: ")
    assert "unable to get local issuer certificate" in result.message
    assert result.observed["hosts"][f"127.0.0.1:{port}"] == {"valid": False}


async def test_tls_expired_and_wrong_name_certificates_are_invalid(ca: trustme.CA, ca_file: str) -> None:
    expired = await tls_server(ca, days=-1)
    wrong_name = await tls_server(ca, days=30, identity="other.example")
    hosts = [TlsHost(host="127.0.0.1", port=port_of(expired)), TlsHost(host="127.0.0.1", port=port_of(wrong_name))]
    try:
        result = await run_one(TlsCheck("tls", hosts, ca_file=ca_file))
    finally:
        expired.close()
        wrong_name.close()
    assert result.status is Status.UNHEALTHY
    first, second = result.message.split("; ")
    assert "invalid certificate: certificate has expired" in first
    assert "invalid certificate: " in second and "mismatch" in second.lower()


async def test_tls_server_name_selects_the_identity_to_verify(ca: trustme.CA, ca_file: str) -> None:
    server = await tls_server(ca, days=30, identity="app.example.test")
    port = port_of(server)
    try:
        result = await run_one(
            TlsCheck("tls", [TlsHost(host="127.0.0.1", port=port, server_name="app.example.test")], ca_file=ca_file)
        )
    finally:
        server.close()
    assert result.status is Status.HEALTHY


async def test_tls_worst_host_wins_and_each_host_is_reported(ca: trustme.CA, ca_file: str) -> None:
    good, soon = await tls_server(ca, days=60), await tls_server(ca, days=7)
    closed = free_port()
    hosts = [TlsHost(host="127.0.0.1", port=p) for p in (port_of(good), port_of(soon), closed)]
    try:
        result = await run_one(TlsCheck("tls", hosts, ca_file=ca_file))
    finally:
        good.close()
        soon.close()
    assert result.status is Status.UNHEALTHY
    observed = result.observed["hosts"]
    assert observed[f"127.0.0.1:{hosts[0].port}"]["days_left"] == pytest.approx(60, abs=0.01)
    assert observed[f"127.0.0.1:{hosts[1].port}"]["days_left"] == pytest.approx(7, abs=0.01)
    assert observed[f"127.0.0.1:{closed}"] == {"valid": False}
    assert f"127.0.0.1:{closed} TLS handshake failed" in result.message


async def test_tls_hung_server_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts TCP, never speaks TLS
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        result = await run_one(TlsCheck("tls", [TlsHost(host="127.0.0.1", port=port_of(server))], timeout=0.3))
    finally:
        server.close()
    assert result.status is Status.UNHEALTHY
    assert result.message == "timed out after 0.3s"


async def test_build_checks_wires_tls_with_the_configured_ca(ca: trustme.CA, ca_file: str, clean_env: None) -> None:
    assert "tls" not in {c.name for c in build_checks(load_settings())}
    server = await tls_server(ca, days=10)
    port = port_of(server)
    try:
        settings = load_settings(
            tls_hosts=[{"host": "127.0.0.1", "port": port}],
            tls_ca_file=ca_file,
            tls_degraded_days=5,
            tls_unhealthy_days=2,
        )
        check = {c.name: c for c in build_checks(settings)}["tls"]
        assert isinstance(check, TlsCheck)
        result = await run_one(check)
    finally:
        server.close()
    assert result.status is Status.HEALTHY  # 10 days left, degraded only under 5 here
