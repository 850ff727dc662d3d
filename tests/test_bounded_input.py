"""Bounded input: bodies limited while they stream in, deep JSON refused, every endpoint with a body
documented in OpenAPI. The 1 GiB upload runs against a real `telltale serve`."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from telltale.app.body import MAX_BODY_BYTES, BodyLimit, parse_json

from tests.apps import service
from tests.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bounded-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
ENDPOINTS = ["/api/v1/events", "/api/v1/alerts/webhook"]
MiB = 1024 * 1024


def tokens() -> dict[str, str]:
    return {"ingest_token": TOKEN, "alert_webhook_token": TOKEN, "otel_enabled": False, "access_log": False}  # type: ignore[dict-item]


# --- the limit, in process -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [b"1073741824", b"1001", b"9" * 5000, b" 2000 "])
async def test_content_length_over_the_limit_is_413_before_reading(length: bytes) -> None:
    """The middleware answers without calling receive, i.e. without reading a byte of the body."""
    reads = 0
    reached = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x", "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-length", length)]}
    await BodyLimit(app, 1000)(scope, receive, send)
    assert reads == 0 and not reached
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]


async def test_an_answer_before_the_body_was_read_closes_the_connection_only_then() -> None:
    """A 401 to a request with a body: the connection closes, so the server reads no more of it. A 401
    to a request without one, or any answer after the whole body was read, keeps the connection."""
    async with service(**tokens()) as c:
        unread = await c.post("/api/v1/events", content=b'{"events": []}', headers={"Authorization": "Bearer x"})
        empty = await c.post("/api/v1/events", headers={"Authorization": "Bearer x"})
        read = await c.post("/api/v1/events", content=b'{"events": []}', headers=AUTH)
        get = await c.get("/health/live")
    assert unread.status_code == 401 and unread.headers["connection"] == "close"
    assert empty.status_code == 401 and "connection" not in empty.headers
    assert read.status_code == 202 and "connection" not in read.headers
    assert "connection" not in get.headers


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_chunked_body_is_cut_at_the_limit(path: str) -> None:
    """No Content-Length: the body is counted as it streams; the generator is not drained past the limit."""
    produced = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(64):  # 64 MiB offered
            produced += MiB
            yield b" " * MiB

    async with service(**tokens()) as c:
        r = await c.post(path, content=chunks(), headers=AUTH)
    assert r.status_code == 413, r.text
    assert str(MAX_BODY_BYTES) in r.json()["detail"]
    assert r.headers["connection"] == "close"
    assert produced <= MAX_BODY_BYTES + 2 * MiB


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_content_length_over_the_limit_is_413_on_every_body_endpoint(path: str) -> None:
    async with service(**tokens()) as c:
        r = await c.post(path, content=b" " * (MAX_BODY_BYTES + 1), headers=AUTH)
    assert r.status_code == 413 and r.headers["connection"] == "close"


async def test_a_body_within_the_limit_is_read_whole() -> None:
    padding = b" " * (MAX_BODY_BYTES - 100)
    async with service(**tokens()) as c:
        r = await c.post("/api/v1/events", content=b'{"events": []}' + padding, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"accepted": 0}


# --- deep JSON -------------------------------------------------------------------------------------


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b'{"events": ' + nested(963) + b"}",
        b'{"events": [' + nested(5000) + b"]}",
        b'{"receiver": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}",
        nested(100_000),
        b"[" * 1_000_000,
        b'{"events": [], "extra": ' + nested(65) + b"}",
    ],
    ids=["963", "5000-in-array", "objects-3000", "100k", "open-1M", "65-in-ignored-key"],
)
async def test_deep_json_is_refused_not_a_500(path: str, body: bytes) -> None:
    async with service(**tokens()) as c:
        r = await c.post(path, content=body, headers=AUTH)
    assert r.status_code in (400, 422), (r.status_code, r.text[:200])
    assert r.json()["detail"]


def test_depth_64_parses_and_65_does_not() -> None:
    assert parse_json(nested(63)) is not None  # 63 arrays around a number: depth 63
    assert parse_json(b'{"a": ' + nested(63) + b"}") is not None  # depth 64
    with pytest.raises(Exception, match="nested deeper than 64"):
        parse_json(b'{"a": ' + nested(64) + b"}")
    assert parse_json(b'{"a": "' + b"[" * 10_000 + b'"}') == {"a": "[" * 10_000}  # brackets in a string


async def test_a_webhook_deep_in_its_extra_fields_is_refused_and_the_listing_still_works() -> None:
    """extra="allow" keeps unknown fields: a deep one would be stored and break the listing's encoder."""
    payload = (
        b'{"receiver": "r", "status": "firing", "groupKey": "g", "alerts": [{"status": "firing"}], "x": '
        + nested(900)
        + b"}"
    )
    async with service(**tokens()) as c:
        assert (await c.post("/api/v1/alerts/webhook", content=payload, headers=AUTH)).status_code == 422
        listed = await c.get("/api/v1/alerts/notifications", headers=AUTH)
    assert listed.status_code == 200 and listed.json()["total"] == 0


