"""The two services through real HTTP, and what each request becomes in ClickHouse."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from conftest import bearer, new_user

from clickpulse.stack.settings import Settings


@pytest.fixture(scope="module")
def crud(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{settings.host}:{settings.ports.crud_api}") as client:
        yield client


@pytest.fixture(scope="module")
def shop(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://{settings.host}:{settings.ports.ecommerce_api}", timeout=30
    ) as client:
        yield client


@pytest.fixture
def identity() -> dict[str, str]:
    """A session from eu-west (10.3.0.0/16 in the default region table)."""
    return {"X-Session-Id": f"sess-{uuid.uuid4().hex}", "X-Forwarded-For": "10.3.7.9"}


@pytest.fixture(scope="module")
def as_admin(admin_token: str) -> dict[str, str]:
    return bearer(admin_token)


def _product(
    crud: httpx.Client, as_admin: dict[str, str], *, stock: int = 100, price: str = "19.99"
) -> dict[str, Any]:
    response = crud.post(
        "/products",
        json={"name": "Test Widget", "category": "toys", "price": price, "stock": stock},
        headers=as_admin,
    )
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


def _rows(
    reader: Client, session_id: str, expected: int, wait_for: Callable[..., Any]
) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        result = reader.query(
            "SELECT * FROM analytics.request_metrics WHERE session_id = {s:String} "
            "ORDER BY timestamp",
            parameters={"s": session_id},
        )
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    rows: list[dict[str, Any]] = wait_for(
        lambda: (r := fetch()) and len(r) >= expected and r, timeout=60
    )
    return rows or fetch()


def test_crud_endpoints_become_rows_with_route_templates(
    settings: Settings,
    crud: httpx.Client,
    reader: Client,
    identity: dict[str, str],
    as_admin: dict[str, str],
    wait_for: Callable[..., Any],
) -> None:
    user, token = new_user(settings)
    headers = {**identity, **bearer(token), "User-Agent": "clickpulse-tests/1.0"}
    admin = {**identity, **as_admin, "User-Agent": "clickpulse-tests/1.0"}
    product = _product(crud, as_admin)
    pid = product["id"]
    calls = [
        crud.get("/users/me", headers=headers),
        crud.get(f"/users/{user['id']}", headers=headers),
        crud.get("/products", params={"category": "toys"}, headers=headers),
        crud.get(f"/products/{pid}", headers=headers),
        crud.put(f"/products/{pid}", json={"stock": 7}, headers=admin),
        crud.get("/products/999999999", headers=headers),
        crud.get("/users", params={"limit": 5}, headers=headers),
    ]
    assert [c.status_code for c in calls] == [200, 200, 200, 200, 200, 404, 403]
    assert crud.delete(f"/products/{pid}", headers=admin).status_code == 204

    rows = _rows(reader, identity["X-Session-Id"], 8, wait_for)
    assert [(r["method"], r["endpoint"], r["status_code"]) for r in rows] == [
        ("GET", "/users/me", 200),
        ("GET", "/users/{user_id}", 200),
        ("GET", "/products", 200),
        ("GET", "/products/{product_id}", 200),
        ("PUT", "/products/{product_id}", 200),
        ("GET", "/products/{product_id}", 404),
        ("GET", "/users", 403),
        ("DELETE", "/products/{product_id}", 204),
    ]
    admin_id = crud.get("/users/me", headers=as_admin).json()["id"]
    # The user on each row is the token's subject.
    assert [r["user_id"] for r in rows] == [str(user["id"])] * 4 + [str(admin_id)] + [
        str(user["id"])
    ] * 2 + [str(admin_id)]
    for row in rows:
        assert row["service_name"] == "crud-api"
        assert row["client_ip"] == "10.3.7.9"
        assert row["region"] == "eu-west"
        assert row["user_agent"] == "clickpulse-tests/1.0"
        assert row["response_time_ms"] > 0
        assert len(row["trace_id"]) == 32
    assert rows[3]["product_id"] == pid and rows[3]["product_category"] == "toys"
    assert rows[3]["product_name"] == "Test Widget"
    assert rows[2]["response_size"] > 0
    assert rows[4]["request_size"] == len(b'{"stock":7}')
    assert rows[2]["transaction_amount"] is None and rows[2]["cart_items_count"] is None


def test_cart_and_checkout_become_rows_with_business_fields_and_one_trace(
    settings: Settings,
    crud: httpx.Client,
    shop: httpx.Client,
    reader: Client,
    identity: dict[str, str],
    as_admin: dict[str, str],
    wait_for: Callable[..., Any],
) -> None:
    user, token = new_user(settings)
    user_id = user["id"]
    headers = {**identity, **bearer(token)}
    a, b = _product(crud, as_admin, price="10.50"), _product(crud, as_admin, price="3.25")
    added = shop.post("/cart", json={"product_id": a["id"], "quantity": 2}, headers=headers)
    assert added.status_code == 201, added.text
    shop.post("/cart", json={"product_id": b["id"], "quantity": 1}, headers=headers)
    cart = shop.get("/cart", headers=headers).json()
    assert cart["items_count"] == 3 and Decimal(cart["total"]) == Decimal("24.25")
    line = cart["items"][1]["id"]
    assert shop.put(f"/cart/{line}", json={"quantity": 2}, headers=headers).status_code == 200
    order = shop.post("/checkout", headers=headers)
    assert order.status_code == 201, order.text
    body = order.json()
    assert Decimal(body["total"]) == Decimal("27.50")
    assert shop.get("/cart", headers=headers).json()["items"] == []
    assert shop.get(f"/orders/{body['id']}", headers=headers).status_code == 200
    assert shop.get("/orders", headers=headers).json()["total"] == 1
    assert crud.get(f"/products/{a['id']}").json()["stock"] == 98
    again = shop.post("/cart", json={"product_id": b["id"]}, headers=headers).json()
    assert shop.delete(f"/cart/{again['items'][0]['id']}", headers=headers).status_code == 204
    direct = shop.post(
        "/orders", json={"items": [{"product_id": b["id"], "quantity": 3}]}, headers=headers
    )
    assert direct.status_code == 201 and Decimal(direct.json()["total"]) == Decimal("9.75")
    # Newest first, each order as it was answered when placed (lines in product order), the
    # total on every page, past the last one too. (Outside the session: not in its rows.)
    user_only = bearer(token)
    orders = shop.get("/orders", headers=user_only).json()
    assert orders["items"] == [direct.json(), body] and orders["total"] == 2
    assert [line["product_id"] for line in body["items"]] == sorted([a["id"], b["id"]])
    assert shop.get(f"/orders/{body['id']}", headers=user_only).json() == body
    second = shop.get("/orders", params={"limit": 1, "offset": 1}, headers=user_only).json()
    assert second["items"] == [body] and second["total"] == 2
    past = shop.get("/orders", params={"offset": 5}, headers=user_only).json()
    assert past["items"] == [] and past["total"] == 2

    rows = _rows(reader, identity["X-Session-Id"], 17, wait_for)
    edge = [r for r in rows if r["service_name"] == "ecommerce-api"]
    assert [(r["method"], r["endpoint"], r["status_code"]) for r in edge] == [
        ("POST", "/cart", 201),
        ("POST", "/cart", 201),
        ("GET", "/cart", 200),
        ("PUT", "/cart/{item_id}", 200),
        ("POST", "/checkout", 201),
        ("GET", "/cart", 200),
        ("GET", "/orders/{order_id}", 200),
        ("GET", "/orders", 200),
        ("POST", "/cart", 201),
        ("DELETE", "/cart/{item_id}", 204),
        ("POST", "/orders", 201),
    ]
    bought = edge[-1]
    assert bought["transaction_amount"] == pytest.approx(9.75)
    assert bought["cart_items_count"] == 3 and bought["order_id"] == direct.json()["id"]
    checkout = edge[4]
    assert checkout["transaction_amount"] == pytest.approx(27.50)
    assert checkout["cart_items_count"] == 4
    assert checkout["order_id"] == body["id"]
    assert edge[0]["product_id"] == a["id"] and edge[0]["product_category"] == "toys"
    assert edge[0]["product_name"] == "Test Widget"
    assert edge[2]["cart_items_count"] == 3
    assert all(r["region"] == "eu-west" and r["user_id"] == str(user_id) for r in edge)

    # The checkout asked the CRUD API for its products: one trace across both services.
    services = reader.query(
        "SELECT groupUniqArray(ServiceName) FROM otel.otel_traces WHERE TraceId = {t:String}",
        parameters={"t": checkout["trace_id"]},
    ).result_rows[0][0]
    assert sorted(services) == ["crud-api", "ecommerce-api"]
    crud_rows = [
        r for r in rows if r["trace_id"] == checkout["trace_id"] and r["service_name"] == "crud-api"
    ]
    # One call for the whole cart, not one per product.
    assert [r["endpoint"] for r in crud_rows] == ["/products"]
    # The shop forwards the caller's token and address: the CRUD API sees the same user.
    assert all(r["client_ip"] == "10.3.7.9" and r["user_id"] == str(user_id) for r in crud_rows)


def test_fifty_concurrent_checkouts_for_the_last_unit_sell_it_once(
    crud: httpx.Client, settings: Settings, as_admin: dict[str, str]
) -> None:
    product = _product(crud, as_admin, stock=1)
    users = [new_user(settings)[1] for _ in range(50)]
    base = f"http://{settings.host}:{settings.ports.ecommerce_api}"

    async def buy_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for user in users:
                r = await client.post(
                    "/cart", json={"product_id": product["id"]}, headers=bearer(user)
                )
                assert r.status_code == 201, r.text

            async def checkout(user: str) -> httpx.Response:
                # 50 at once is past the shop's in-flight limit (32 a process): the ones shed
                # come back after Retry-After, as a well-behaved client does.
                while (
                    r := await client.post("/checkout", headers=bearer(user))
                ).status_code == 503:
                    await asyncio.sleep(float(r.headers["Retry-After"]))
                return r

            return await asyncio.gather(*(checkout(u) for u in users))

    responses = asyncio.run(buy_all())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 49, statuses
    assert "not enough stock" in next(r for r in responses if r.status_code == 409).text
    assert crud.get(f"/products/{product['id']}").json()["stock"] == 0


@pytest.mark.parametrize(
    ("service", "method", "path", "kwargs", "status", "needle"),
    [
        ("crud", "GET", "/users/987654321", {"headers": "user"}, 404, "user 987654321"),
        ("crud", "GET", "/products/abc", {}, 404, ""),
        ("crud", "GET", "/users", {"params": {"limit": 1000}}, 400, "<= 100"),
        ("crud", "GET", "/users", {"params": {"offset": -1}}, 400, ">= 0"),
        ("crud", "POST", "/users", {"content": b"{not json"}, 400, "malformed"),
        (
            "crud",
            "POST",
            "/users",
            {"json": {"email": "nope", "name": "x", "password": "long enough"}},
            400,
            "email",
        ),
        (
            "crud",
            "POST",
            "/users",
            {"json": {"email": "a@b.co", "name": "x", "password": "short"}},
            400,
            "password",
        ),
        (
            "crud",
            "POST",
            "/products",
            {"json": {"name": "x", "category": "toys", "price": "-1"}},
            400,
            "price",
        ),
        ("crud", "PUT", "/products/987654321", {"json": {"stock": 1}}, 404, ""),
        ("crud", "POST", "/demo/generate-users", {"json": {"count": 100000}}, 400, "count"),
        ("shop", "GET", "/cart", {}, 401, "bearer token"),
        (
            "shop",
            "POST",
            "/cart",
            {"headers": "user", "json": {"product_id": 1, "quantity": -2}},
            400,
            "quantity",
        ),
        (
            "shop",
            "POST",
            "/cart",
            {"headers": "user", "content": b"[1,"},
            400,
            "truncated",
        ),
        (
            "shop",
            "GET",
            "/orders/987654321",
            {"headers": "user"},
            404,
            "order 987654321 is not one of your orders",
        ),
        (
            "shop",
            "GET",
            "/orders",
            {"headers": "user", "params": {"limit": 101}},
            400,
            "<= 100",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    settings: Settings,
    as_admin: dict[str, str],
    crud: httpx.Client,
    shop: httpx.Client,
    service: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    if kwargs.get("headers") == "user":
        kwargs["headers"] = bearer(new_user(settings)[1])
    elif service == "crud" and (path.startswith(("/products", "/demo")) or path == "/users"):
        kwargs.setdefault("headers", as_admin)
    client = crud if service == "crud" else shop
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    text = response.text
    assert needle in text, text


def test_unknown_product_in_cart_is_404_and_nothing_is_added(
    settings: Settings, shop: httpx.Client
) -> None:
    user = bearer(new_user(settings)[1])
    response = shop.post("/cart", json={"product_id": 987654321}, headers=user)
    assert response.status_code == 404
    assert "product 987654321" in response.text
    assert shop.get("/cart", headers=user).json()["items"] == []


def test_empty_cart_checkout_is_a_conflict(settings: Settings, shop: httpx.Client) -> None:
    response = shop.post("/checkout", headers=bearer(new_user(settings)[1]))
    assert response.status_code == 409
    assert "the cart is empty" in response.text


def test_both_services_serve_openapi_docs(crud: httpx.Client, shop: httpx.Client) -> None:
    for client, path in ((crud, "/products/{product_id}"), (shop, "/checkout")):
        spec = client.get("/docs/openapi.json").json()
        assert path in spec["paths"]
        assert client.get("/docs").status_code == 200


def test_process_and_pool_metrics_land_per_service(
    reader: Client, wait_for: Callable[..., Any]
) -> None:
    wanted = {"process.cpu.utilization", "process.memory.usage", "db.client.connection.count"}

    def landed() -> dict[str, set[str]]:
        rows = reader.query(
            "SELECT ServiceName, groupUniqArray(MetricName) FROM otel.otel_metrics_gauge"
            " WHERE ServiceName IN ('crud-api', 'ecommerce-api') GROUP BY ServiceName"
        ).result_rows
        return {service: set(names) for service, names in rows}

    result = wait_for(
        lambda: (
            (r := landed())
            and all(wanted <= r.get(s, set()) for s in ("crud-api", "ecommerce-api"))
            and r
        ),
        timeout=30,
    )
    assert result, landed()
    memory = reader.query(
        "SELECT max(Value) FROM otel.otel_metrics_gauge"
        " WHERE ServiceName = 'crud-api' AND MetricName = 'process.memory.usage'"
    ).result_rows[0][0]
    assert 10_000_000 < memory < 4_000_000_000
