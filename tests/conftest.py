"""Fixtures for tests against the running local stack (`nox -s tests` starts it first)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.trace import TracerProvider

from clickpulse.stack.clickhouse_client import admin_client, reader_client, writer_client
from clickpulse.stack.components import uvicorn_argv
from clickpulse.stack.processes import free_port
from clickpulse.stack.settings import Settings

CRUD_APP = "clickpulse_services.crud.app:app"
SHOP_APP = "clickpulse_services.shop.app:app"


def service_tracer_provider(settings: Settings, service: str) -> TracerProvider:
    """A tracer provider whose spans reach the stack's collector as those of a clickpulse
    service named `service` (the projection into analytics.request_metrics takes them):
    requests of a service of a test's own, at the times and with the outcomes it needs."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "clickpulse"})
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"http://{settings.host}:{settings.ports.otlp_grpc}", insecure=True
            )
        )
    )
    return provider


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def admin(settings: Settings, _stack_checked: None) -> Client:
    return admin_client(settings)


@pytest.fixture(scope="session")
def reader(settings: Settings, _stack_checked: None) -> Client:
    return reader_client(settings)


@pytest.fixture(scope="session")
def writer(settings: Settings, _stack_checked: None) -> Client:
    return writer_client(settings)


def crud_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.ports.crud_api}"


def shop_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.ports.ecommerce_api}"


def sign_in(settings: Settings, email: str, password: str) -> str:
    """An access token from the CRUD API's token endpoint (OAuth2 password flow)."""
    import httpx

    response = httpx.post(
        f"{crud_url(settings)}/auth/token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(settings: Settings, name: str = "Test User") -> tuple[dict[str, Any], str]:
    """A freshly signed-up user (with its "password", for signing in again) and their token."""
    import httpx

    email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:12]}@example.com"
    password = f"pw-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{crud_url(settings)}/users", json={"email": email, "name": name, "password": password}
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = {**response.json(), "password": password}
    return user, sign_in(settings, email, password)


