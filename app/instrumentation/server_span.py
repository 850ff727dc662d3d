"""A lean server span: the request's span, recorded without the SDK's per-span machinery.

The SDK's `_Span` guards every attribute with a lock, validates through `BoundedAttributes`, keeps
bounded event and link lists and runs span-processor hooks at start; for one span per request that
came to about 30 µs, most of the cost of tracing at full sampling. This span implements the
OpenTelemetry `Span` API over plain fields (handlers can still add attributes and events to it, and
child spans made by the SDK or the instrumentations parent to it as usual), and at `end()` hands an
SDK `ReadableSpan`, its attributes validated once, to the same batch processor the SDK would use, so
the OTLP exporter sees nothing different. Sampling is still the configured sampler's decision.

The lean path runs only in the configuration it is proven to match (`lean_spans`): an enabled SDK tracer
without SDK-internal span metrics, default span limits, the random id generator, Telltale's SpanQueue as
the only span processor (its `on_start` does nothing, so skipping it changes nothing) and a built-in
sampler. Any other tracer gets the SDK's own `start_span`. `tests/test_sampling.py` compares the two.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor, Tracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types
from telltale.app.instrumentation import _compat
from telltale.app.instrumentation.span_queue import SpanQueue

log = logging.getLogger("telltale.telemetry")

_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
# The SpanLimits the lean span implements: the SDK's defaults with no OTEL_*_LIMIT variable set.
DEFAULT_LIMITS = {
    "max_attributes": 128,
    "max_events": 128,
    "max_links": 128,
    "max_span_attributes": 128,
    "max_event_attributes": 128,
    "max_link_attributes": 128,
    "max_attribute_length": None,
    "max_span_attribute_length": None,
}
_NO_TRACE_STATE = SpanContext(1, 1, False).trace_state  # the SDK's shared empty TraceState
_new_tuple = tuple.__new__


def own_context(trace_id: int, span_id: int, flags: TraceFlags) -> SpanContext:
    """A SpanContext for ids the random id generator drew (both non-zero and in range by construction),
    built as the tuple `SpanContext.__new__` makes, without its checks: that call was ~2,000 instructions
    per sampled request. Inline `_new_tuple(...)` on the hot path; this is the readable form."""
    return _new_tuple(SpanContext, (trace_id, span_id, False, flags, _NO_TRACE_STATE, True))


_PLAIN_SAMPLERS = (StaticSampler, type(ALWAYS_ON), type(ALWAYS_OFF), TraceIdRatioBased)
_PARENT_BASED = (ParentBased, ParentBasedTraceIdRatio, type(DEFAULT_ON), type(DEFAULT_OFF))


class ServerSpanEnd(Protocol):
    """How the middleware ends the request's span, whichever path made it."""

    def finish(self, method: str, route: str, status: int, failed: BaseException | None) -> SpanContext | None:
        """Name (`METHOD /route`), label, mark an error and end the span; its context when sampled."""
        ...


class SdkServerSpan:
    """`ServerSpanEnd` for a span the SDK (or any other tracer) made, through the public Span API."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def finish(self, method: str, route: str, status: int, failed: BaseException | None) -> SpanContext | None:
        span = self.span
        if not span.is_recording():
            return None
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.route": route, "http.response.status_code": status})
        if failed is not None:
            span.record_exception(failed)
        if status >= 500:
            span.set_status(_ERROR)
        span.end()
        context = span.get_span_context()
        return context if context.trace_flags.sampled else None


class UnsampledRootSpan(NonRecordingSpan):
    """A new root the ratio sampler dropped: it still carries a trace context (for log lines and for
    outgoing `traceparent` headers, so downstream services agree not to sample), but its span id is
    drawn and its SpanContext built only when something asks for them, usually nothing.

    The middleware makes it with `object.__new__` and sets `_trace_id` and `_span_ids` itself (the type
    call and this `__init__` were ~1,000 instructions per unsampled request); `_context` defaults here."""

    _context: SpanContext | None = None  # type: ignore[assignment]

    def __init__(self, trace_id: int, span_ids: Callable[[], int]) -> None:  # no super(): it wants the context
        self._trace_id = trace_id
        self._span_ids = span_ids
        self._context: SpanContext | None = None  # type: ignore[assignment]

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = own_context(self._trace_id, self._span_ids(), _UNSAMPLED)
        return context

    def is_recording(self) -> bool:
        return False


def _valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    """The SDK's rule: a valid context, or an invalid one that still carries attributes or trace state."""
    return bool(context and (context.is_valid or attributes or context.trace_state))


