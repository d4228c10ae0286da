"""Span export off the request path: a relay process per service process does the OTLP work.

Encoding spans as OTLP protobuf and sending them over gRPC is pure-Python work in the SDK's
export thread, and that thread shares the GIL with the request loop: once the fast path made a
request cheap (~0.6 ms of CPU for `GET /products/{id}`), export cost ~0.2 ms more per request,
and the throughput with telemetry on fell to ~0.6 of telemetry off. Here the service process only
turns each finished span into a plain tuple (a few microseconds) and a thread writes batches of
them, msgpack-encoded, to the relay's stdin (the write releases the GIL). The relay encodes the
records as the very OTLP bytes the SDK's encoder makes of the same spans (common/otlp_records.py,
6x cheaper than rebuilding SDK spans to encode them) and exports them through the SDK's own
batch processor and OTLP exporter, retries and queue as before.

The relay ignores SIGTERM and SIGINT and ends when its stdin closes: when its service process
exits, even by SIGKILL, the relay still exports what it was handed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import msgspec
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from clickpulse_services.common.otlp_records import RecordExporter

log = logging.getLogger(__name__)

# Handed to the relay every FLUSH_S, or as soon as this many spans wait.
FLUSH_S = 0.2
BATCH = 1024
# What a service process holds while its relay is gone (restarting): as the SDK's queue did.
MAX_BUFFERED = 65_536
RESOURCE_ENV = "CLICKPULSE_RELAY_RESOURCE"
# Export is work that can wait a moment (its batches go every 0.5 s): on a busy box the kernel
# gives the relay a third of a service process's share (nice 5), and it catches up when the box
# is less busy. It needs ~20 us of CPU a span, ~2 % of a core at 1,000 spans/s, far below even
# that share. Bench section 2, same stack, same session: throughput with telemetry on/off
# 0.904 and 0.863 with it, 0.825 without (0.83 and 0.842 in earlier runs).
RELAY_NICENESS = 5

Record = tuple[Any, ...]


def batch_processor(endpoint: str, exporter: SpanExporter | None = None) -> BatchSpanProcessor:
    """The exporter retries an unavailable collector until its deadline, and the large queue
    holds what arrives meanwhile: together they ride out a collector restart."""
    return BatchSpanProcessor(
        exporter or OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=60),
        max_queue_size=65536,
        max_export_batch_size=2048,
        schedule_delay_millis=500,
        export_timeout_millis=90_000,
    )


def to_record(span: ReadableSpan) -> Record:
    context = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    status = span.status
    assert context is not None
    return (
        scope.name if scope else "",
        scope.version if scope else None,
        span.name,
        context.trace_id.to_bytes(16, "big"),
        context.span_id,
        parent.span_id if parent else None,
        bool(parent and parent.is_remote),
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        status.status_code.value,
        status.description,
        [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
    )


def from_record(record: Sequence[Any], resource: Resource) -> ReadableSpan:
    """The SDK span a record stands for: the reference the relay's encoding is tested against."""
    (
        scope_name,
        scope_version,
        name,
        trace_id,
        span_id,
        parent_id,
        parent_remote,
        kind,
        start,
        end,
        attributes,
        status_code,
        status_description,
        events,
    ) = record
    trace = int.from_bytes(trace_id, "big")
    sampled = TraceFlags(TraceFlags.SAMPLED)
    return ReadableSpan(
        name,
        context=SpanContext(trace, span_id, is_remote=False, trace_flags=sampled),
        parent=(
            SpanContext(trace, parent_id, is_remote=parent_remote, trace_flags=sampled)
            if parent_id is not None
            else None
        ),
        resource=resource,
        attributes=attributes,
        events=[Event(n, a, timestamp=t) for n, t, a in events],
        kind=SpanKind(kind),
        status=Status(StatusCode(status_code), status_description),
        start_time=start,
        end_time=end,
        instrumentation_scope=InstrumentationScope(scope_name, scope_version),
    )


