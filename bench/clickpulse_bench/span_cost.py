"""The CPU a server span costs, measured in-process: a Litestar app shaped like the CRUD API's
cheapest endpoint, called directly through ASGI (no network, no database, no other process on
the CPU), with telemetry off and on. The k6 comparison beside it shows what users get on this
box; this one says where the time goes, and does not drift with the box's load."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from clickpulse_services.common.otlp_records import RecordEncoder
from clickpulse_services.common.record_span import Record
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.span_relay import from_record
from clickpulse_services.common.telemetry import Telemetry, annotate
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.types import ASGIApp, Message, ReceiveMessage, Scope
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

# What the load generator sends: identity headers, a forwarded client address, a browser agent.
HEADERS = [
    (b"host", b"127.0.0.1:8001"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"),
    (b"x-forwarded-for", b"10.1.2.3"),
    (b"authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
    (b"x-session-id", b"sess-0f1e2d3c"),
    (b"accept", b"application/json"),
]


@get("/products/{product_id:int}", sync_to_thread=False)
def _product(product_id: FromPath[int]) -> dict[str, Any]:
    # user.id as the bearer-token middleware sets it, beside the business attributes.
    annotate(user_id="4242", product_id=product_id, product_category="books")
    return {"id": product_id, "name": "Widget", "category": "books", "price": "12.50"}


class _KeepLast(SpanProcessor):
    """Holds the last batch's worth of ended spans, as cheaply as the batch processor queues
    them (a deque append)."""

    def __init__(self) -> None:
        self.spans: deque[ReadableSpan] = deque(maxlen=BATCH)

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


BATCH = 2048


def product_scope(product_id: int, headers: list[tuple[bytes, bytes]] = HEADERS) -> Scope:
    """An ASGI scope of `GET /products/{product_id}` as uvicorn would hand it over."""
    path = f"/products/{product_id}"
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
        "state": {},
    }
    return scope  # type: ignore[return-value]


async def per_request_us(app: ASGIApp, scopes: Callable[[int], Scope], requests: int) -> float:
    """CPU per request of `app` over `requests` calls with `scopes(i)`, after a warm-up (route
    caches, signature models) of 500 calls with `scopes(0)`."""

    async def receive() -> ReceiveMessage:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    for _ in range(500):
        await app(scopes(0), receive, send)
    started = time.process_time()
    for i in range(requests):
        await app(scopes(i), receive, send)
    return (time.process_time() - started) / requests * 1e6


def bench_span_cost(requests: int) -> list[dict[str, Any]]:
    settings = ServiceSettings.from_env("crud-api")
    # No OTLP exporter: spans go to a list, so encoding can be timed on its own.
    sdk_telemetry = Telemetry(dataclasses.replace(settings, telemetry_enabled=False))
    kept = _KeepLast()
    sdk_telemetry.tracer_provider.add_span_processor(kept)
    # The stack's path: the server span written straight as the relay's record.
    record_telemetry = Telemetry(dataclasses.replace(settings, telemetry_enabled=False))
    records: deque[Record] = deque(maxlen=BATCH)
    record_telemetry.hand = records.append
    plain = Litestar([_product])
    as_sdk_span = Litestar([_product])
    as_sdk_span.asgi_handler = sdk_telemetry.server_spans(as_sdk_span.asgi_handler)
    as_record = Litestar([_product])
    as_record.asgi_handler = record_telemetry.server_spans(as_record.asgi_handler)

    def scopes(i: int) -> Scope:
        return product_scope(i % 50 + 1)

    off = asyncio.run(per_request_us(plain, scopes, requests))
    sdk = asyncio.run(per_request_us(as_sdk_span, scopes, requests))
    recorded = asyncio.run(per_request_us(as_record, scopes, requests))
    batch = list(records)
    resource = sdk_telemetry.tracer_provider.resource
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(list[tuple[Any, ...]])

    def hand_over() -> bytes:  # RelayProcessor.hand and its sender thread
        return encoder.encode(batch)

    payload = hand_over()

    def relay_as_sdk_spans() -> bytes:  # the relay before: rebuild SDK spans, then encode
        spans = [from_record(record, resource) for record in decoder.decode(payload)]
        return bytes(encode_spans(spans).SerializeToString())

    record_encoder = RecordEncoder(resource.attributes)

    def relay() -> bytes:  # the relay process: records straight to OTLP protobuf
        return record_encoder.request(decoder.decode(payload))

    return [
        {"step": "request through Litestar, telemetry off", "CPU us/request": round(off, 1)},
        {
            "step": "+ server span as an SDK span (the path without the relay)",
            "CPU us/request": round(sdk - off, 1),
        },
        {
            "step": "+ server span written as the relay's record (the stack's path)",
            "CPU us/request": round(recorded - off, 1),
        },
        {
            "step": "+ record handed to the relay (msgpack, the sender thread)",
            "CPU us/request": round(_per_span_us(hand_over, len(batch)), 1),
        },
        {
            "step": "+ OTLP encoding in the span relay process, as SDK spans (before)",
            "CPU us/request": round(_per_span_us(relay_as_sdk_spans, len(batch)), 1),
        },
        {
            "step": "+ OTLP encoding in the span relay process, records to protobuf (now)",
            "CPU us/request": round(_per_span_us(relay, len(batch)), 1),
        },
    ]


def _per_span_us(work: Callable[[], object], spans: int, repeat: int = 5) -> float:
    started = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - started) / repeat / spans * 1e6