# --- OpenAPI ---------------------------------------------------------------------------------------


async def test_openapi_documents_bodies_and_answers() -> None:
    async with service(**tokens()) as c:
        doc = (await c.get("/openapi.json")).json()
    events = doc["paths"]["/api/v1/events"]["post"]
    schema = events["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["events"]
    kinds = {
        t
        for m in schema["properties"]["events"]["items"]["oneOf"]
        for t in m["properties"]["type"].get("enum", [m["properties"]["type"].get("const")])
    }
    assert {"deployment.failed", "payment.succeeded", "sla.violation"} <= kinds
    assert "$ref" not in str(schema)  # inlined: nothing points at a $defs the document lacks
    webhook = doc["paths"]["/api/v1/alerts/webhook"]["post"]
    hook_schema = webhook["requestBody"]["content"]["application/json"]["schema"]
    assert {"receiver", "status", "groupKey", "alerts"} <= set(hook_schema["required"])
    for op in (events, webhook):
        assert {"401", "413", "422"} <= set(op["responses"]), op["responses"].keys()
    assert "202" in events["responses"] and "200" in webhook["responses"]
    listing = doc["paths"]["/api/v1/alerts/notifications"]["get"]
    assert {"401", "422"} <= set(listing["responses"])
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "cursor", "receiver"}


