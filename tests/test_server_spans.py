"""The server-span middleware in-process, with the real OpenTelemetry SDK keeping finished spans
in memory: what each kind of request becomes (the services' tests check the same spans after
the collector and ClickHouse)."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from clickpulse_services.common.record_span import Record
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.span_relay import from_record, to_record
from clickpulse_services.common.telemetry import (
    ServerSpans,
    Telemetry,
    annotate,
    remember_exception,
)
from litestar import Litestar, get
from litestar.exceptions import ClientException
from litestar.params import FromPath
from litestar.testing import TestClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

pytestmark = pytest.mark.no_stack

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@get("/items/{item_id:int}", sync_to_thread=False)
def item(item_id: FromPath[int]) -> dict[str, int]:
    return {"id": item_id}


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("the handler broke")


class Conflict(ClientException):
    """A 4xx raised by a handler, as the services raise theirs; remembers itself weakly."""

    status_code = 409
    raised: list[weakref.ref[Conflict]] = []

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail)
        Conflict.raised.append(weakref.ref(self))


@get("/conflict", sync_to_thread=False)
def conflict() -> None:
    raise Conflict("the cart is empty")


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


class Finished:
    """The finished spans of either path: SDK spans kept by an in-memory exporter, or the span
    relay's records (common/record_span.py), msgpack-encoded and rebuilt as the relay does."""

    def __init__(self, exporter: InMemorySpanExporter, records: list[Record]) -> None:
        self.exporter = exporter
        self.records = records

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]:
        relayed = msgspec.msgpack.decode(
            msgspec.msgpack.encode(self.records), type=list[tuple[Any, ...]]
        )
        resource = Resource.create({"service.name": "spans-test"})
        return (
            *self.exporter.get_finished_spans(),
            *(from_record(record, resource) for record in relayed),
        )


# Every test runs on both paths: the server span as an SDK span, and as the relay's record.
@pytest.fixture(params=["sdk-span", "relay-record"])
def traced(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient[Litestar], Finished]]:
    settings = ServiceSettings.from_env("spans-test")
    telemetry = Telemetry(dataclasses.replace(settings, telemetry_enabled=False))  # no OTLP
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[Record] = []
    if request.param == "relay-record":
        telemetry.hand = records.append
    app = Litestar([item, boom, conflict, health], after_exception=[remember_exception])
    app.asgi_handler = telemetry.server_spans(app.asgi_handler)
    with TestClient(app) as client:
        yield client, Finished(exporter, records)


def _only(exporter: Finished) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_a_routed_request_is_one_server_span_named_by_its_route(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    client, exporter = traced
    response = client.get(
        "/items/7",
        headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "user-agent": "spans-test/1.0",
            # A client's claim of who it is: the user comes from a verified token only.
            "x-user-id": "u-1",
            "x-session-id": "s-1",
            # TestClient's peer is "testclient", not a trusted proxy: this must be ignored.
            "x-forwarded-for": "10.3.0.9",
        },
    )
    assert response.status_code == 200
    span = _only(exporter)
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    assert span.status.status_code == StatusCode.UNSET
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/items/7",
        "client.address": "testclient",
        "app.region": "unknown",
        "user_agent.original": "spans-test/1.0",
        "session.id": "s-1",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "http.response.body.size": len(response.content),
    }


