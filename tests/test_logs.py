"""JSON log lines with request context, one access line per request, console format, no secrets."""

from __future__ import annotations

import io
import json
import logging

import httpx
from telltale.app.instrumentation.logs import ConsoleFormatter, configure_logging, set_organization_id
from telltale.app.main import create_app
from telltale.config.settings import Settings


def capture(fmt: str, secrets: list[str]) -> io.StringIO:
    configure_logging(fmt, "info", secrets)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_access_line_and_request_context() -> None:
    stream = capture("json", ["s3cret-ingest"])
    try:
        app = create_app(Settings(otel_enabled=False, ingest_token="s3cret-ingest"))

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            set_organization_id("acme")
            logging.getLogger("telltale.test").info("handling item", extra={"item": item_id})
            return {"id": item_id}

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/items/7?token=s3cret-ingest", headers={"X-Request-ID": "req-42"})
            assert r.headers["x-request-id"] == "req-42"
            await c.get("/health/live")  # a probe path: no access line
            await c.post(
                "/api/v1/events",
                headers={"Authorization": "Bearer s3cret-ingest"},
                json={"events": [{"type": "login.failed", "organization": "org-9"}]},
            )
    finally:
        configure_logging("json", "info")
    records = lines(stream)
    assert "s3cret-ingest" not in stream.getvalue()
    handler_line = next(r for r in records if r["message"] == "handling item")
    assert handler_line["request_id"] == "req-42" and handler_line["organization_id"] == "acme"
    assert handler_line["item"] == 7 and handler_line["logger"] == "telltale.test" and handler_line["level"] == "info"
    assert str(handler_line["timestamp"]).endswith("Z")
    access = [r for r in records if r["logger"] == "telltale.access"]
    assert [a["route"] for a in access] == ["/items/{item_id}", "/api/v1/events"]
    first = access[0]
    assert first["method"] == "GET" and first["status"] == 200 and first["request_id"] == "req-42"
    assert first["organization_id"] == "acme" and first["path"] == "/items/7"
    assert isinstance(first["duration_seconds"], float)
    assert access[1]["organization_id"] == "org-9" and access[1]["status"] == 202
    assert len(str(access[1]["request_id"])) == 24
    assert "trace_id" not in first  # tracing is off here; see test_tracing for the join


def test_console_format_is_readable() -> None:
    record = logging.makeLogRecord(
        {
            "name": "telltale.access",
            "levelname": "INFO",
            "levelno": 20,
            "msg": "GET /items/{item_id} 200",
            "request_id": "r1",
            "status": 200,
        }
    )
    line = ConsoleFormatter(color=False).format(record)
    assert "INFO" in line and "telltale.access: GET /items/{item_id} 200" in line
    assert "request_id=r1" in line and "status=200" in line and not line.startswith("{")


def test_secrets_redacted_in_message_and_fields() -> None:
    stream = capture("json", ["hunter2"])
    try:
        logging.getLogger("telltale.test").warning("dsn postgres://u:hunter2@h/db", extra={"url": "x:hunter2"})
    finally:
        configure_logging("json", "info")
    out = stream.getvalue()
    assert "hunter2" not in out and "postgres://u:" in out


class Recording(io.StringIO):
    """Keeps every write separately, to check where the handler cuts its batches."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def test_buffered_handler_batches_whole_lines_and_flushes_soon() -> None:
    import time

    from telltale.app.instrumentation.logs import BufferedLineHandler, JsonFormatter

    stream = Recording()
    handler = BufferedLineHandler(stream, interval=0.05)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("telltale.test.buffered")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        for i in range(200):
            logger.info("line %d %s", i, "x" * 40)
        deadline = time.monotonic() + 2
        while stream.getvalue().count("\n") < 200:
            assert time.monotonic() < deadline, "buffered lines never reached the stream"
            time.sleep(0.01)
        assert all(w.endswith("\n") and len(w) <= 3600 for w in stream.writes)
        assert len(stream.writes) < 200  # batched, not a write per line
        before = len(stream.writes)
        logger.warning("urgent")
        assert len(stream.writes) == before + 1 and "urgent" in stream.writes[-1]  # no wait for the timer
    finally:
        handler.close()
        logger.handlers[:] = []
        logger.propagate = True


def test_fast_access_line_matches_the_logging_path_and_is_redacted() -> None:
    """The access line written straight to the JSON handler has the logging path's fields and redaction."""
    from telltale.app.instrumentation.logs import REQUEST, RequestContext, write_access_line

    stream = capture("json", ["hunter22"])
    token = REQUEST.set(RequestContext("req-1", "acme"))
    try:
        write_access_line("GET", "/files/{name}", "/files/hunter22.txt", 404, 0.0012345)
        logging.getLogger("telltale.access").info(
            "GET /files/{name} 404",
            extra={
                "method": "GET",
                "route": "/files/{name}",
                "path": "/files/hunter22.txt",
                "status": 404,
                "duration_seconds": 0.001235,
            },
        )
        logging.getLogger().handlers[0].flush()
    finally:
        REQUEST.reset(token)
        configure_logging("json", "info")
    fast, slow = lines(stream)
    assert "hunter22" not in stream.getvalue()
    assert fast["path"] == "/files/***.txt" == slow["path"]
    assert set(fast) == set(slow)
    for key in ("level", "logger", "message", "method", "route", "status", "request_id", "organization_id"):
        assert fast[key] == slow[key], key
    assert fast["duration_seconds"] == 0.001234 or fast["duration_seconds"] == 0.001235