# --- a real server and a 1 GiB upload --------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_", "OTEL_", "PROMETHEUS_"))}
    env.update(
        {
            "TELLTALE_INGEST_TOKEN": TOKEN,
            "TELLTALE_ALERT_WEBHOOK_TOKEN": TOKEN,
            "TELLTALE_DRAIN_SECONDS": "0",
            "TELLTALE_OTEL_ENABLED": "false",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "telltale.app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def upload(port: int, path: str, total: int, auth: bool = True) -> tuple[int, bytes]:
    """Streams up to `total` bytes as a chunked body, stopping when the server answers; returns the
    bytes sent and the start of the answer."""
    chunk = b" " * MiB
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        if auth:
            head += f"Authorization: Bearer {TOKEN}\r\n"
        s.sendall((head + "\r\n").encode())
        try:
            while sent < total:
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    break
                s.sendall(frame)
                sent += len(chunk)
            else:
                s.sendall(b"0\r\n\r\n")
            answer = s.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            try:
                answer = s.recv(4096)
            except OSError:
                pass
    return sent, answer


def test_a_1_gib_upload_neither_grows_the_server_nor_slows_liveness(
    server: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    port, pid = server
    process = psutil.Process(pid)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        for _ in range(20):  # warm: the event path's imports and caches
            c.post("/api/v1/events", headers=AUTH, json={"events": [{"type": "login.failed"}]})
            c.get("/health/live")
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()
    results: list[tuple[int, bytes]] = []

    def attack() -> None:
        # 1 GiB offered, authenticated (the body is read, then cut at the limit); then repeated, unauthenticated
        # too (401 before reading; the connection is closed so the rest is not read either), for ~2 s.
        results.append(upload(port, "/api/v1/events", 1024 * MiB))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            results.append(upload(port, ENDPOINTS[len(results) % 2], 1024 * MiB, auth=len(results) % 3 != 0))
        done.set()

    worker = threading.Thread(target=attack)
    latencies: list[float] = []
    worker.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        while not done.is_set():
            t = time.perf_counter()
            assert c.get("/health/live").status_code == 200
            latencies.append(time.perf_counter() - t)
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)
    worker.join(30)
    first_sent, first_answer = results[0]
    assert first_answer.startswith(b"HTTP/1.1 413"), first_answer[:100]
    assert first_sent < 64 * MiB  # cut near the 4 MiB limit, not read to the end
    assert all(a.startswith((b"HTTP/1.1 413", b"HTTP/1.1 401")) for _, a in results), {a[:20] for _, a in results}
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    growth = (peak - baseline) / MiB
    with capsys.disabled():
        most = max(s for s, _ in results) / MiB
        p50, worst = latencies[len(latencies) // 2], latencies[-1]
        print(
            f"\n1 GiB chunked upload x{len(results)}: at most {most:.0f} MiB sent before the answer;"
            f" RSS +{growth:.1f} MiB (baseline {baseline / MiB:.0f} MiB); /health/live n={len(latencies)}"
            f" p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms max {worst * 1000:.1f} ms"
        )
    assert growth < 12, f"RSS grew {growth:.1f} MiB"
    assert p99 < 0.25, f"/health/live p99 {p99 * 1000:.0f} ms during the upload"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        assert c.get("/health/live").status_code == 200


def test_listing_1000_large_notifications_keeps_liveness_fast(
    server: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 notifications of 48 KiB each (48 MiB held): walking the whole listing page by page while
    /health/live is probed. Each page is a concatenation of stored JSON, at most 1 MiB."""
    port, _ = server
    note = "n" * (48 * 1024)

    def fill(start: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            for i in range(start, 1000, 4):
                alert = {"status": "firing", "labels": {"alertname": "Bulk"}, "annotations": {"note": note}}
                hook = {"receiver": "bulk", "status": "firing", "groupKey": f"bulk-{i}", "alerts": [alert]}
                assert c.post("/api/v1/alerts/webhook", headers=AUTH, json=hook).status_code == 200

    fillers = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
    for f in fillers:
        f.start()
    for f in fillers:
        f.join(120)
    done = threading.Event()
    walked: list[int] = []

    def walk() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            for _ in range(2):
                cursor = None
                while True:
                    query = {"limit": "1000", "receiver": "bulk", **({"cursor": cursor} if cursor else {})}
                    r = c.get("/api/v1/alerts/notifications", headers=AUTH, params=query)
                    assert r.status_code == 200
                    page = r.json()
                    walked.append(len(page["notifications"]))
                    assert len(r.content) <= 1024 * 1024 + 4096
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
        done.set()

    worker = threading.Thread(target=walk)
    latencies: list[float] = []
    worker.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        while not done.is_set():
            t = time.perf_counter()
            assert c.get("/health/live").status_code == 200
            latencies.append(time.perf_counter() - t)
            time.sleep(0.002)
    worker.join(60)
    assert sum(walked) == 2000, sum(walked)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    with capsys.disabled():
        print(
            f"\nlisting 1,000 x 48 KiB twice in {len(walked)} pages: /health/live n={len(latencies)}"
            f" p50 {latencies[len(latencies) // 2] * 1000:.1f} ms p99 {p99 * 1000:.1f} ms"
            f" max {latencies[-1] * 1000:.1f} ms"
        )
    assert p99 < 0.25, f"/health/live p99 {p99 * 1000:.0f} ms while listing"
