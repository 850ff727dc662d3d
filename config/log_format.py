"""How every Telltale process writes its log: the service, its span-export child and the exporter.

One JSON object a line (`json`, the default) or a readable line for a terminal (`console`). Every
field (message, extras, exception text) is redacted before it is serialized, never the serialized
line, so a pattern cannot swallow a quote and break the line. Third-party loggers (uvicorn, httpx,
asyncpg, opentelemetry...) go through the same handler; libraries that log every request at INFO
(httpx logs each probe's URL) are held at WARNING unless the level is `debug`. Python warnings and
uncaught exceptions become log lines too, so in `json` format stdout holds nothing but JSON.

This lives beside the settings (not in app/) because the exporter, which never imports app/, writes
the same lines.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from telltale.config.redact import redact, redact_fields, secret_values

STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message", "taskName"}
# libraries that log per request or per connection at INFO/DEBUG: WARNING and above unless debugging
CHATTY_LOGGERS = ("httpx", "httpcore", "hpack", "h2", "h11", "urllib3", "websockets", "asyncpg", "multipart")

_second: list[Any] = [None, ""]  # the last formatted second: one strftime per second, not per line


def timestamp_of(created: float, msecs: float) -> str:
    """RFC 3339 UTC with milliseconds, the second's text cached."""
    whole = int(created)
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int(msecs):03d}Z"


