"""A lean server span: the request's span, recorded without the SDK's per-span machinery.

The SDK's `_Span` guards every attribute with a lock, validates through `BoundedAttributes`, keeps
bounded event and link lists and runs span-processor hooks at start; for one span per request that
came to about 30 µs, most of the cost of tracing at full sampling. This span implements the
OpenTelemetry `Span` API over plain fields (handlers can still add attributes and events to it, and
child spans made by the SDK or the instrumentations parent to it as usual), and at `end()` hands an
SDK `ReadableSpan`, its attributes validated once, to the same batch processor the SDK would use, so
the OTLP exporter sees nothing different. Sampling is still the configured sampler's decision.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)


class UnsampledRootSpan(NonRecordingSpan):
    """A new root the ratio sampler dropped: it still carries a trace context (for log lines and for
    outgoing `traceparent` headers, so downstream services agree not to sample), but its span id is
    drawn and its SpanContext built only when something asks for them, usually nothing."""

    def __init__(self, trace_id: int, span_ids: Callable[[], int]) -> None:  # no super(): it wants the context
        self._trace_id = trace_id
        self._span_ids = span_ids
        self._context = None

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(self._trace_id, self._span_ids(), False, _UNSAMPLED)
        return context

    def is_recording(self) -> bool:
        return False


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
        owner: Any,
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
        self.attributes = attributes
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._status = _UNSET
        self._start = time.time_ns()
        self._ended = False
        self._foreign = False  # attributes only from the middleware (str and int): no validation needed

    def set_own_attributes(self, route: str, status: int) -> None:
        """The middleware's closing attributes (known types), written without the validation pass."""
        attributes = self.attributes
        attributes["http.route"] = route
        attributes["http.response.status_code"] = status

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self._ended:
            self._foreign = True
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self._ended:
            self._foreign = True
            self.attributes[key] = value

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if not self._ended:
            self._events.append(Event(name, attributes, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not self._ended and context.is_valid:
            self._links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended:
            return
        if isinstance(status, Status):
            self._status = status
        else:
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
        event = {
            "exception.type": f"{module}.{kind.__qualname__}" if module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        owner = self._owner
        readable = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=owner.resource,
            attributes=BoundedAttributes(owner.max_attributes, self.attributes, immutable=True)
            if self._foreign or len(self.attributes) > owner.max_attributes
            else self.attributes,
            events=tuple(self._events),
            links=tuple(self._links),
            kind=SpanKind.SERVER,
            instrumentation_scope=owner.scope,
            instrumentation_info=owner.info,
            status=self._status,
            start_time=self._start,
            end_time=end_time or time.time_ns(),
        )
        if self.sampled:
            owner.sink(readable)
        else:
            owner.processor.on_end(readable)  # RECORD_ONLY: processors see it, exporters do not


class LeanSpans:
    """Makes server spans for one SDK tracer: the configured sampler decides, lean spans record."""

    def __init__(self, tracer: Any, processor: Any) -> None:
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.resource = tracer.resource
        self.scope = getattr(tracer, "_instrumentation_scope", None)
        self.info = getattr(tracer, "instrumentation_info", None)
        self.max_attributes = 128
        self.processor = processor
        from telltale.app.instrumentation.tracing import span_sink

        self.sink = span_sink(tracer)

    def start_sampled_root(self, name: str, trace_id: int, attributes: dict[str, types.AttributeValue]) -> Span:
        """A new root the caller's ratio test already sampled (what TraceIdRatioBased would decide:
        record and sample, no extra attributes, no trace state)."""
        return LeanServerSpan(
            self, name, SpanContext(trace_id, self.ids.generate_span_id(), False, _SAMPLED), None, attributes
        )

    def start(
        self,
        name: str,
        parent_context: Any,
        parent: SpanContext | None,
        attributes: dict[str, types.AttributeValue],
        trace_id: int | None = None,
        links: Sequence[Link] = (),
    ) -> Span:
        """The server span: a LeanServerSpan when sampled, a NonRecordingSpan that carries the trace
        context otherwise. `trace_id` is set when the caller already drew it (a new root)."""
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            flags_random = bool(parent.trace_flags & 0x02)
        else:
            parent = None
            if trace_id is None:
                trace_id = self.ids.generate_trace_id()
            flags_random = True
        result = self.sampler.should_sample(parent_context, trace_id, name, SpanKind.SERVER, attributes, links)
        sampled = result.decision.is_sampled()
        if flags_random:
            flags = _SAMPLED if sampled else _UNSAMPLED
        else:
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, result.trace_state)
        if not result.decision.is_recording():
            return NonRecordingSpan(context)
        if result.attributes:
            attributes = {**attributes, **result.attributes}
        return LeanServerSpan(self, name, context, parent, attributes, sampled)
