"""The server span written straight as the span relay's record.

With the relay (common/span_relay.py) the SDK's span object only lived from a request's start to
its end, to be turned into a plain tuple for the relay. Building it was most of telemetry's cost
on the request path: the SDK makes a lock, bounded attribute and event containers, and cleans
and copies every attribute on the way in and again on the way out. A py-spy profile of
`GET /products/{id}` put `start_span`, `Span.end` and the processors at ~20 % of the request's
CPU. `RecordSpan` keeps the same facts in a dict and a list and hands the relay the very tuple
`to_record()` makes of an SDK span (tests/test_server_spans.py runs every server-span test
through both), so what lands in ClickHouse does not change.

It is a real `opentelemetry.trace.Span`: the current span of the request's context, so
`annotate()` writes to it and the client spans of the shop's calls to the CRUD API (SDK spans)
take it as their parent and propagate its context. Ids and the sampling decision come from the
tracer provider, as for the SDK's spans.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

Record = tuple[Any, ...]
_PRIMITIVE = (str, bool, int, float)
_PRIMITIVE_TYPES = frozenset(_PRIMITIVE)
_UNSET = Status(StatusCode.UNSET)
# The records' integers, looked up rather than read through the enums' descriptors.
_STATUS_CODES = {code: code.value for code in StatusCode}
_KINDS = {kind: kind.value for kind in SpanKind}
# A recording span's trace id, span id, flags and trace state.
_Ids = tuple[int, int, TraceFlags, TraceState | None]


def _clean(value: Any) -> Any:
    """The value as the SDK keeps it (a sequence becomes a tuple), or None when the SDK would
    drop it (it logs a warning; nothing of ours sets such a value)."""
    if isinstance(value, _PRIMITIVE):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(value) if all(isinstance(v, _PRIMITIVE) for v in value) else None
    return None


class RecordSpan(trace.Span):
    """A recording span whose end hands `hand` its relay record (see `to_record`).

    Its `SpanContext` is made only when asked for (the shop's calls to the CRUD API propagate
    it; most requests never ask), and the kind and status are kept as the record's integers."""

    __slots__ = (
        "_attributes",
        "_context",
        "_ended",
        "_events",
        "_flags",
        "_hand",
        "_kind",
        "_name",
        "_parent",
        "_scope",
        "_span_id",
        "_start",
        "_status",
        "_trace_id",
        "_trace_state",
    )

    def __init__(
        self,
        hand: Callable[[Record], None],
        scope: str,
        name: str,
        ids: _Ids,
        parent: SpanContext | None,
        kind: int,
        attributes: dict[str, Any],
    ) -> None:
        self._hand = hand
        self._scope = scope
        self._name = name
        self._trace_id, self._span_id, self._flags, self._trace_state = ids
        self._context: SpanContext | None = None
        self._parent = parent
        self._kind = kind
        self._start = time_ns()
        self._attributes = attributes
        self._events: list[tuple[str, int, dict[str, Any]]] = []
        self._status = _UNSET
        self._ended = False

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(
                self._trace_id, self._span_id, False, self._flags, self._trace_state
            )
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._ended:
            return
        # Nearly every value is a plain str or int: kept as it is, without `_clean`'s calls.
        if type(value) in _PRIMITIVE_TYPES:
            self._attributes[key] = value
        elif (cleaned := _clean(value)) is not None:
            self._attributes[key] = cleaned

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._ended:
            return
        kept = self._attributes
        for key, value in attributes.items():
            if type(value) in _PRIMITIVE_TYPES:
                kept[key] = value
            elif (cleaned := _clean(value)) is not None:
                kept[key] = cleaned

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if not self._ended:
            cleaned = {k: c for k, v in (attributes or {}).items() if (c := _clean(v)) is not None}
            self._events.append((name, timestamp or time_ns(), cleaned))

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: OK is final, and UNSET never replaces a status.
        if self._ended or self._status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self._status = new

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # The SDK's event, attribute for attribute (exception.type names the module).
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        parent = self._parent
        self._hand(
            (
                self._scope,
                "",  # the scope's version: get_tracer()'s default, as SDK spans have it
                self._name,
                self._trace_id.to_bytes(16, "big"),
                self._span_id,
                parent.span_id if parent else None,
                bool(parent and parent.is_remote),
                self._kind,
                self._start,
                end_time or time_ns(),
                self._attributes,
                _STATUS_CODES[self._status.status_code],
                self._status.description,
                self._events,
            )
        )


# The SDK's sampler when OTEL_TRACES_SAMPLER is not set: follow the parent's decision, sample
# every root. `RecordSpans` decides as it does without asking it (see there).
_DEFAULT_SAMPLER = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class RecordSpans:
    """Starts what `provider.get_tracer(scope).start_span(...)` would start (same ids, same
    sampling decision), as a `RecordSpan`; a non-recording span when the sampler says so.

    With the SDK's default sampler the decision is made here: the sampler's call builds a
    result object and looks the parent up again, ~2 us of the ~30 us a server span cost
    in-process (bench section 2). Any other sampler is asked as the SDK asks it.

    One difference: without a `parent_context` the span is a root, where the SDK would take
    the current context's span as its parent. A server span's parent is what the request's
    headers say (`ServerSpans`), and at a request's start nothing else is current."""

    def __init__(self, provider: TracerProvider, hand: Callable[[Record], None], scope: str):
        self.hand = hand
        self.scope = scope
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.default_sampling = provider.sampler.get_description() == _DEFAULT_SAMPLER

    def start(
        self,
        name: str,
        parent_context: Context | None,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> trace.Span:
        if parent_context is None and self.default_sampling:
            # A request without a trace context, under the default sampler: a sampled root.
            root: _Ids = (self.ids.generate_trace_id(), self.ids.generate_span_id(), _SAMPLED, None)
            return RecordSpan(self.hand, self.scope, name, root, None, _KINDS[kind], attributes)
        parent = trace.get_current_span(parent_context).get_span_context()
        valid_parent = parent if parent.is_valid else None
        trace_id = valid_parent.trace_id if valid_parent else self.ids.generate_trace_id()
        if self.default_sampling:
            sampled = valid_parent.trace_flags.sampled if valid_parent else True
            trace_state = valid_parent.trace_state if valid_parent else None
        else:
            sampling = self.sampler.should_sample(parent_context, trace_id, name, kind, attributes)
            sampled = sampling.decision is Decision.RECORD_AND_SAMPLE
            trace_state = sampling.trace_state
            if sampling.decision is not Decision.DROP and sampling.attributes:
                attributes = {**attributes, **sampling.attributes}
        span_id = self.ids.generate_span_id()
        if not sampled:
            # DROP, or RECORD_ONLY: the SDK's batch processor would not export that span either.
            return trace.NonRecordingSpan(
                SpanContext(trace_id, span_id, False, _NOT_SAMPLED, trace_state)
            )
        ids = (trace_id, span_id, _SAMPLED, trace_state)
        return RecordSpan(self.hand, self.scope, name, ids, valid_parent, _KINDS[kind], attributes)