class LeanServerSpan(Span):
    __slots__ = (
        "_context",
        "_ended",
        "_events",
        "_foreign",
        "_links",
        "_name",
        "_owner",
        "_parent",
        "_start",
        "_status",
        "attributes",
        "sampled",
    )

    def __init__(
        self,
        owner: LeanSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, types.AttributeValue],
        sampled: bool = True,
    ) -> None:
        self._owner = owner  # the LeanSpans that made it: processor, sink, resource, scope
        self.sampled = sampled  # recorded spans are sampled unless the sampler said RECORD_ONLY
        self._name = name
        self._context = context
        self._parent = parent
        # the middleware's own attributes (str and int) as a plain dict; the first attribute from anyone
        # else turns it into the SDK's BoundedAttributes, so limits and validation are the SDK's own
        self.attributes: dict[str, types.AttributeValue] | BoundedAttributes = attributes
        self._events: BoundedList | None = None
        self._links: BoundedList | None = None
        self._status = _UNSET
        self._start = time.time_ns()
        self._ended = False
        self._foreign = False

    def _bounded(self) -> BoundedAttributes:
        attributes = self.attributes
        if not self._foreign:
            self._foreign = True
            attributes = self.attributes = BoundedAttributes(
                self._owner.max_span_attributes, attributes, immutable=False
            )
        return attributes  # type: ignore[return-value]

    def finish(self, method: str, route: str, status: int, failed: BaseException | None) -> SpanContext | None:
        """`ServerSpanEnd`: the middleware's closing attributes (known types), without a validation pass
        unless a handler added attributes of its own."""
        if self._ended:
            return None
        self._name = f"{method} {route}"
        attributes = self.attributes
        attributes["http.route"] = route  # type: ignore[index]
        attributes["http.response.status_code"] = status  # type: ignore[index]
        if failed is not None:
            self.record_exception(failed)
        if status >= 500:
            self.set_status(_ERROR)
        # `_close`, inline (a call is ~1,100 instructions); tests/test_sampling.py compares both with the SDK
        self._ended = True
        owner = self._owner
        attributes = self.attributes
        readable = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=owner.resource,
            attributes=_compat.freeze_attributes(attributes) if self._foreign else attributes,
            events=self._events if self._events is not None else (),
            links=self._links if self._links is not None else (),
            kind=SpanKind.SERVER,
            instrumentation_scope=owner.scope,
            instrumentation_info=owner.info,
            status=self._status,
            start_time=self._start,
            end_time=time.time_ns(),
        )
        if self.sampled:
            # SpanQueue.put, inline (a call per span is ~1,100 instructions): the append when there is room
            queue = owner.queue
            spans = queue._queue
            if len(spans) >= queue.max_queue_size or queue._stopped:
                queue.put(readable)  # full or stopped: put drops and counts it
                return self._context
            spans.append(readable)
            if len(spans) >= queue.batch_size and not queue._wake.is_set():
                queue._wake.set()
            return self._context
        owner.queue.on_end(readable)  # RECORD_ONLY: processors see it, exporters do not
        return None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self._ended:
            _compat.set_attributes(self._bounded(), attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self._ended:
            self._bounded()[key] = value

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._ended:
            return
        limits = self._owner
        events = self._events
        if events is None:
            events = self._events = BoundedList(limits.max_events)
        bounded = BoundedAttributes(limits.max_event_attributes, attributes, immutable=True)
        events.append(Event(name, bounded, timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._ended or not _valid_link(context, attributes):
            return
        limits = self._owner
        links = self._links
        if links is None:
            links = self._links = BoundedList(limits.max_links)
        links.append(Link(context, BoundedAttributes(limits.max_link_attributes, attributes, immutable=True)))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """The SDK's rules: UNSET never overrides, and nothing overrides OK."""
        if self._ended or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        event: dict[str, types.AttributeValue] = {
            "exception.type": f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if not self._ended:
            self._close(end_time if end_time is not None else time.time_ns())

    def _close(self, end_time: int) -> None:
        """End the span (not yet ended): the SDK ReadableSpan, handed to the queue."""
        self._ended = True
        owner = self._owner
        attributes = self.attributes
        readable = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=owner.resource,
            attributes=_compat.freeze_attributes(attributes) if self._foreign else attributes,
            events=self._events if self._events is not None else (),
            links=self._links if self._links is not None else (),
            kind=SpanKind.SERVER,
            instrumentation_scope=owner.scope,
            instrumentation_info=owner.info,
            status=self._status,
            start_time=self._start,
            end_time=end_time,
        )
        if self.sampled:
            # SpanQueue.put, inline (a call per span is ~1,100 instructions): the append when there is room
            queue = owner.queue
            spans = queue._queue
            if len(spans) >= queue.max_queue_size or queue._stopped:
                queue.put(readable)  # full or stopped: put drops and counts it
                return
            spans.append(readable)
            if len(spans) >= queue.batch_size and not queue._wake.is_set():
                queue._wake.set()
        else:
            owner.queue.on_end(readable)  # RECORD_ONLY: processors see it, exporters do not


def _expected_sampler(sampler: Sampler) -> bool:
    """A built-in sampler (always on/off, trace-id ratio, parent-based over those): they hand the span
    exactly the attributes they were given, which is what the lean path assumes."""
    if type(sampler) in _PLAIN_SAMPLERS:
        return True
    if type(sampler) in _PARENT_BASED:
        delegates = _compat.parent_based_delegates(sampler)
        return delegates is not None and all(type(d) in _PLAIN_SAMPLERS for d in delegates.values())
    return False


def lean_path_refusal(tracer: Any) -> str | None:
    """Why `tracer` must keep the SDK's own `start_span` path; None when the lean span matches it."""
    if type(tracer) is not Tracer:
        return "not the SDK's tracer"
    if not _compat.tracer_is_plain(tracer):
        return "tracer disabled or recording SDK-internal span metrics"
    if type(tracer.id_generator) is not RandomIdGenerator:
        return "custom id generator"
    processors = _compat.span_processors(tracer)
    if processors is None or len(processors) != 1 or type(processors[0]) is not SpanQueue:
        return "span processors other than one SpanQueue"
    if SpanQueue.on_start is not SpanProcessor.on_start:  # the lean span never calls it
        return "SpanQueue.on_start does something"
    limits = _compat.span_limits(tracer)
    if limits is None or any(getattr(limits, k) != v for k, v in DEFAULT_LIMITS.items()):
        return "non-default span limits"
    if not _expected_sampler(tracer.sampler):
        return "custom sampler"
    if _compat.instrumentation_scope(tracer) is None:
        return "no instrumentation scope"
    return None


def lean_spans(tracer: Any) -> LeanSpans | None:
    """LeanSpans for `tracer` when the lean path is proven to match its `start_span`, else None."""
    refusal = lean_path_refusal(tracer)
    if refusal is not None:
        log.debug("server spans through the SDK's start_span: %s", refusal)
        return None
    return LeanSpans(tracer)


class LeanSpans:
    """Makes server spans for one SDK tracer: the configured sampler decides, lean spans record.

    Build it through `lean_spans`, which checks the configuration. Each recorded span re-checks (one
    C-level call) that no processor was added since; if one was, that span is the SDK's own."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.resource = tracer.resource
        self.scope = _compat.instrumentation_scope(tracer)
        self.info = tracer.instrumentation_info
        limits = _compat.span_limits(tracer) or SpanLimits()
        self.max_span_attributes = limits.max_span_attributes
        self.max_events = limits.max_events
        self.max_links = limits.max_links
        self.max_event_attributes = limits.max_event_attributes
        self.max_link_attributes = limits.max_link_attributes
        self._processors_now = _compat.processors_reader(tracer)
        self._processors = self._processors_now()
        self.queue: SpanQueue = self._processors[0]

    def _sdk(self, name: str, parent_context: Context | None, attributes: dict[str, Any]) -> tuple[Span, Any]:
        span = self.tracer.start_span(name, context=parent_context, kind=SpanKind.SERVER, attributes=attributes)
        return span, SdkServerSpan(span) if span.is_recording() else None

    def start_sampled_root(
        self, name: str, trace_id: int, attributes: dict[str, types.AttributeValue]
    ) -> tuple[Span, ServerSpanEnd | None]:
        """A new root the caller's ratio test already sampled (what TraceIdRatioBased would decide:
        record and sample, no extra attributes, no trace state)."""
        if self._processors_now() is not self._processors:
            return self._sdk(name, None, attributes)
        context = _new_tuple(
            SpanContext, (trace_id, self.ids.generate_span_id(), False, _SAMPLED, _NO_TRACE_STATE, True)
        )  # own_context, inline
        span = LeanServerSpan(self, name, context, None, attributes)
        return span, span

    def start(
        self,
        name: str,
        parent_context: Context | None,
        parent: SpanContext | None,
        attributes: dict[str, types.AttributeValue],
        trace_id: int | None = None,
    ) -> tuple[Span, ServerSpanEnd | None]:
        """The server span: a LeanServerSpan when recorded, a NonRecordingSpan that carries the trace
        context otherwise. `trace_id` is set when the caller already drew it (a new root)."""
        if self._processors_now() is not self._processors:
            return self._sdk(name, parent_context, attributes)
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            flags_random = bool(parent.trace_flags & TraceFlags.RANDOM_TRACE_ID)
        else:
            parent = None
            if trace_id is None:
                trace_id = self.ids.generate_trace_id()
            flags_random = True  # the random id generator
        result = self.sampler.should_sample(parent_context, trace_id, name, SpanKind.SERVER, attributes, ())
        sampled = result.decision.is_sampled()
        if flags_random:
            flags = _SAMPLED if sampled else _UNSAMPLED
        else:
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, result.trace_state)
        if not result.decision.is_recording():
            return NonRecordingSpan(context), None
        if result.attributes:
            attributes = {**attributes, **result.attributes}
        span = LeanServerSpan(self, name, context, parent, attributes, sampled)
        return span, span
