"""Section 1: OTLP ingest throughput and lag (collector -> ClickHouse, all views on)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import grpc
from clickpulse_load.audit import audit_run
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from clickpulse.stack.clickhouse_client import admin_client
from clickpulse.stack.settings import Settings
from clickpulse_bench.common import console
from clickpulse_bench.report import md_table

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _span_batch(run_id: str, size: int, now_ns: int) -> bytes:
    """One OTLP export of `size` server spans shaped like the services' (same attributes)."""

    def kv(key: str, value: str) -> common_pb2.KeyValue:
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))

    spans = []
    for _ in range(size):
        duration = random.randint(300_000, 30_000_000)
        product = str(random.randint(1, 500))
        spans.append(
            trace_pb2.Span(
                trace_id=random.randbytes(16),
                span_id=random.randbytes(8),
                name="GET /products/{product_id}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now_ns - duration,
                end_time_unix_nano=now_ns,
                attributes=[
                    kv("http.route", "/products/{product_id}"),
                    kv("http.request.method", "GET"),
                    kv("http.response.status_code", "200"),
                    kv("url.path", f"/products/{product}"),
                    kv("client.address", f"10.1.{random.randint(0, 255)}.{random.randint(1, 254)}"),
                    kv("app.region", "us-east"),
                    kv("user.id", str(random.randint(1, 5000))),
                    kv("session.id", uuid.uuid4().hex),
                    kv("app.product.id", product),
                    kv("app.product.category", "books"),
                    kv("user_agent.original", "bench/1.0"),
                    kv("http.request.body.size", "0"),
                    kv("http.response.body.size", "180"),
                    kv("app.load.run_id", run_id),
                ],
            )
        )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        kv("service.name", "bench-ingest"),
                        kv("service.namespace", "clickpulse"),
                    ]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return bytes(request.SerializeToString())


def bench_ingest(
    settings: Settings, seconds: float, target_rate: int, *, clean: bool = True
) -> dict[str, Any]:
    """Offers `target_rate` spans/s for `seconds`. Batches are serialized before the clock
    starts, each stamped with the moment it is due, so the generator does not compete with the
    collector and ClickHouse for the two cores while it sends. `clean`: delete the rows after
    (a throw-away pipeline keeps them)."""
    run_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    batch = 1000
    count = int(seconds * target_rate / batch)
    probe = time.perf_counter()
    for _ in range(3):
        _span_batch(run_id + "-probe", batch, time.time_ns())
    per_batch_s = (time.perf_counter() - probe) / 3
    # The first batch is due once every batch is serialized (with a margin).
    start_ns = time.time_ns() + int((2 + count * per_batch_s * 1.5) * 1e9)
    with console.status(f"serializing {count} batches of {batch} spans"):
        payloads = [
            _span_batch(run_id, batch, start_ns + int(i * batch / target_rate * 1e9))
            for i in range(count)
        ]
    while time.time_ns() < start_ns - int(batch / target_rate * 1e9):
        time.sleep(0.01)
    channel = grpc.insecure_channel(f"{settings.host}:{settings.ports.otlp_grpc}")
    export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    next_index = 0
    lock = threading.Lock()
    started = time.monotonic()

    def sender() -> None:
        nonlocal next_index
        while True:
            with lock:
                index = next_index
                next_index += 1
            if index >= count:
                return
            due = start_ns + int(index * batch / target_rate * 1e9)
            time.sleep(max(0.0, (due - time.time_ns()) / 1e9))
            for attempt in range(50):
                try:
                    export(payloads[index], timeout=30)
                    break
                except grpc.RpcError:  # refused by memory_limiter: back off like an SDK
                    time.sleep(0.2 * (attempt + 1))

    senders = [threading.Thread(target=sender) for _ in range(8)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    send_s = time.monotonic() - started
    sent = count * batch
    audit = audit_run(run_id, sent, timeout_s=180, settings=settings)
    total_s = time.monotonic() - started
    if clean:
        admin = admin_client(settings)
        for table, column in (
            ("otel.otel_traces", "ServiceName"),
            ("analytics.request_metrics", "service_name"),
            ("analytics.request_metrics_1m", "service_name"),
            ("analytics.request_metrics_1h", "service_name"),
            ("analytics.audience_1h", "service_name"),
        ):
            admin.command(f"DELETE FROM {table} WHERE {column} = 'bench-ingest'")
    return {
        "target spans/s": target_rate,
        "sent": sent,
        "landed": audit.landed,
        "lost": audit.missing,
        "offered spans/s": round(sent / send_s),
        "sustained spans/s (sent -> all landed)": round(audit.landed / total_s),
        "lag p50 s": round(audit.lag_p50_s or 0, 2),
        "lag p99 s": round(audit.lag_p99_s or 0, 2),
        "lag max s": round(audit.lag_max_s or 0, 2),
    }


def section(settings: Settings, quick: bool, note: str) -> str:
    ingest = bench_ingest(settings, seconds=10 if quick else 30, target_rate=30_000)
    console.print(ingest)
    return (
        "## 1. Ingest (OTLP -> collector -> ClickHouse, all materialized views on)\n\n"
        "Spans shaped like the services' (same attributes), serialized beforehand and sent\n"
        "over OTLP/gRPC in batches of 1,000, each when due, by 8 threads; counted in\n"
        "`analytics.request_metrics` by run id. Lag = `ingested_at` - span end.\n\n"
        + md_table([ingest])
        + note
    )
