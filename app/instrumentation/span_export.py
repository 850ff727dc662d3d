"""OTLP span export in a child process.

Encoding spans as OTLP protobuf costs about 16 µs a span in Python, on the same GIL as the event loop
that serves requests; at full sampling that was most of tracing's cost. The batch processor's export
thread here only flattens each span into a tuple and pickles the batch (about 2 µs a span) down a
pipe; a spawned child rebuilds the spans, encodes them and posts them with the ordinary
OTLPSpanExporter, configured by the same `OTEL_*` environment. The export thread waits for the child's
answer, so the batch processor's bounded queue still applies back-pressure (and counts drops).

If the child cannot start, dies or does not answer within the timeout, it is stopped and the batch
is reported failed; after three such failures in a row the exporter exports in-process instead.
The child logs with the parent's format, level and secrets (whatever it writes is a line of the same
stream) and ignores SIGINT, which the parent handles.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from telltale.app.instrumentation import _compat
from telltale.config.log_format import configure_logging, current_logging

log = logging.getLogger("telltale.telemetry")


def otlp_http_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _flatten(span: ReadableSpan) -> tuple:
    if type(span) is ReadableSpan and _FIELDS is not None:
        return _flatten_fields(_FIELDS(span))
    c, p = span.context, span.parent
    scope = span.instrumentation_scope
    return (
        span.name,
        c.trace_id,
        c.span_id,
        int(c.trace_flags),
        tuple(c.trace_state.items()) if c.trace_state else (),
        (p.trace_id, p.span_id, p.is_remote, int(p.trace_flags)) if p is not None else None,
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        tuple((e.name, e.timestamp, dict(e.attributes or {})) for e in span.events),
        tuple(
            (lk.context.trace_id, lk.context.span_id, int(lk.context.trace_flags), dict(lk.attributes or {}))
            for lk in span.links
        ),
        span.status.status_code.value,
        span.status.description,
        (scope.name, scope.version, scope.schema_url) if scope is not None else None,
    )


def _flatten_fields(fields: tuple) -> tuple:
    """`_flatten` from the span's fields read in one C call, and its SpanContexts read by index (the
    same tuple as the public path; a property call per field was most of the export thread's work)."""
    name, c, p, kind, start, end, attributes, events, links, status, scope = fields
    state = c[4]
    return (
        name,
        c[0],
        c[1],
        int(c[3]),
        tuple(state.items()) if state else (),
        (p[0], p[1], p[2], int(p[3])) if p is not None else None,
        kind._value_,  # the enum member's value, without the `value` property's call
        start,
        end,
        dict(attributes) if attributes else {},
        tuple((e.name, e.timestamp, dict(e.attributes or {})) for e in events) if events else (),
        tuple(
            (lk.context.trace_id, lk.context.span_id, int(lk.context.trace_flags), dict(lk.attributes or {}))
            for lk in links
        )
        if links
        else (),
        *_known(status, _status_fields),
        _known(scope, _scope_fields) if scope is not None else None,
    )


# Flattened statuses and instrumentation scopes by identity: a lean span's status is one of the server
# span's two shared ones, its scope the tracer's, so each is read through its properties once, not per span.
_KNOWN: dict[int, tuple[Any, tuple]] = {}


def _known(thing: Any, flatten: Callable[[Any], tuple]) -> tuple:
    entry = _KNOWN.get(id(thing))
    if entry is not None and entry[0] is thing:
        return entry[1]
    if len(_KNOWN) >= 64:  # handlers that set statuses of their own make new ones: keep only a few
        _KNOWN.clear()
    flat = flatten(thing)
    _KNOWN[id(thing)] = (thing, flat)  # the cache holds `thing`, so its id is not reused meanwhile
    return flat


def _status_fields(status: Any) -> tuple:
    return (status.status_code.value, status.description)


def _scope_fields(scope: Any) -> tuple:
    return (scope.name, scope.version, scope.schema_url)


# the lean spans' ReadableSpans are flattened from their fields where `_compat` vouches for them
_FIELDS = _compat.readable_span_reader() if _compat.span_context_is_a_tuple() else None