class RelayProcessor(SpanProcessor):
    """Hands finished spans to a relay process (started here, restarted if it dies)."""

    def __init__(self, endpoint: str, resource: Resource) -> None:
        self.endpoint = endpoint
        self.resource_json = json.dumps(dict(resource.attributes))
        self.buffer: list[Record] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closing = False
        self.encoder = msgspec.msgpack.Encoder()
        self.relay = self._start_relay()
        self.sender = threading.Thread(target=self._send_loop, name="span-relay", daemon=True)
        self.sender.start()

    def _start_relay(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "clickpulse_services.common.span_relay", self.endpoint],
            stdin=subprocess.PIPE,
            env={**os.environ, RESOURCE_ENV: self.resource_json},
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.hand(to_record(span))

    def hand(self, record: Record) -> None:
        """Queues one span's record for the relay (see common/record_span.py)."""
        with self.lock:
            if len(self.buffer) >= MAX_BUFFERED:
                self.dropped += 1
                return
            self.buffer.append(record)
            full = len(self.buffer) >= BATCH
        if full:
            self.wake.set()

    def _send_loop(self) -> None:
        while True:
            self.wake.wait(FLUSH_S)
            self.wake.clear()
            with self.lock:
                batch, self.buffer = self.buffer, []
                closing = self.closing
            if batch:
                self._send(batch)
            if closing:
                return

    def _send(self, batch: list[Record]) -> None:
        payload = self.encoder.encode(batch)
        frame = len(payload).to_bytes(4, "big") + payload
        for _ in range(2):
            stdin = self.relay.stdin
            assert stdin is not None
            try:
                stdin.write(frame)
                stdin.flush()
                return
            except OSError:  # the relay died: start another and hand it this batch
                log.warning("span relay %s exited; starting another", self.relay.pid)
                self.relay = self._start_relay()
        self.dropped += len(batch)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.wake.set()
        return True

    def shutdown(self) -> None:
        with self.lock:
            self.closing = True
        self.wake.set()
        self.sender.join(10)
        if self.relay.stdin is not None:
            self.relay.stdin.close()
        try:
            # The relay exports what it still holds (it retries a missing collector for up
            # to its exporter's deadline; a service stop does not wait that long).
            self.relay.wait(15)
        except subprocess.TimeoutExpired:
            self.relay.kill()


def _read_frames(stream: IO[bytes]) -> Iterator[bytes]:
    while len(header := stream.read(4)) == 4:
        yield stream.read(int.from_bytes(header, "big"))


def relay(endpoint: str, resource_attributes: Mapping[str, Any], stream: IO[bytes]) -> None:
    """The relay's main loop: frames from `stream` until it closes, then a final flush."""
    from clickpulse_services.common.process_metrics import process_meter_provider

    resource = Resource(dict(resource_attributes))
    exporter = RecordExporter(resource.attributes, endpoint=endpoint, insecure=True, timeout=60)
    processor = batch_processor(endpoint, exporter)
    # The SDK's batching, queue and export thread, handed records instead of spans (every
    # record is of a sampled span: BatchSpanProcessor.on_end's one check).
    emit = processor._batch_processor.emit
    # The relay's own CPU and memory count for its service (the CPU panel sums processes).
    meters = process_meter_provider(endpoint, resource, role="span-relay")
    decoder = msgspec.msgpack.Decoder(list[tuple[Any, ...]])
    for payload in _read_frames(stream):
        for record in decoder.decode(payload):
            emit(record)  # type: ignore[arg-type]
    processor.shutdown()  # type: ignore[no-untyped-call]
    meters.shutdown()


if __name__ == "__main__":
    # Stopped by its service closing the pipe, never by the signals meant for the service.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(RELAY_NICENESS)
    relay(sys.argv[1], json.loads(os.environ[RESOURCE_ENV]), sys.stdin.buffer)
