"""OTLP from the OpenTelemetry Python SDK, through the official collector, into ClickHouse."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from clickpulse.stack.components import Collector
from clickpulse.stack.settings import Settings


def _tracer_provider(settings: Settings, service: str, **batch: int) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(
        endpoint=f"http://{settings.host}:{settings.ports.otlp_grpc}", insecure=True
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, **batch))
    return provider


def test_a_server_span_lands_with_its_kind_duration_and_attributes(
    settings: Settings, reader: Client, unique_service: str, wait_for: Callable[..., Any]
) -> None:
    provider = _tracer_provider(settings, unique_service)
    tracer = provider.get_tracer("clickpulse.tests")
    with tracer.start_as_current_span(
        "GET /products/{product_id}",
        kind=SpanKind.SERVER,
        attributes={"http.route": "/products/{product_id}", "app.product.id": 42},
    ) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()

    rows = wait_for(
        lambda: (
            reader.query(
                "SELECT SpanName, SpanKind, Duration, SpanAttributes, TraceId "
                "FROM otel.otel_traces WHERE ServiceName = {s:String}",
                parameters={"s": unique_service},
            ).result_rows
        )
    )
    assert len(rows) == 1
    name, kind, duration, attributes, landed_trace = rows[0]
    assert name == "GET /products/{product_id}"
    assert kind == "Server"
    assert 0 < duration < 5_000_000_000
    assert attributes["http.route"] == "/products/{product_id}"
    assert attributes["app.product.id"] == "42"
    assert landed_trace == trace_id
    # The trace-id lookup table is fed by its materialized view.
    lookup = reader.query(
        "SELECT count() FROM otel.otel_traces_trace_id_ts WHERE TraceId = {t:String}",
        parameters={"t": trace_id},
    ).result_rows[0][0]
    assert lookup == 1


def test_a_metric_lands_in_the_metrics_tables(
    settings: Settings, reader: Client, unique_service: str, wait_for: Callable[..., Any]
) -> None:
    exporter = OTLPMetricExporter(
        endpoint=f"http://{settings.host}:{settings.ports.otlp_grpc}", insecure=True
    )
    reader_ = PeriodicExportingMetricReader(exporter, export_interval_millis=500)
    provider = MeterProvider(
        resource=Resource.create({"service.name": unique_service}), metric_readers=[reader_]
    )
    counter = provider.get_meter("clickpulse.tests").create_counter("clickpulse.test.requests")
    counter.add(7, {"route": "/users"})
    provider.force_flush()
    provider.shutdown()

    rows = wait_for(
        lambda: (
            reader.query(
                "SELECT MetricName, Value, Attributes FROM otel.otel_metrics_sum "
                "WHERE ServiceName = {s:String} ORDER BY TimeUnix DESC LIMIT 1",
                parameters={"s": unique_service},
            ).result_rows
        )
    )
    assert rows, "the counter never reached otel.otel_metrics_sum"
    name, value, attributes = rows[0]
    assert name == "clickpulse.test.requests"
    assert value == 7
    assert attributes["route"] == "/users"


def test_a_burst_of_10000_spans_loses_nothing(
    settings: Settings, reader: Client, unique_service: str, wait_for: Callable[..., Any]
) -> None:
    sent = 10_000
    provider = _tracer_provider(
        settings, unique_service, max_queue_size=sent, max_export_batch_size=2_000
    )
    tracer = provider.get_tracer("clickpulse.tests")
    for i in range(sent):
        with tracer.start_as_current_span("burst", kind=SpanKind.SERVER) as span:
            span.set_attribute("app.burst.index", i)
    assert provider.force_flush(timeout_millis=60_000)
    provider.shutdown()

    def landed() -> int:
        count: int = reader.query(
            "SELECT count() FROM otel.otel_traces WHERE ServiceName = {s:String}",
            parameters={"s": unique_service},
        ).result_rows[0][0]
        return count

    wait_for(lambda: landed() >= sent, timeout=90)
    assert landed() == sent
    distinct = reader.query(
        "SELECT uniqExact(SpanAttributes['app.burst.index']) FROM otel.otel_traces "
        "WHERE ServiceName = {s:String}",
        parameters={"s": unique_service},
    ).result_rows[0][0]
    assert distinct == sent


def test_spans_the_collector_accepted_survive_its_kill_9(
    settings: Settings, reader: Client, unique_service: str, wait_for: Callable[..., Any]
) -> None:
    """Accepted means on disk: batching happens inside the exporter's persistent queue, so
    a kill -9 within its 1 s flush loses nothing (a batch processor would have held them)."""
    collector = Collector(settings)
    provider = _tracer_provider(settings, unique_service, max_export_batch_size=512)
    tracer = provider.get_tracer("clickpulse.tests")
    for index in range(2000):
        with tracer.start_as_current_span(f"accepted {index}", kind=SpanKind.SERVER):
            pass
    assert provider.force_flush(10_000), "the collector did not accept the spans"
    collector.process.kill()
    provider.shutdown()

    def landed() -> int:
        return int(
            reader.query(
                "SELECT count() FROM otel.otel_traces WHERE ServiceName = {s:String}",
                parameters={"s": unique_service},
            ).result_rows[0][0]
        )

    # Nothing was exported before the kill, or this test would prove nothing.
    assert landed() == 0
    collector.process.start()  # returns once healthy
    assert wait_for(lambda: landed() == 2000 or None, timeout=60)
    time.sleep(2)  # and no duplicates arrive late
    assert landed() == 2000


def test_the_span_tables_merge_twenty_parts_at_a_time(admin: Client) -> None:
    """Migration 0013: a span was rewritten ~6 times by merges of five parts within two
    minutes of landing; merging twenty at a time, ~2 times. The rollups keep ClickHouse's
    default (5): a merge is what aggregates them."""
    bases = {
        str(table): int(found.group(1)) if (found := re.search(BASE, str(full))) else 5
        for table, full in admin.query(
            "SELECT database || '.' || name, engine_full FROM system.tables"
            " WHERE database IN ('otel', 'analytics') AND engine LIKE '%MergeTree'"
        ).result_rows
    }
    assert "analytics.request_metrics_1m" in bases
    raised = {table for table, base in bases.items() if base == 20}
    assert raised == {
        "otel.otel_traces",
        "otel.otel_traces_trace_id_ts",
        "analytics.request_metrics",
    }
    assert set(bases.values()) == {5, 20}


BASE = re.compile(r"merge_selector_base = (\d+)")