def record_message(record: logging.LogRecord) -> str:
    """The formatted message; a call whose arguments do not fit its format still gives a line."""
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!s} (log arguments did not fit: {record.args!r})"


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    d = record.__dict__
    return {k: d[k] for k in d.keys() - STD_ATTRS if not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, then context and extra fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = secret_values(secrets)

    def format(self, record: logging.LogRecord) -> str:
        secrets = self.secrets
        data: dict[str, Any] = {
            "timestamp": timestamp_of(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record_message(record), secrets),
        }
        extras = record_extras(record)
        if extras:
            data.update(redact_fields(extras, secrets))
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info), secrets)
        elif record.exc_text:
            data["exception"] = redact(record.exc_text, secrets)
        if record.stack_info:
            data["stack"] = redact(self.formatStack(record.stack_info), secrets)
        # ensure_ascii: a line never holds a raw newline or a byte a log shipper could split on
        return json.dumps(data, separators=(",", ":"), default=str)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value ...` for a human at a terminal."""

    _COLORS = {
        "DEBUG": "\x1b[2m",
        "INFO": "\x1b[32m",
        "WARNING": "\x1b[33m",
        "ERROR": "\x1b[31m",
        "CRITICAL": "\x1b[1;31m",
    }

    def __init__(self, secrets: Iterable[str] = (), color: bool | None = None) -> None:
        super().__init__()
        self.secrets = secret_values(secrets)
        self.color = sys.stdout.isatty() if color is None else color

    def format(self, record: logging.LogRecord) -> str:
        secrets = self.secrets
        level = record.levelname
        if self.color:
            level = f"{self._COLORS.get(level, '')}{level:<7}\x1b[0m"
        else:
            level = f"{level:<7}"
        extras = redact_fields(record_extras(record), secrets)
        tail = " ".join(f"{k}={v}" for k, v in extras.items() if k != "span_id")
        line = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))}.{int(record.msecs):03d} {level} "
            f"{record.name}: {redact(record_message(record), secrets)}" + (f"  {tail}" if tail else "")
        )
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info), secrets)
        return line


class BufferedLineHandler(logging.StreamHandler):
    """Writes whole lines in batches instead of one write and flush per line.

    An access line per request made the per-line flush (a syscall) a large part of the request's
    cost. Lines are held until 0.1 s passed, 3.5 KB piled up, a WARNING or worse arrives, or the
    handler is flushed or closed (logging flushes every handler at exit). Each write ends on a line
    boundary and stays under PIPE_BUF (4 KB), so workers sharing one stdout pipe never interleave
    within a line. A process killed with SIGKILL loses at most the last 0.1 s of lines. Uvicorn's own
    lines (start-up, shutdown) are written at once: after its last one ("Finished server process") it
    re-raises SIGTERM, and the process dies without running atexit's flush.
    """

    MAX_PENDING = 3500
    URGENT_LOGGERS = frozenset({"uvicorn.error"})

    def __init__(self, stream: Any = None, interval: float = 0.1) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending: collections.deque[str] = collections.deque()
        self._size = 0
        self._wake = threading.Event()
        self._closed = False
        threading.Thread(target=self._flusher, name="telltale-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        urgent = (
            record.levelno >= logging.WARNING or self._size >= self.MAX_PENDING or record.name in self.URGENT_LOGGERS
        )
        if urgent:
            self.flush()

    def write_line(self, line: str) -> None:
        """Queue an already formatted line (the access log's fast path): no lock, see `flush`."""
        self._pending.append(line)
        self._size += len(line)
        if self._size >= self.MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        # Writers append to the deque without the lock (deque.append and popleft are atomic), so a line
        # queued while this drains is either taken now or left for the next flush, never lost. `_size` is
        # only the trigger for an early flush: a line counted across the reset makes it at most a line off.
        pending = self._pending
        with self.lock:  # type: ignore[union-attr]
            if not pending:
                return
            self._size = 0
            popleft = pending.popleft
            chunk: list[str] = []
            size = 0
            while pending:
                line = popleft()
                if chunk and size + len(line) > self.MAX_PENDING:
                    self._write("".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self._write("".join(chunk))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not break a request
            pass

    def setStream(self, stream: Any) -> Any:
        self.flush()
        return super().setStream(stream)

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()
        super().close()

    def _flusher(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self.flush()


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    logging.getLogger("telltale").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("telltale").critical(
        "uncaught exception in thread %s",
        getattr(args.thread, "name", "?"),
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def configure_logging(
    fmt: str,
    level: str,
    secrets: Iterable[str] = (),
    *,
    filters: Iterable[logging.Filter] = (),
    stream: Any = None,
    buffered: bool = True,
) -> None:
    """Make the root logger's one handler write `fmt` lines to stdout; every other logger propagates to it."""
    secrets = secret_values(secrets)
    # The logging docs' "Optimization" switches: no caller lookup (a stack walk per line) and no
    # thread/process names, none of which a JSON line carries.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    out = stream if stream is not None else sys.stdout
    handler: logging.Handler = BufferedLineHandler(out) if buffered else logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else ConsoleFormatter(secrets))
    for f in filters:
        handler.addFilter(f)
    root = logging.getLogger()
    for old in root.handlers:  # hand over: nothing a previous handler holds is lost
        old.flush()
        if isinstance(old, BufferedLineHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "py.warnings"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Telltale writes its own access line (route, redacted path, request id); uvicorn's would repeat
    # it with the raw, percent-encoded path. Its worker processes reset this before calling the app
    # factory, so it is not left to uvicorn's `access_log=False` alone.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    debug = level.lower() == "debug"
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
    logging.captureWarnings(False)  # re-install: something (a test runner) may have replaced showwarning since
    logging.captureWarnings(True)
    # an uncaught exception prints a plain traceback to stderr: make it a line like any other
    if sys.excepthook is sys.__excepthook__ or sys.excepthook is _log_uncaught:
        sys.excepthook = _log_uncaught
    if threading.excepthook is threading.__excepthook__ or threading.excepthook is _log_uncaught_in_thread:
        threading.excepthook = _log_uncaught_in_thread


def current_logging() -> tuple[str, str, list[str]] | None:
    """(format, level, secrets) of the logging `configure_logging` set up in this process, for a child process
    to set up the same; None when it was not set up here."""
    root = logging.getLogger()
    for handler in root.handlers:
        formatter = handler.formatter
        if isinstance(formatter, JsonFormatter | ConsoleFormatter):
            fmt = "json" if isinstance(formatter, JsonFormatter) else "console"
            return fmt, logging.getLevelName(root.level).lower(), list(formatter.secrets)
    return None
