"""OpenTelemetry for both services, in one place: providers and OTLP exporters, the server-span
middleware (route-template names, request identity and sizes), `annotate()` for business
attributes, and process/DB-pool metrics."""

from __future__ import annotations

import os

# Stable HTTP semantic conventions (http.request.method, http.response.status_code, url.full,
# server.address ...) for the shop's aiohttp client spans too, not the legacy names; read once,
# when an OpenTelemetry instrumentor first runs (shop/catalogue.py).
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from clickpulse_services.common.client_identity import (
    RUN_HEADER,
    SESSION_HEADER,
    client_identity,
)
from clickpulse_services.common.process_metrics import (
    exporting_meter_provider,
    observe_process,
    process_resource,
)
from clickpulse_services.common.record_span import Record, RecordSpans
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.span_relay import RelayProcessor, batch_processor

AttributeValue = str | bool | int | float
# The instrumentation scope of the server spans (ScopeName in otel.otel_traces).
SCOPE = "clickpulse.services"


class Telemetry:
    """The providers of one service process; `shutdown()` flushes what is still buffered."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        resource = process_resource(settings.service_name)
        self.tracer_provider = TracerProvider(resource=resource)
        self.meter_provider: MeterProvider
        # Where server spans go as records (common/record_span.py); None: as SDK spans.
        self.hand: Callable[[Record], None] | None = None
        if settings.telemetry_enabled:
            if settings.span_export == "relay":
                relay = RelayProcessor(settings.otlp_endpoint, resource)
                self.tracer_provider.add_span_processor(relay)
                self.hand = relay.hand
            else:
                self.tracer_provider.add_span_processor(batch_processor(settings.otlp_endpoint))
            self.meter_provider = exporting_meter_provider(
                settings.otlp_endpoint, resource, settings.metrics_interval_ms
            )
        else:
            self.meter_provider = MeterProvider(resource=resource)
        self.meter = self.meter_provider.get_meter(SCOPE)

    def server_spans(self, app: ASGIApp) -> ASGIApp:
        """`app` wrapped in the middleware that makes every request a server span."""
        return ServerSpans(app, self.tracer_provider, self.settings, self.hand)

    def observe_process(self, pool_checked_out: Callable[[], int] | None = None) -> None:
        """Process CPU and memory, and open DB connections, as OTel gauges."""
        observe_process(self.meter, pool_checked_out)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


EXCEPTION_KEY = "clickpulse.exception"


async def remember_exception(exc: Exception, scope: Scope) -> None:
    """Litestar `after_exception` hook. Litestar turns an exception into a response inside
    `ServerSpans`, which then sees only the status: it records the exception on the span if
    the response is a 5xx (a 404 from a missing row is not an error of the service).

    Async on purpose: Litestar runs a sync hook in a worker thread, and that hop was ~25 % of
    the CPU of every 404, 401 and 429 in a profile (the 429s of an over-limit caller)."""
    scope["state"][EXCEPTION_KEY] = exc


def annotate(**attributes: AttributeValue | None) -> None:
    """Business attributes on the current server span, under `app.*` (`product_id` ->
    `app.product.id`). None values are skipped."""
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(BUSINESS_ATTRIBUTES.get(key, f"app.{key}"), value)


BUSINESS_ATTRIBUTES = {
    "product_id": "app.product.id",
    "product_name": "app.product.name",
    "product_category": "app.product.category",
    "transaction_amount": "app.transaction.amount",
    "cart_items_count": "app.cart.items_count",
    "order_id": "app.order.id",
    "user_id": "user.id",
}


# RFC 9110 methods; anything else is `_OTHER`, as the semantic conventions ask, so a client
# cannot make up span names.
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
IDENTITY_HEADERS = (
    (b"user-agent", "user_agent.original", 512),
    (SESSION_HEADER.encode(), "session.id", 128),
    (RUN_HEADER.encode(), "app.load.run_id", 128),
)
UNTRACED_PATHS = frozenset(("/health",))


class _HeaderGetter(Getter[dict[bytes, bytes]]):
    """Reads the W3C trace context from ASGI headers (lower-case byte names)."""

    def get(self, carrier: dict[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.encode("latin-1"))
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: dict[bytes, bytes]) -> list[str]:
        return [key.decode("latin-1") for key in carrier]


_HEADER_GETTER = _HeaderGetter()


class ServerSpans:
    """One SERVER span per HTTP request, with stable HTTP semantic-convention attributes, the
    caller's identity and the route template, all set in two calls.

    Placed outside Litestar's router (like Litestar's own OpenTelemetry middleware), so
    requests that match no route are traced too. It replaces
    `opentelemetry-instrumentation-asgi`, which costs ~4x more CPU per request for the same
    span (it decodes every header for each lookup and sets each attribute twice); see
    docs/benchmarks.md, "Instrumentation overhead"."""

    def __init__(
        self,
        app: ASGIApp,
        provider: TracerProvider,
        settings: ServiceSettings,
        hand: Callable[[Record], None] | None = None,
    ) -> None:
        self.app = app
        self.tracer = provider.get_tracer(SCOPE)
        self.records = RecordSpans(provider, hand, SCOPE) if hand is not None else None
        self.clients = client_identity(settings.trusted_proxies, settings.regions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        address, region = self.clients.of(scope)
        method: str = scope["method"]
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "url.path": scope["path"],
            "client.address": address,
            "app.region": region,
        }
        if method not in KNOWN_METHODS:
            attributes["http.request.method"] = "_OTHER"
            attributes["http.request.method_original"] = method
            method = "HTTP"
        for header, attribute, limit in IDENTITY_HEADERS:
            if value := headers.get(header):
                attributes[attribute] = value[:limit].decode("latin-1")
        parent = (
            propagate.extract(headers, getter=_HEADER_GETTER) if b"traceparent" in headers else None
        )
        span = (
            self.records.start(method, parent, SpanKind.SERVER, attributes)
            if self.records is not None
            else self.tracer.start_span(method, parent, SpanKind.SERVER, attributes)
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        status = 0
        request_size = 0
        response_size = 0

        async def counting_receive() -> ReceiveMessage:
            nonlocal request_size
            message = await receive()
            if message["type"] == "http.request":
                request_size += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        except Exception as exc:  # not turned into a response by Litestar
            scope.setdefault("state", {})[EXCEPTION_KEY] = exc
            status = status or 500
            raise
        finally:
            # Sizes only when there was a body (most requests are GETs): every attribute costs
            # again when the span is encoded for export, and ClickHouse reads a missing one as 0.
            final: dict[str, AttributeValue] = {}
            if status:  # none when the client went away before the response started
                final["http.response.status_code"] = status
            if request_size:
                final["http.request.body.size"] = request_size
            if response_size:
                final["http.response.body.size"] = response_size
            # Litestar's router left the matched route template in the scope: semantic
            # conventions want it, never the raw path, in the span name (or every product id
            # becomes its own endpoint).
            if template := scope.get("path_template"):
                final["http.route"] = template
                span.update_name(f"{method} {template}")
            state = scope.get("state", {})
            if status >= 500:
                final["error.type"] = str(status)
                span.set_status(Status(StatusCode.ERROR))
                if EXCEPTION_KEY in state:
                    span.record_exception(state[EXCEPTION_KEY])
            # Kept, the exception would keep itself alive: its traceback's frames hold this
            # scope, which holds it, a cycle only the garbage collector frees (and it runs
            # rarely, common/gc_policy.py). Every 4xx answered by raising (401, 404, 409, 429)
            # left 34 objects so, its frames and the request's scope among them.
            state.pop(EXCEPTION_KEY, None)
            span.set_attributes(final)
            context.detach(token)
            span.end()
