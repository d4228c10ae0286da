"""OpenTelemetry for both services, in one place: providers and OTLP exporters, the Litestar
plugin configured for route-template span names, the request identity and size attributes,
`annotate()` for business attributes, and process/DB-pool metrics."""

from __future__ import annotations

import os

# Stable HTTP semantic conventions (http.request.method, http.response.status_code, url.path,
# client.address ...), not the legacy names; read once when the instrumentation first runs.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from collections.abc import Callable, Iterable
from typing import Any

import psutil
from litestar.enums import ScopeType
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span

from clickpulse_services.common.client_identity import (
    RUN_HEADER,
    SESSION_HEADER,
    USER_HEADER,
    client_address,
    region_of,
)
from clickpulse_services.common.settings import ServiceSettings

AttributeValue = str | bool | int | float


class Telemetry:
    """The providers of one service process; `shutdown()` flushes what is still buffered."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        resource = Resource.create(
            {
                "service.name": settings.service_name,
                "service.namespace": "clickpulse",
                "service.instance.id": f"{settings.service_name}-{os.getpid()}",
            }
        )
        self.tracer_provider = TracerProvider(resource=resource)
        self.meter_provider: MeterProvider
        if settings.telemetry_enabled:
            # The exporter retries an unavailable collector until this deadline, and the large
            # queue holds what arrives meanwhile: together they ride out a collector restart.
            span_exporter = OTLPSpanExporter(
                endpoint=settings.otlp_endpoint, insecure=True, timeout=60
            )
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    span_exporter,
                    max_queue_size=65536,
                    max_export_batch_size=2048,
                    schedule_delay_millis=500,
                    export_timeout_millis=90_000,
                )
            )
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True),
                export_interval_millis=settings.metrics_interval_ms,
            )
            self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        else:
            self.meter_provider = MeterProvider(resource=resource)
        self.meter = self.meter_provider.get_meter("clickpulse.services")

    def litestar_plugin(self) -> OpenTelemetryPlugin:
        settings = self.settings

        def request_hook(span: Span, scope: dict[str, Any]) -> None:
            if not span.is_recording():
                return
            headers = _headers(scope)
            peer = scope.get("client")
            address = client_address(
                peer[0] if peer else None, headers.get("x-forwarded-for"), settings.trusted_proxies
            )
            span.set_attribute("client.address", address)
            span.set_attribute("app.region", region_of(address, settings.regions))
            for header, attribute in (
                (USER_HEADER, "user.id"),
                (SESSION_HEADER, "session.id"),
                (RUN_HEADER, "app.load.run_id"),
            ):
                if value := headers.get(header):
                    span.set_attribute(attribute, value[:128])

        config = OpenTelemetryConfig(
            tracer_provider=self.tracer_provider,
            # The instrumentation's own per-request histograms duplicate what ClickHouse
            # computes from the spans, and cost throughput (see docs/benchmarks.md).
            meter_provider=NoOpMeterProvider(),
            scope_span_details_extractor=route_template_span_details,
            server_request_hook_handler=request_hook,
            exclude_spans=["receive", "send"],
            exclude=["^/health$"],
        )
        return OpenTelemetryPlugin(config)

    def observe_process(self, pool_checked_out: Callable[[], int] | None = None) -> None:
        """Process CPU and memory, and open DB connections, as OTel gauges."""
        process = psutil.Process()
        process.cpu_percent(None)

        def cpu(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(process.cpu_percent(None) / 100.0)

        def memory(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(process.memory_info().rss)

        self.meter.create_observable_gauge(
            "process.cpu.utilization",
            [cpu],
            unit="1",
            description="CPU time of this process over the last interval, per core",
        )
        self.meter.create_observable_gauge(
            "process.memory.usage", [memory], unit="By", description="Resident set size"
        )
        if pool_checked_out is not None:
            checked_out = pool_checked_out

            def connections(_: CallbackOptions) -> Iterable[Observation]:
                yield Observation(checked_out(), {"db.client.connection.state": "used"})

            self.meter.create_observable_gauge(
                "db.client.connection.count",
                [connections],
                unit="{connection}",
                description="Database connections in use by this process",
            )

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def route_template_span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """`GET /products/{product_id}`: semantic conventions want the route template, never the
    raw path (Litestar's default), or every product id becomes its own endpoint. Before
    routing there is no template yet, and the name is the method alone."""
    method = str(scope.get("method", "")).upper()
    template = scope.get("path_template") or ""
    if not template:
        return method or "HTTP", {}
    return f"{method} {template}", {"http.route": template}


def annotate(**attributes: AttributeValue | None) -> None:
    """Business attributes on the current server span, under `app.*` (`product_id` ->
    `app.product.id`). None values are skipped."""
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(BUSINESS_ATTRIBUTES.get(key, f"app.{key}"), value)


BUSINESS_ATTRIBUTES = {
    "product_id": "app.product.id",
    "product_category": "app.product.category",
    "transaction_amount": "app.transaction.amount",
    "cart_items_count": "app.cart.items_count",
    "order_id": "app.order.id",
    "user_id": "user.id",
}


class ServerSpanMiddleware:
    """Runs after routing, inside the server span: names the span after the route template
    (the instrumentation starts it before routing, from the method alone) and records request
    and response body sizes (`http.request.body.size`, `http.response.body.size`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()
        name, route = route_template_span_details(scope)
        if route:
            span.update_name(name)
            span.set_attributes(route)
        sizes = {"request": 0, "response": 0}

        async def counting_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                sizes["request"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                sizes["response"] += len(message.get("body", b""))
                # The instrumentation ends the server span with the last body chunk: set the
                # sizes before passing that chunk on.
                if not message.get("more_body", False) and span.is_recording():
                    span.set_attribute("http.request.body.size", sizes["request"])
                    span.set_attribute("http.response.body.size", sizes["response"])
            await send(message)

        await self.app(scope, counting_receive, counting_send)