def _rebuild(flat: tuple, resource: Any, scopes: dict) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

    (
        name,
        trace_id,
        span_id,
        flags,
        state,
        parent,
        kind,
        start,
        end,
        attributes,
        events,
        links,
        code,
        description,
        scope,
    ) = flat
    context = SpanContext(trace_id, span_id, False, TraceFlags(flags), TraceState(list(state)) if state else None)
    parent_ctx = SpanContext(parent[0], parent[1], parent[2], TraceFlags(parent[3])) if parent else None
    if scope is not None and scope not in scopes:
        scopes[scope] = InstrumentationScope(*scope)
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent_ctx,
        resource=resource,
        attributes=attributes,
        events=tuple(Event(n, a, t) for n, t, a in events),
        links=tuple(Link(SpanContext(t, s, False, TraceFlags(f)), a) for t, s, f, a in links),
        kind=SpanKind(kind),
        status=Status(StatusCode(code), description),
        start_time=start,
        end_time=end,
        instrumentation_scope=scopes.get(scope) if scope is not None else None,
    )


def _serve(
    conn: Any, make_exporter: Callable[[], SpanExporter], log_setup: tuple[str, str, list[str]] | None = None
) -> None:
    """The child: log like the parent, then rebuild each batch and export it; answer True/False; stop on None."""
    # Ctrl-C reaches the whole process group: the parent stops the child, which must not print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_setup is not None:
        # the parent's format, level and secrets: the OTLP exporter's and urllib3's warnings (failed posts,
        # retries, with the endpoint's URL) are lines of the same stream, redacted alike
        configure_logging(*log_setup, buffered=False)
    try:
        _export_loop(conn, make_exporter)
    except Exception:
        log.exception("span export child stopped")


def _export_loop(conn: Any, make_exporter: Callable[[], SpanExporter]) -> None:
    from opentelemetry.sdk.resources import Resource

    exporter = make_exporter()
    resources: dict = {}
    scopes: dict = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if message is None:
            break
        (attrs, schema_url), batch = message
        key = (tuple(sorted(attrs.items())), schema_url)
        resource = resources.get(key)
        if resource is None:
            resource = resources[key] = Resource(attrs, schema_url)
        try:
            result = exporter.export([_rebuild(f, resource, scopes) for f in batch])
            conn.send(result is SpanExportResult.SUCCESS)
        except Exception:
            conn.send(False)
    exporter.shutdown()


class ChildProcessExporter(SpanExporter):
    """A SpanExporter that hands batches to an exporter running in a spawned child process."""

    def __init__(self, make_exporter: Callable[[], SpanExporter] = otlp_http_exporter, timeout: float = 30.0) -> None:
        self._make = make_exporter
        self._timeout = timeout
        self._conn: Any = None
        self._proc: Any = None
        self._failures = 0
        self._inline: SpanExporter | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process with threads for a long-lived child
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(child, self._make, current_logging()), name="telltale-otlp-export", daemon=True
        )
        proc.start()
        child.close()
        self._conn, self._proc = parent, proc

    def _stop_child(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        self._conn = self._proc = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._inline is not None:
            return self._inline.export(spans)
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            resource = spans[0].resource
            self._conn.send(((dict(resource.attributes), resource.schema_url), [_flatten(s) for s in spans]))
            if not self._conn.poll(self._timeout):
                raise TimeoutError(f"no answer in {self._timeout:g}s")
            ok = self._conn.recv()
            self._failures = 0
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE
        except Exception as exc:
            self._failures += 1
            log.warning(
                "span export child failed", extra={"error": f"{type(exc).__name__}: {exc}", "failures": self._failures}
            )
            self._stop_child()
            if self._failures >= 3:
                log.warning("exporting spans in-process from now on")
                try:
                    self._inline = self._make()
                except Exception as inner:
                    log.warning("no span exporter", extra={"error": f"{type(inner).__name__}: {inner}"})
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (OSError, ValueError):
                pass
            self._stop_child()
        if self._inline is not None:
            self._inline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
