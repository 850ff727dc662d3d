"""JSON log lines with request context, one access line per request, console format, no secrets."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
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


class Opaque:
    """An extra that json.dumps cannot serialize: its str() carries a credential."""

    def __str__(self) -> str:
        return "https://api.example.com/v1?access_token=opaque-secret"


async def test_every_json_line_stays_json_and_each_field_is_redacted() -> None:
    """Redaction runs on each field before serializing: a pattern can no longer swallow a closing quote."""
    stream = capture("json", ["s3cret-health"])
    log = logging.getLogger("telltale.test")
    try:
        app = create_app(Settings(otel_enabled=False, health_token="s3cret-health"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/a/password=abc")).status_code == 404
            assert (await c.get('/a/token=x"y,"z')).status_code == 404
            assert (await c.get("/health/detailed")).status_code == 401
        log.warning('password=abc"} and more')
        log.info("probe %s failed", "https://api.example.com/x?client_secret=cs-9&region=eu")
        log.info("dsn %s", "postgresql://app:pw-777@db/x", extra={"url": "wss://h/feed?token=tk-1", "n": 3})
        log.info("tree", extra={"ctx": {"auth": {"password": "deep-1"}, "hosts": ["redis://:rp-2@r:6379"]}})
        log.info("opaque", extra={"obj": Opaque(), "ratio": float("nan")})
        try:
            raise RuntimeError("GET https://h/?api_key=exc-key failed")
        except RuntimeError:
            log.exception("boom")
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
    text = stream.getvalue()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) for line in text.splitlines()]
    for secret in ("abc", "s3cret-health", "cs-9", "pw-777", "tk-1", "deep-1", "rp-2", "opaque-secret", "exc-key"):
        assert secret not in text, secret
    access = [r for r in records if r["logger"] == "telltale.access"]
    assert [a["path"] for a in access] == ["/a/password=***", '/a/token=***"y,"z', "/health/detailed"]
    assert [a["status"] for a in access] == [404, 404, 401]
    by_message = {r["message"]: r for r in records}
    assert by_message["probe https://api.example.com/x?client_secret=***&region=eu failed"]
    assert by_message["dsn postgresql://app:***@db/x"]["url"] == "wss://h/feed?token=***"
    assert by_message["dsn postgresql://app:***@db/x"]["n"] == 3
    assert by_message["tree"]["ctx"]["auth"]["password"] == "***"
    assert "RuntimeError" in by_message["boom"]["exception"]


def test_console_lines_redact_each_field() -> None:
    stream = capture("console", ["s3cret-c"])
    try:
        logging.getLogger("telltale.test").warning(
            "calling %s", "https://h/?sig=zz-sig", extra={"dsn": "postgres://u:s3cret-c@h/db"}
        )
    finally:
        configure_logging("json", "info")
    out = stream.getvalue()
    assert "zz-sig" not in out and "s3cret-c" not in out
    assert "https://h/?sig=***" in out and "dsn=postgres://u:***@h/db" in out


def test_third_party_chatter_is_quiet_unless_debug() -> None:
    """httpx logs every request URL at INFO: at the default level that stays out; at debug it is redacted."""
    url = "https://api.example.com/status?access_token=chatty-tok"
    stream = capture("json", [])
    try:
        for name in ("httpx", "httpcore", "httpcore.http11"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', url)
        logging.getLogger().handlers[0].flush()
        assert stream.getvalue() == ""
        configure_logging("json", "debug")
        stream = io.StringIO()
        logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
        assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
        logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', httpx.URL(url))
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
    (record,) = lines(stream)
    assert record["logger"] == "httpx" and "chatty-tok" not in stream.getvalue()
    assert "access_token=***" in str(record["message"])


def test_warnings_are_log_lines() -> None:
    import warnings

    stream = capture("json", [])
    try:
        warnings.warn("deprecated thing at https://h/?key=warn-key", DeprecationWarning, stacklevel=1)
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
        logging.captureWarnings(False)
    (record,) = lines(stream)
    assert record["logger"] == "py.warnings" and "warn-key" not in stream.getvalue()


def test_fast_access_line_duration_context_argument_and_trace_join() -> None:
    """Six-decimal durations equal the logging path's round(d, 6); a passed-in context is used; the trace
    ids appear exactly when a span is current (the empty-context shortcut must not hide a real span)."""
    from opentelemetry.sdk.trace import TracerProvider
    from telltale.app.instrumentation.logs import RequestContext, write_access_line

    durations = [0.0, 1e-06, 4.9e-07, 0.0012345, 0.1, 12.3456789, 3600.0000004]
    stream = capture("json", [])
    tracer = TracerProvider().get_tracer("test")
    try:
        for d in durations:
            write_access_line("GET", "/r/{x}", "/r/1", 200, d, RequestContext(b"abc-1"))
        with tracer.start_as_current_span("s") as span:
            write_access_line("POST", "/r/{x}", "/r/2", 201, 0.5)
            ids = span.get_span_context()
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
    text = stream.getvalue()
    got = lines(stream)
    assert '"duration_seconds":0.000001,' in text
    assert [r["duration_seconds"] for r in got[: len(durations)]] == [round(d, 6) for d in durations]
    assert all(r["request_id"] == "abc-1" and "trace_id" not in r for r in got[: len(durations)])
    traced = got[-1]
    assert "request_id" not in traced and traced["message"] == "POST /r/{x} 201" and traced["status"] == 201
    assert traced["trace_id"] == format(ids.trace_id, "032x") and traced["span_id"] == format(ids.span_id, "016x")


def test_buffered_handler_loses_no_line_to_concurrent_flushes() -> None:
    """write_line appends without the lock while the flusher drains: every line arrives, once, whole."""
    import threading

    from telltale.app.instrumentation.logs import BufferedLineHandler

    stream = Recording()
    handler = BufferedLineHandler(stream, interval=0.001)
    per_thread = 3000

    def writer(n: int) -> None:
        for i in range(per_thread):
            handler.write_line(f"{n}-{i}\n")
            if i % 500 == 0:
                handler.flush()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handler.close()
    written = stream.getvalue().splitlines()
    assert sorted(written) == sorted(f"{n}-{i}" for n in range(4) for i in range(per_thread))
    assert all(w.endswith("\n") and len(w) <= 3600 for w in stream.writes)
    for n in range(4):  # each thread's lines keep their order
        mine = [int(w.split("-")[1]) for w in written if w.startswith(f"{n}-")]
        assert mine == sorted(mine)


def test_fast_access_line_respects_the_access_loggers_level_and_disabled_flag() -> None:
    """The fast path reads logging's level cache: a raised level or a disabled logger still writes nothing."""
    from telltale.app.instrumentation.logs import write_access_line

    stream = capture("json", [])
    access = logging.getLogger("telltale.access")
    try:
        write_access_line("GET", "/a", "/a", 200, 0.1)  # fills the level cache with INFO: enabled
        access.setLevel(logging.WARNING)
        write_access_line("GET", "/b", "/b", 200, 0.1)
        access.setLevel(logging.NOTSET)
        access.disabled = True
        write_access_line("GET", "/c", "/c", 200, 0.1)
        access.disabled = False
        logging.getLogger().handlers[0].flush()
    finally:
        access.setLevel(logging.NOTSET)
        access.disabled = False
        configure_logging("json", "info")
    assert [r["route"] for r in lines(stream)] == ["/a"]