def test_requests_that_match_no_route_are_traced_without_one(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    client, exporter = traced
    assert client.get("/nowhere").status_code == 404
    span = _only(exporter)
    assert span.name == "GET"
    assert span.attributes is not None and "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code == StatusCode.UNSET  # a 4xx is the client's error


def test_an_unknown_method_is_other_and_cannot_name_the_span(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    client, exporter = traced
    assert client.request("BREW", "/items/1").status_code == 405
    span = _only(exporter)
    assert span.name.startswith("HTTP")
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "BREW"


def test_a_failing_handler_is_an_error_span_with_its_exception(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    client, exporter = traced
    assert client.get("/boom").status_code == 500
    span = _only(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "500"
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [name for name, _ in events] == ["exception"]
    assert events[0][1]["exception.type"] == "RuntimeError"
    assert events[0][1]["exception.message"] == "the handler broke"


def test_an_exception_answered_as_a_4xx_is_freed_with_its_request(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    # Without the garbage collector: what a request leaves in a reference cycle stays.
    client, exporter = traced
    gc.collect()
    gc.disable()
    try:
        assert client.get("/conflict").status_code == 409
        assert Conflict.raised[-1]() is None
    finally:
        gc.enable()
    assert (_only(exporter).attributes or {})["http.response.status_code"] == 409


def test_health_checks_are_not_traced(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    client, exporter = traced
    assert client.get("/health").status_code == 200
    assert exporter.get_finished_spans() == ()


def test_a_request_whose_caller_did_not_sample_its_trace_makes_no_span(
    traced: tuple[TestClient[Litestar], Finished],
) -> None:
    """The default sampler follows the parent's decision (flags 00: not sampled)."""
    client, exporter = traced
    not_sampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
    assert client.get("/items/7", headers=not_sampled).status_code == 200
    assert exporter.get_finished_spans() == ()
    assert client.get("/items/8").status_code == 200  # a root: sampled
    assert _only(exporter).attributes["url.path"] == "/items/8"  # type: ignore[index]


@pytest.mark.parametrize(("sampler", "spans"), [(ALWAYS_OFF, 0), (TraceIdRatioBased(1.0), 1)])
def test_a_sampler_other_than_the_default_decides_for_the_relay_records(
    sampler: Sampler, spans: int
) -> None:
    settings = ServiceSettings.from_env("spans-test")
    records: list[Record] = []
    app = Litestar([item])
    app.asgi_handler = ServerSpans(
        app.asgi_handler, TracerProvider(sampler=sampler), settings, records.append
    )
    with TestClient(app) as client:
        assert client.get("/items/7").status_code == 200
    assert len(records) == spans


@get("/annotated/{item_id:int}", sync_to_thread=False)
def annotated(item_id: FromPath[int]) -> dict[str, int]:
    annotate(product_id=item_id, product_name="Lamp", transaction_amount=12.5)
    return {"id": item_id}


def _records(path: str, *, relay: bool) -> list[Record]:
    """The relay records one request becomes, by either path."""
    settings = ServiceSettings.from_env("spans-test")
    telemetry = Telemetry(dataclasses.replace(settings, telemetry_enabled=False))
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[Record] = []
    if relay:
        telemetry.hand = records.append
    app = Litestar([annotated, boom], after_exception=[remember_exception])
    app.asgi_handler = telemetry.server_spans(app.asgi_handler)
    parent = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "user-agent": "test-agent"}
    with TestClient(app) as client:
        client.get(path, headers=parent)
    return records if relay else [to_record(span) for span in exporter.get_finished_spans()]


def _comparable(record: Record) -> tuple[Any, ...]:
    """A record without what differs between any two spans: span id, times, stack text."""
    fields = list(record)
    fields[4] = fields[8] = fields[9] = None
    fields[13] = [
        (name, {k: v for k, v in attrs.items() if k != "exception.stacktrace"})
        for name, _, attrs in fields[13]
    ]
    return tuple(fields)


@pytest.mark.parametrize("path", ["/annotated/7", "/boom"])
def test_the_relay_record_is_the_sdk_spans_record(path: str) -> None:
    """What the projection reads does not depend on the path: same name, scope, trace and
    parent, kind, attributes (business ones included), status and exception event."""
    sdk, relayed = _records(path, relay=False), _records(path, relay=True)
    assert len(sdk) == len(relayed) == 1
    assert _comparable(relayed[0]) == _comparable(sdk[0])
    assert relayed[0][3] == bytes.fromhex(TRACE_ID) and relayed[0][5] == int(PARENT_ID, 16)
