"""Request metrics: exact counts and labels, cardinality bound, exclusions, /metrics format and access."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client.parser import text_string_to_metric_families
from telltale.app.main import create_app
from telltale.config.settings import Settings


def make_app(**overrides: object) -> FastAPI:
    settings = Settings(otel_enabled=False, access_log=False, disk_paths=["/"], **overrides)  # type: ignore[arg-type]
    app = create_app(settings)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/echo")
    async def echo(payload: dict[str, str]) -> dict[str, str]:
        return payload

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("handler failed")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(5):
                await asyncio.sleep(0.02)
                yield b"x" * 100

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def samples(app: FastAPI, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in app.state.telltale.registry.collect():
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(app: FastAPI, name: str, **labels: str) -> float:
    return samples(app, name).get(tuple(sorted(labels.items())), 0.0)


async def test_counts_and_labels_exact() -> None:
    app = make_app()
    async with client(app) as c:
        for i in range(3):
            assert (await c.get(f"/items/{i}")).status_code == 200
        assert (await c.get("/items/not-a-number")).status_code == 422
        assert (await c.get("/no/such/path")).status_code == 404
        assert (await c.delete("/items/1")).status_code == 405
        assert (await c.get("/boom")).status_code == 500
        assert (await c.post("/echo", json={"a": "bcd"})).status_code == 200
    req = "http_requests_total"
    assert value(app, req, method="GET", route="/items/{item_id}", status="200") == 3
    assert value(app, req, method="GET", route="/items/{item_id}", status="422") == 1
    assert value(app, req, method="GET", route="<unmatched>", status="404") == 1
    assert value(app, req, method="DELETE", route="/items/{item_id}", status="405") == 1
    assert value(app, req, method="GET", route="/boom", status="500") == 1
    assert value(app, req, method="POST", route="/echo", status="200") == 1
    assert sum(samples(app, req).values()) == 8
    assert value(app, "http_request_duration_seconds_count", method="GET", route="/items/{item_id}") == 4
    assert value(app, "http_request_size_bytes_sum", method="POST", route="/echo") == len('{"a":"bcd"}')
    assert value(app, "http_response_size_bytes_sum", method="POST", route="/echo") == len('{"a":"bcd"}')
    assert value(app, "http_requests_in_progress", method="GET") == 0
    # no _created series
    assert not [
        n for f in app.state.telltale.registry.collect() for n in [s.name for s in f.samples] if n.endswith("_created")
    ]


async def test_raised_exception_counted_as_500_and_reraised() -> None:
    app = make_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        with pytest.raises(RuntimeError, match="handler failed"):
            await c.get("/boom")
    assert value(app, "http_requests_total", method="GET", route="/boom", status="500") == 1
    assert value(app, "http_request_duration_seconds_count", method="GET", route="/boom") == 1


async def test_streaming_timed_to_last_byte_and_counted_once() -> None:
    app = make_app()
    async with client(app) as c:
        r = await c.get("/stream")
    assert r.content == b"x" * 500
    assert value(app, "http_requests_total", method="GET", route="/stream", status="200") == 1
    assert value(app, "http_request_duration_seconds_count", method="GET", route="/stream") == 1
    assert value(app, "http_request_duration_seconds_sum", method="GET", route="/stream") >= 0.09
    assert value(app, "http_response_size_bytes_sum", method="GET", route="/stream") == 500


async def test_unknown_paths_add_no_series() -> None:
    """100,000 requests to random unknown paths, straight through ASGI: one series, whatever the paths."""
    app = make_app()

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        pass

    async def once(path: str, method: str = "GET") -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        await app(scope, receive, send)

    await once("/warm-up")
    await once("/warm-up", method="FOO")  # unknown methods count as OTHER: one more bounded label value

    def series() -> int:
        return sum(len(f.samples) for f in app.state.telltale.registry.collect())

    before = series()
    import random

    rnd = random.Random(7)
    for i in range(100_000):
        await once(f"/{rnd.getrandbits(64):x}/{i}", method="GET" if i % 100 else "FOO")
    assert series() == before  # not a single new series
    assert value(app, "http_requests_total", method="GET", route="<unmatched>", status="404") == 99_000 + 1
    assert value(app, "http_requests_total", method="OTHER", route="<unmatched>", status="404") == 1_000 + 1


async def test_metrics_and_live_excluded_by_default_configurable() -> None:
    app = make_app()
    async with client(app) as c:
        await c.get("/metrics")
        await c.get("/health/live")
    assert not samples(app, "http_requests_total")
    app = make_app(metrics_exclude_paths="/items/1")
    async with client(app) as c:
        await c.get("/items/1")
        await c.get("/health/live")
    assert value(app, "http_requests_total", method="GET", route="/health/live", status="200") == 1
    assert value(app, "http_requests_total", method="GET", route="/items/{item_id}", status="200") == 0


async def test_request_id_returned_and_generated() -> None:
    app = make_app()
    async with client(app) as c:
        r = await c.get("/items/1", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        generated = (await c.get("/items/1")).headers["x-request-id"]
        assert len(generated) == 24
        bad = (await c.get("/items/1", headers={"X-Request-ID": "a b\n{inject}"})).headers["x-request-id"]
        assert bad != "a b\n{inject}" and len(bad) == 24
        # probes excluded from metrics and traces pass straight through; readiness is still measured
        assert "x-request-id" not in (await c.get("/health/live")).headers
        assert "x-request-id" in (await c.get("/health/ready")).headers


def test_generated_request_ids_unique_across_blocks_and_forks() -> None:
    """Generated ids come from blocks of random digits: no repeat across a refill, none shared with a
    forked child that was handed the parent's unused ones."""
    import os

    from telltale.app.instrumentation import middleware

    def draw(n: int) -> list[bytes]:
        pool = middleware._ID_POOL
        return [pool.pop() if pool else middleware._refill_request_ids() for _ in range(n)]

    ids = draw(3 * middleware._ID_BLOCK + 7)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and i.isalnum() and int(i, 16) >= 0 for i in ids)
    left = set(middleware._ID_POOL)
    assert left  # the parent holds unused ids of its block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids must not be the parent's unused ones
        os.close(read)
        os.write(write, b"".join(draw(5)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        child = f.read()
    os.waitpid(pid, 0)
    child_ids = {child[i : i + 24] for i in range(0, len(child), 24)}
    assert len(child_ids) == 5 and not child_ids & (left | set(ids))


async def test_metrics_token_gzip_and_formats() -> None:
    app = make_app(metrics_token="s3cret")
    async with client(app) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        r = await c.get("/metrics", headers={**auth, "Accept-Encoding": "identity"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "telltale_build_info" in r.text
        raw = await c.get("/metrics", headers={**auth, "Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert "telltale_build_info" in raw.text  # httpx decodes
        om = await c.get("/metrics", headers={**auth, "Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
    assert (
        gzip.decompress(raw.content if raw.headers.get("content-encoding") != "gzip" else gzip.compress(raw.content))
        == raw.content
    )


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


async def test_promtool_check_metrics_clean() -> None:
    app = make_app(ingest_token="ingest")
    async with client(app) as c:
        await c.get("/items/1")
        await c.get("/nope")
        await c.get("/boom")
        await c.post(
            "/api/v1/events",
            headers={"Authorization": "Bearer ingest"},
            json={
                "events": [
                    {"type": "deployment.completed", "provider": "aws", "duration_seconds": 30, "organization": "o1"},
                    {"type": "payment.succeeded", "provider": "stripe", "currency": "EUR", "amount": 9.5},
                    {"type": "quota.usage", "organization": "o1", "resource": "servers", "used": 3, "limit": 10},
                    {"type": "license.expiry", "organization": "o1", "expires_at": "2030-01-01T00:00:00Z"},
                ]
            },
        )
        await c.get("/health")
        text = (await c.get("/metrics")).text
    proc = await asyncio.to_thread(
        subprocess.run, [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "http_requests",
        "http_request_duration_seconds",
        "telltale_deployments",
        "telltale_payment_amount",
    } <= names


# --- typed seams: the metrics sink protocol, no upward imports ---------------------------------------


async def test_both_metrics_sinks_record_the_same_through_the_middleware() -> None:
    """prometheus-client's metrics (the several-workers sink) go through the batch-of-one adapter and
    record exactly what the lean stats record."""
    from prometheus_client import CollectorRegistry
    from telltale.app.instrumentation.http_metrics import HttpMetrics
    from telltale.app.instrumentation.middleware import BatchedRequestMetrics, TelemetryMiddleware, as_batched
    from telltale.app.instrumentation.request_stats import LeanHttpMetrics

    totals = []
    for kind in (LeanHttpMetrics, HttpMetrics):
        registry = CollectorRegistry()
        sink = kind(registry)
        assert isinstance(as_batched(sink), BatchedRequestMetrics)
        assert (as_batched(sink) is sink) == (kind is LeanHttpMetrics)
        app = FastAPI()

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            return {"id": item_id}

        app.add_middleware(TelemetryMiddleware, metrics=sink, access_log=False)
        async with client(app) as c:
            for i in range(3):
                await c.get(f"/items/{i}")
            await c.get("/items/x")
            await c.post("/items/1", content=b"abc")
        got = {}
        for family in registry.collect():
            for s in family.samples:
                if s.name in ("http_requests_total", "http_requests_in_progress", "http_request_size_bytes_sum"):
                    got[(s.name, tuple(sorted(s.labels.items())))] = s.value
        totals.append(got)
    lean, prom = totals
    assert lean == prom
    assert lean[("http_requests_total", (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200")))] == 3
    assert lean[("http_requests_in_progress", (("method", "GET"),))] == 0
    assert lean[("http_request_size_bytes_sum", (("method", "POST"), ("route", "/items/{item_id}")))] == 3


def test_instrumentation_imports_nothing_above_it() -> None:
    """app/instrumentation may import `telltale.app` (the version) and itself, never app's routes."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "app" / "instrumentation"
    upward = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("telltale.app.") and not name.startswith("telltale.app.instrumentation"):
                    upward.append(f"{path.name}: {name}")
    assert upward == []


def test_the_instrumentation_package_exports_its_public_names() -> None:
    import telltale.app.instrumentation as instrumentation

    for name in instrumentation.__all__:
        assert getattr(instrumentation, name) is not None, name
    with pytest.raises(AttributeError):
        _ = instrumentation.no_such_name
