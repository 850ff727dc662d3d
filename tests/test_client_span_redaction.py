"""Outgoing HTTP spans must not carry credentials from the URL to the trace backend."""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from telltale.app.instrumentation.tracing import _URL_HOOKS

from tests.stub_http import StubHttp, reply


async def test_httpx_client_spans_have_the_url_redacted() -> None:
    """A real httpx request to a local server, instrumented with the hook Telltale installs globally."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stub = await StubHttp({"/status": reply(200, b"ok")}).start()
    try:
        async with httpx.AsyncClient() as client:
            HTTPXClientInstrumentor.instrument_client(
                client, tracer_provider=provider, request_hook=_URL_HOOKS["async_request_hook"]
            )
            url = f"http://user:pw-9f3@127.0.0.1:{stub.port}/status?region=eu&access_token=tok-9f3&api_key=key-9f3"
            assert (await client.get(url)).status_code == 200
    finally:
        await stub.stop()
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    full = str(attributes.get("url.full") or attributes.get("http.url"))
    assert "region=eu" in full and "127.0.0.1" in full
    for secret in ("pw-9f3", "tok-9f3", "key-9f3"):
        assert all(secret not in str(v) for v in attributes.values()), (secret, attributes)