def test_fast_access_line_quotes_every_request_id_as_json() -> None:
    """Alphanumeric ids are written without the JSON escaper (nothing to escape); any other id, given as bytes
    or str, still goes through it, and a configured secret in an id is still redacted."""
    from telltale.app.instrumentation.logs import RequestContext, write_access_line

    ids = [b"c0ffee0123456789abcdef01", b"abc-1.x:y_z", b'a"b\\c', "r\u00e9q-1", b"hunter22"]
    stream = capture("json", ["hunter22"])
    try:
        for rid in ids:
            write_access_line("GET", "/", "/", 200, 0.001, RequestContext(rid))
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
    got = [r["request_id"] for r in lines(stream)]
    assert got == ["c0ffee0123456789abcdef01", "abc-1.x:y_z", 'a"b\\c', "r\u00e9q-1", "***"]


def test_fast_access_line_heads_stay_bounded_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-(method, route, status) line heads are cached up to a bound; past it the cache starts over,
    and every line still carries its own method, route and status."""
    from telltale.app.instrumentation import logs

    monkeypatch.setattr(logs, "_MAX_HEADS", 3)
    monkeypatch.setattr(logs, "_HEADS", {})  # a cache of its own, empty, under the small bound
    monkeypatch.setattr(logs, "_HEAD_COUNT", [0])
    calls = [(m, r, s) for m in ("GET", "POST") for r in ("/a", "/b/{x}") for s in (200, 404)] * 2
    stream = capture("json", [])
    try:
        for method, route, status in calls:
            logs.write_access_line(method, route, "/p", status, 0.001, logs.RequestContext(b"id1"))
            entries = sum(len(by_method) for by_status in logs._HEADS.values() for by_method in by_status.values())
            assert entries <= 3
        logging.getLogger().handlers[0].flush()
    finally:
        configure_logging("json", "info")
    got = [(r["method"], r["route"], r["status"], r["message"]) for r in lines(stream)]
    assert got == [(m, r, s, f"{m} {r} {s}") for m, r, s in calls]