@contextlib.contextmanager
def serve_crud_api(
    settings: Settings, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    """A CRUD API served as the stack serves it, on a free port, for the length of the block."""
    with _serve(settings, CRUD_APP, workers, env) as served:
        yield served


@contextlib.contextmanager
def serve_shop(
    settings: Settings, catalogue_url: str, *, env: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    """An e-commerce API served as the stack serves it, on a free port, whose catalogue is the
    CRUD API at `catalogue_url`; it verifies tokens against the stack's CRUD API, so that one
    may be stopped or slowed down."""
    keys = {"CLICKPULSE_JWKS_URL": f"{crud_url(settings)}/auth/jwks.json"}
    env = {**keys, "CLICKPULSE_CRUD_API_URL": catalogue_url, **(env or {})}
    with _serve(settings, SHOP_APP, 1, env) as served:
        yield served


@contextlib.contextmanager
def _serve(
    settings: Settings, app: str, workers: int, env: dict[str, str] | None
) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    proc = subprocess.Popen(
        uvicorn_argv(app, settings.host, port, workers),
        env={**os.environ, **settings.service_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{settings.host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"{app} on {url} did not become healthy")
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="session")
def admin_token(settings: Settings, _stack_checked: None) -> str:
    """A token of the stack's administrator (admin@clickpulse.test)."""
    return sign_in(settings, "admin@clickpulse.test", settings.admin_password)


@pytest.fixture
def unique_service() -> str:
    """A service name no other test or run uses, so counts are exact."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    def _wait_for(probe: Callable[[], Any], *, timeout: float = 60.0, every: float = 0.5) -> Any:
        """Polls until `probe()` is truthy; returns its last value either way."""
        deadline = time.monotonic() + timeout
        value = probe()
        while not value and time.monotonic() < deadline:
            time.sleep(every)
            value = probe()
        return value

    return _wait_for


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_stack: runs without the local stack")


@pytest.fixture(scope="session")
def _stack_checked(settings: Settings) -> None:
    from clickpulse.stack.components import all_components

    down = [c.name for c in all_components(settings) if not c.process.healthy()]
    if down:
        pytest.exit(f"the local stack is not healthy ({', '.join(down)}): run `nox -s up`", 2)


@pytest.fixture(autouse=True)
def _stack_is_up(request: pytest.FixtureRequest) -> None:
    """Every test needs the running stack, except those marked `no_stack` (pure logic)."""
    if request.node.get_closest_marker("no_stack") is None:
        request.getfixturevalue("_stack_checked")


@pytest.fixture
def some_requests(settings: Settings) -> int:
    """A few catalogue reads (traced): requests for tests that need some, without the
    session's `traffic` (its failed request must be among the newest 5xx when the dashboards'
    tests run, so it is made by the first test that needs it, not earlier)."""
    with httpx.Client(base_url=crud_url(settings)) as crud:
        for _ in range(10):
            assert crud.get("/products", params={"limit": 1}).status_code == 200
    return 10


@pytest.fixture(scope="session")
def traffic(settings: Settings, reader: Client) -> dict[str, Any]:
    """A user who views a product, fills a cart and checks out, from eu-west; returns once
    the checkout is queryable in ClickHouse."""
    import httpx

    session_id = f"traffic-{uuid.uuid4().hex[:12]}"
    headers = {"X-Session-Id": session_id, "X-Forwarded-For": "10.3.1.1"}
    with (
        httpx.Client(base_url=f"http://{settings.host}:{settings.ports.crud_api}") as crud,
        httpx.Client(base_url=f"http://{settings.host}:{settings.ports.ecommerce_api}") as shop,
    ):
        user, token = new_user(settings, "Traffic")
        product = crud.post(
            "/products",
            json={"name": "Traffic Lamp", "category": "home", "price": "12.00", "stock": 50},
            headers=bearer(sign_in(settings, "admin@clickpulse.test", settings.admin_password)),
        ).json()
        headers.update(bearer(token))
        assert crud.get(f"/products/{product['id']}", headers=headers).status_code == 200
        # A typo'd product id: every dashboard has some client errors to show.
        assert crud.get("/products/987654321", headers=headers).status_code == 404
        shop.post("/cart", json={"product_id": product["id"], "quantity": 2}, headers=headers)
        order = shop.post("/checkout", headers=headers)
        assert order.status_code == 201, order.text
    failed_trace = _emit_failed_request(settings, session_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # The shop's calls to the CRUD API are spans of another process, flushed in another
        # batch: wait for all five CRUD API traces (the view, the 404, the shop's call for the
        # cart and for the checkout, the failed request), not only for the shop's checkout.
        landed = reader.query(
            "SELECT countIf(endpoint = '/checkout'), countIf(status_code = 500),"
            " uniqExactIf(trace_id, service_name = 'crud-api') = 5"
            " FROM analytics.request_metrics WHERE session_id = {s:String}",
            parameters={"s": session_id},
        ).result_rows[0]
        # The rollups are written by views in the same insert, just after the raw row.
        rolled_up = reader.query(
            "SELECT (SELECT count() FROM analytics.request_metrics)"
            " = (SELECT sum(requests) FROM analytics.request_metrics_1h)"
        ).result_rows[0][0]
        if all(landed) and rolled_up:
            break
        time.sleep(0.2)
    return {
        "session_id": session_id,
        "user": user,
        "product": product,
        "order": order.json(),
        "failed_trace_id": failed_trace,
    }


def _emit_failed_request(settings: Settings, session_id: str) -> str:
    """The services answer 5xx only while a dependency is down (the drills do that): a server
    span of a failed request, as crud-api would send it, goes through the real collector."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, StatusCode

    provider = TracerProvider(
        resource=Resource.create({"service.name": "crud-api", "service.namespace": "clickpulse"})
    )
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"http://{settings.host}:{settings.ports.otlp_grpc}", insecure=True
            )
        )
    )
    with provider.get_tracer("clickpulse.tests").start_as_current_span(
        "GET /products",
        kind=SpanKind.SERVER,
        attributes={
            "http.route": "/products",
            "http.request.method": "GET",
            "http.response.status_code": 500,
            "session.id": session_id,
            "app.region": "eu-west",
        },
    ) as span:
        span.set_status(StatusCode.ERROR)
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id
