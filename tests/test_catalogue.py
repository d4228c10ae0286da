"""The shop's calls to the product catalogue (the CRUD API over HTTP, shop/catalogue.py): one
trace across both services through the shop's CLIENT span, and what the shop answers when the
CRUD API is slow, gone or limits the caller. The failure modes use a CRUD API and a shop of
their own, beside the stack's, so the stack's services stay as they are."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from conftest import bearer, crud_url, new_user, serve_crud_api, serve_shop, shop_url

from clickpulse.stack.settings import Settings


@pytest.fixture
def product_ids(settings: Settings, admin_token: str) -> list[int]:
    ids = []
    for name in ("Catalogue Kettle", "Catalogue Teapot"):
        body = {"name": name, "category": "home", "price": "7.00", "stock": 100}
        response = httpx.post(
            f"{crud_url(settings)}/products", json=body, headers=bearer(admin_token)
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _trace(reader: Client, session: str, span_name: str) -> list[dict[str, Any]]:
    """Every span of the trace whose shop SERVER span is `span_name` in `session`."""
    rows = reader.query(
        "SELECT ServiceName, SpanKind, SpanName, SpanId, ParentSpanId, SpanAttributes,"
        " StatusCode FROM otel.otel_traces WHERE TraceId IN ("
        "  SELECT TraceId FROM otel.otel_traces WHERE SpanAttributes['session.id'] = {s:String}"
        "  AND ServiceName = 'ecommerce-api' AND SpanName = {n:String})"
        " ORDER BY Timestamp",
        parameters={"s": session, "n": span_name},
    ).named_results()
    return list(rows)


def test_a_cart_action_is_one_trace_through_the_shops_client_span(
    settings: Settings,
    reader: Client,
    product_ids: list[int],
    wait_for: Callable[..., Any],
) -> None:
    user, token = new_user(settings)
    session = f"catalogue-{uuid.uuid4().hex[:12]}"
    headers = {**bearer(token), "X-Session-Id": session, "X-Forwarded-For": "10.4.2.7"}
    with httpx.Client(base_url=shop_url(settings), headers=headers, timeout=30) as shop:
        for product_id in product_ids:
            assert shop.post("/cart", json={"product_id": product_id}).status_code == 201
        assert shop.post("/checkout").status_code == 201

    spans = wait_for(lambda: len(s := _trace(reader, session, "POST /checkout")) >= 3 and s)
    assert [(s["ServiceName"], s["SpanKind"], s["SpanName"]) for s in spans] == [
        ("ecommerce-api", "Server", "POST /checkout"),
        ("ecommerce-api", "Client", "GET"),
        ("crud-api", "Server", "GET /products"),
    ]
    server, client, crud = spans
    # One tree: the CRUD API's span is a child of the shop's call, itself a child of the shop's
    # request (the W3C trace context went along with the call).
    assert client["ParentSpanId"] == server["SpanId"]
    assert crud["ParentSpanId"] == client["SpanId"]
    # The stable HTTP semantic conventions (OTEL_SEMCONV_STABILITY_OPT_IN=http), not the old
    # names (http.status_code, http.url, net.peer.name).
    first, second = sorted(product_ids)
    assert client["SpanAttributes"] == {
        "http.request.method": "GET",
        "http.response.status_code": "200",
        "server.address": settings.host,
        "server.port": str(settings.ports.crud_api),
        "url.full": f"{crud_url(settings)}/products?ids={first}&ids={second}&limit=2",
    }
    assert client["StatusCode"] == "Unset"
    # The caller's token, session and address went along too: the CRUD API saw the same user.
    assert crud["SpanAttributes"]["user.id"] == str(user["id"])
    assert crud["SpanAttributes"]["session.id"] == session
    assert crud["SpanAttributes"]["client.address"] == "10.4.2.7"

    added = wait_for(lambda: len(s := _trace(reader, session, "POST /cart")) >= 6 and s)
    client_spans = [s for s in added if s["SpanKind"] == "Client"]
    assert sorted(s["SpanAttributes"]["url.full"] for s in client_spans) == sorted(
        f"{crud_url(settings)}/products/{pid}" for pid in product_ids
    )


@pytest.fixture
def own_crud_api(settings: Settings) -> Iterator[tuple[str, Any]]:
    with serve_crud_api(settings) as served:
        yield served


@contextlib.contextmanager
def _signed_in_shop(
    url: str, token: str, session: str, wait_for: Callable[..., Any]
) -> Iterator[httpx.Client]:
    headers = {**bearer(token), "X-Session-Id": session}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as shop:
        # A new shop accepts tokens once it has fetched the CRUD API's keys (at startup).
        assert wait_for(lambda: shop.get("/cart").status_code == 200, timeout=30)
        yield shop


def test_a_frozen_catalogue_is_a_quick_503_and_the_shop_recovers(
    settings: Settings,
    reader: Client,
    own_crud_api: tuple[str, Any],
    product_ids: list[int],
    wait_for: Callable[..., Any],
) -> None:
    catalogue, crud_process = own_crud_api
    _, token = new_user(settings)
    session = f"frozen-{uuid.uuid4().hex[:12]}"
    env = {"CLICKPULSE_CATALOGUE_TIMEOUT": "0.5"}
    with (
        serve_shop(settings, catalogue, env=env) as (url, _),
        _signed_in_shop(url, token, session, wait_for) as shop,
    ):
        assert shop.post("/cart", json={"product_id": product_ids[0]}).status_code == 201
        # Stopped, not gone: connections are accepted by the kernel, nothing answers.
        crud_process.suspend()
        try:
            started = time.monotonic()
            frozen = shop.post("/cart", json={"product_id": product_ids[1]})
            took = time.monotonic() - started
        finally:
            crud_process.resume()
        assert frozen.status_code == 503, frozen.text
        assert frozen.headers["Retry-After"] == "1"
        assert frozen.json()["detail"] == (
            "the product catalogue (CRUD API) did not answer within 0.5 s"
        )
        # One deadline for the whole call, not one per phase of it.
        assert 0.5 <= took < 1.2, took
        # The connection given up on is not reused; the next call is served.
        again = shop.post("/cart", json={"product_id": product_ids[1]})
        assert again.status_code == 201, again.text

    def failed() -> list[dict[str, Any]]:
        spans = _trace(reader, session, "POST /cart")
        return [s for s in spans if s["StatusCode"] == "Error"]

    # The call cancelled at the deadline still ends its span, as an error, so it is exported
    # in the trace of the shop's 503.
    spans = wait_for(lambda: len(s := failed()) >= 2 and s)
    assert [(s["SpanKind"], s["ParentSpanId"] == "") for s in spans] == [
        ("Server", True),
        ("Client", False),
    ]
    server, client = spans
    assert server["SpanAttributes"]["http.response.status_code"] == "503"
    assert client["ParentSpanId"] == server["SpanId"]
    assert client["SpanAttributes"]["error.type"] == "CancelledError"
    assert "http.response.status_code" not in client["SpanAttributes"]


def test_a_stopped_catalogue_is_a_503_naming_it(
    settings: Settings,
    own_crud_api: tuple[str, Any],
    product_ids: list[int],
    wait_for: Callable[..., Any],
) -> None:
    catalogue, crud_process = own_crud_api
    _, token = new_user(settings)
    session = f"stopped-{uuid.uuid4().hex[:12]}"
    with (
        serve_shop(settings, catalogue) as (url, _),
        _signed_in_shop(url, token, session, wait_for) as shop,
    ):
        # A kept-alive connection in the shop's pool first, then the CRUD API goes away.
        assert shop.post("/cart", json={"product_id": product_ids[0]}).status_code == 201
        crud_process.terminate()
        crud_process.wait(30)
        started = time.monotonic()
        gone = shop.post("/cart", json={"product_id": product_ids[1]})
        took = time.monotonic() - started
    assert gone.status_code == 503, gone.text
    assert gone.headers["Retry-After"] == "1"
    assert gone.json()["detail"] == (
        "the product catalogue (CRUD API) is unavailable: ClientConnectorError"
    )
    # Refused at once, well within the 2 s timeout.
    assert took < 0.5, took


def test_the_catalogues_429_for_the_caller_is_the_callers_429(
    settings: Settings, product_ids: list[int], wait_for: Callable[..., Any]
) -> None:
    env = {"CLICKPULSE_RATE_LIMIT_USER": "3/minute"}
    _, token = new_user(settings)
    session = f"limited-{uuid.uuid4().hex[:12]}"
    with (
        serve_crud_api(settings, env=env) as (catalogue, _),
        serve_shop(settings, catalogue) as (url, _),
        _signed_in_shop(url, token, session, wait_for) as shop,
    ):
        # The shop forwards the caller's token: the CRUD API counts these against them.
        added = [shop.post("/cart", json={"product_id": product_ids[0]}) for _ in range(4)]
        missing = shop.post("/cart", json={"product_id": 2**31 - 1})
    assert [r.status_code for r in added] == [201, 201, 201, 429]
    limited = added[-1]
    # The CRUD API's limit for this caller comes first; the shop's own limiter adds its own
    # (1200/minute) after it.
    assert limited.headers.get_list("RateLimit-Limit")[0] == "3"
    assert limited.headers.get_list("RateLimit-Remaining")[0] == "0"
    assert limited.headers.get_list("RateLimit-Policy")[0] == "3; w=60"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # Still limited: the CRUD API answers 429 before it looks for the product, and so does the
    # shop (not a 404).
    assert missing.status_code == 429


def test_a_product_the_catalogue_does_not_have_is_a_404(settings: Settings) -> None:
    _, token = new_user(settings)
    with httpx.Client(base_url=shop_url(settings), headers=bearer(token), timeout=30) as shop:
        missing = shop.post("/cart", json={"product_id": 2**31 - 1})
        ordered = shop.post("/orders", json={"items": [{"product_id": 2**31 - 1, "quantity": 1}]})
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"product {2**31 - 1} does not exist"
    assert ordered.status_code == 404
    assert ordered.json()["detail"] == f"products [{2**31 - 1}] do not exist"
