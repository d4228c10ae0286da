"""The span relay hands the exporter the very spans the service made (no stack needed): what the
projection into analytics.request_metrics reads must not change on the way."""

from __future__ import annotations

import msgspec
import pytest
from clickpulse_services.common.span_relay import from_record, to_record
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

pytestmark = pytest.mark.no_stack


def _finished_span() -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "relay-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remote_parent = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1)
    )
    context = trace.set_span_in_context(NonRecordingSpan(remote_parent))
    span = provider.get_tracer("clickpulse.services", "1.2").start_span(
        "GET /products/{product_id}",
        context,
        SpanKind.SERVER,
        {"http.route": "/products/{product_id}", "http.response.status_code": 503},
    )
    span.set_attributes({"app.transaction.amount": 12.5, "app.flag": True, "app.ids": (1, 2)})
    try:
        raise RuntimeError("the database is gone")
    except RuntimeError as exc:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end()
    return exporter.get_finished_spans()[0]


def test_a_span_crosses_the_relay_unchanged() -> None:
    original = _finished_span()
    wire = msgspec.msgpack.encode([to_record(original)])
    [record] = msgspec.msgpack.decode(wire, type=list[tuple[object, ...]])
    rebuilt = from_record(record, original.resource)

    assert rebuilt.name == original.name and rebuilt.kind == SpanKind.SERVER
    assert rebuilt.context is not None and original.context is not None
    assert rebuilt.context.trace_id == original.context.trace_id
    assert rebuilt.context.span_id == original.context.span_id
    assert rebuilt.parent is not None and original.parent is not None
    assert rebuilt.parent.span_id == original.parent.span_id and rebuilt.parent.is_remote
    assert (rebuilt.start_time, rebuilt.end_time) == (original.start_time, original.end_time)
    assert dict(rebuilt.attributes or {}) == {
        **dict(original.attributes or {}),
        "app.ids": [1, 2],  # a sequence attribute: a list, as OTLP encodes it either way
    }
    assert rebuilt.status.status_code == StatusCode.ERROR
    assert rebuilt.status.description == "boom"
    assert [(e.name, e.timestamp, dict(e.attributes or {})) for e in rebuilt.events] == [
        (e.name, e.timestamp, dict(e.attributes or {})) for e in original.events
    ]
    assert rebuilt.instrumentation_scope is not None
    assert rebuilt.instrumentation_scope.name == "clickpulse.services"
    assert rebuilt.instrumentation_scope.version == "1.2"
    assert rebuilt.resource.attributes["service.name"] == "relay-test"
