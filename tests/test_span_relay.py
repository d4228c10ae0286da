"""The span relay hands the exporter the very spans the service made (no stack needed): what the
projection into analytics.request_metrics reads must not change on the way."""

from __future__ import annotations

import os
import time

import msgspec
import psutil
import pytest
from clickpulse_services.common.otlp_records import RecordEncoder
from clickpulse_services.common.span_relay import (
    RELAY_NICENESS,
    RelayProcessor,
    from_record,
    to_record,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
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


def _record(**changes: object) -> tuple[object, ...]:
    """A relay record as RecordSpan hands it, with some fields changed."""
    fields = {
        "scope_name": "clickpulse.services",
        "scope_version": "",
        "name": "GET /products/{product_id}",
        "trace_id": bytes(range(16)),
        "span_id": 0x0102030405060708,
        "parent_id": None,
        "parent_remote": False,
        "kind": SpanKind.SERVER.value,
        "start": 1_764_000_000_123_456_789,
        "end": 1_764_000_000_124_456_789,
        "attributes": {"http.route": "/products/{product_id}", "http.response.status_code": 200},
        "status_code": StatusCode.UNSET.value,
        "status_description": None,
        "events": [],
    }
    fields.update(changes)
    return tuple(fields.values())


RECORDS = [
    _record(),
    _record(
        parent_id=0xB7AD6B7169203331,
        parent_remote=True,
        kind=SpanKind.CLIENT.value,
        attributes={
            "app.user.id": -42,  # a negative int64 is ten bytes on the wire
            "app.flag": True,
            "app.one": 1,  # equal to True, and hashed alike: not the same attribute
            "app.amount": 12.5,
            "app.ids": [1, 2, 3],
            "app.tags": ["a", "ü"],
            "user_agent.original": "k6/1.4 " + "x" * 300,  # a length past one varint byte
            "app.empty": "",
            "app.big": 2**40,
        },
        status_code=StatusCode.ERROR.value,
        status_description="the database is gone",
        events=[("exception", 1_764_000_000_124_000_000, {"exception.type": "RuntimeError"})],
    ),
    _record(parent_id=7, parent_remote=False, kind=SpanKind.INTERNAL.value, name=""),
    _record(scope_name="opentelemetry.instrumentation.aiohttp_client", scope_version="0.66b1"),
    _record(events=[("", 5, {})], status_code=StatusCode.OK.value),
    _record(attributes={"app.flag": 1, "app.one": True}),
]


def test_records_encode_to_the_sdk_encoders_exact_bytes() -> None:
    """What the relay sends is byte for byte what the SDK's encoder makes of the same spans,
    through the encoder's cache of repeated pairs too (the batch is encoded twice)."""
    resource = Resource.create({"service.name": "relay-test", "service.instance.id": "i-1"})
    wire = msgspec.msgpack.encode(RECORDS)
    records = msgspec.msgpack.decode(wire, type=list[tuple[object, ...]])
    expected = encode_spans([from_record(r, resource) for r in records]).SerializeToString()
    encoder = RecordEncoder(resource.attributes)
    assert encoder.request(records) == expected
    assert encoder.request(records) == expected
    assert encoder.request([]) == encode_spans([]).SerializeToString() == b""


def test_the_relay_process_runs_at_a_lower_priority_than_its_service() -> None:
    """Export can wait; on a saturated box the kernel favours the service's requests."""
    processor = RelayProcessor("127.0.0.1:9", Resource.create({"service.name": "relay-test"}))
    relay = psutil.Process(processor.relay.pid)
    try:
        expected = min(19, os.nice(0) + RELAY_NICENESS)
        deadline = time.monotonic() + 30  # the relay lowers itself once its imports are done
        while relay.nice() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.nice() == expected
    finally:
        processor.relay.kill()
        processor.shutdown()
