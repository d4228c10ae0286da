"""The hot reads' asyncpg pool (common/read_pool.py) against the stack's real PostgreSQL: an
outage, a full pool and a refused value answer as they did through SQLAlchemy (503, 503 with
Retry-After, 400), and a lost connection costs one request, not one per pooled connection."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from clickpulse_services.common.database import EXCEPTION_HANDLERS
from clickpulse_services.common.read_pool import ReadPool, ReadPoolTimeout, Statement
from clickpulse_services.crud.reads import PRODUCT_BY_ID, PRODUCT_PAGES, Reads
from clickpulse_services.shop.carts import Carts
from conftest import new_user
from litestar.exceptions import NotFoundException
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import bindparam, literal_column, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from clickpulse.stack.processes import free_port
from clickpulse.stack.settings import Settings

SLEEP = Statement.of(select(literal_column("1")).where(text("pg_sleep(:s) IS NOT NULL")))
ECHO = Statement.of(select(bindparam("value", type_=None).label("value")))


def _answer(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The response the services' exception handlers give for `exc`."""
    handler = next(h for kind, h in EXCEPTION_HANDLERS.items() if isinstance(exc, kind))  # type: ignore[arg-type]
    response = handler(None, exc)  # type: ignore[arg-type, operator]
    headers = {k.lower(): v for k, v in response.headers.items()}
    return response.status_code, json.loads(json.dumps(response.content)), headers


async def _failure(pool: ReadPool, statement: Statement, **parameters: Any) -> Exception:
    try:
        await pool.fetch(statement, **parameters)
    except Exception as exc:
        return exc
    raise AssertionError("the read succeeded")


def test_statements_compile_to_positional_sql_with_their_own_values() -> None:
    assert PRODUCT_BY_ID.names == ("id",) and "$1" in PRODUCT_BY_ID.sql
    page, _ = PRODUCT_PAGES[(True, True)]
    # One array parameter for the ids, the category once though the count repeats it.
    assert page.names == ("category", "ids", "limit", "offset"), page.names
    assert "ANY ($2::BIGINT[])" in page.sql
    assert page.arguments({"category": "home", "ids": [1], "limit": 2, "offset": 0}) == [
        "home",
        [1],
        2,
        0,
    ]


def test_an_unreachable_database_is_503_and_the_service_started_anyway() -> None:
    async def run() -> Exception:
        pool = ReadPool(f"postgresql+asyncpg://u:p@127.0.0.1:{free_port()}/db", 4, 1)
        await pool.open()  # nothing listens there: opening does not connect
        try:
            return await _failure(pool, PRODUCT_BY_ID, id=1)
        finally:
            await pool.close()

    status, body, _ = _answer(asyncio.run(run()))
    assert status == 503 and "unavailable" in body["detail"], body


def test_a_full_pool_answers_503_with_retry_after_within_its_timeout(settings: Settings) -> None:
    async def run() -> tuple[Exception, float]:
        pool = ReadPool(settings.postgres_dsn, 1, 0.3)
        await pool.open()
        try:
            busy = asyncio.create_task(pool.fetch(SLEEP, s=2))
            await asyncio.sleep(0.3)
            started = asyncio.get_running_loop().time()
            exc = await _failure(pool, PRODUCT_BY_ID, id=1)
            waited = asyncio.get_running_loop().time() - started
            await busy
            return exc, waited
        finally:
            await pool.close()

    exc, waited = asyncio.run(run())
    assert isinstance(exc, ReadPoolTimeout)
    assert 0.25 < waited < 1.5, waited
    with TracerProvider().get_tracer(__name__).start_as_current_span("GET") as span:
        status, body, headers = _answer(exc)
    assert status == 503 and "over capacity" in body["detail"] and headers["retry-after"]
    # Its span tells it apart from admission control's sheds.
    assert span.attributes is not None
    assert span.attributes["app.shed.reason"] == "db_pool_timeout"


def test_a_value_postgresql_refuses_is_400(settings: Settings) -> None:
    async def run() -> Exception:
        pool = ReadPool(settings.postgres_dsn, 1, 1)
        await pool.open()
        try:
            return await _failure(pool, ECHO, value="nul \x00 byte")
        finally:
            await pool.close()

    exc = asyncio.run(run())
    status, body, _ = _answer(exc)
    assert status == 400 and "NUL" in body["detail"], (exc, body)


def test_after_postgresql_ends_every_connection_reads_fail_503_then_recover(
    settings: Settings,
) -> None:
    """As after a PostgreSQL restart: the pooled connections are dead. asyncpg notices most
    when the server closes them; one that it has not noticed fails its read with 503 (never
    a 500: asyncpg's InternalClientError included) and the whole pool is marked for
    replacement, so at most one read fails and every read after it succeeds."""
    dsn = settings.postgres_dsn.replace("postgresql+asyncpg", "postgresql")

    async def run() -> list[Exception | int]:
        name = f"read-pool-test-{uuid.uuid4().hex[:8]}"
        pool = ReadPool(settings.postgres_dsn, 3, 1, application_name=name)
        await pool.open()
        reads = Reads(pool)
        try:
            await asyncio.gather(*(pool.fetch(SLEEP, s=0.2) for _ in range(3)))
            assert pool.in_use() == 0
            admin = await asyncpg.connect(dsn)
            try:
                ended = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = $1",
                    name,
                )
            finally:
                await admin.close()
            assert ended == 3, ended
            outcomes: list[Exception | int] = []
            for _ in range(5):
                try:
                    outcomes.append((await reads.products(limit=1, offset=0)).limit)
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes
        finally:
            await pool.close()

    outcomes = asyncio.run(run())
    failures = [o for o in outcomes if isinstance(o, Exception)]
    assert len(failures) <= 1 and outcomes[-4:] == [1, 1, 1, 1], outcomes
    for failure in failures:
        status, body, _ = _answer(failure)
        assert status == 503 and "unavailable" in body["detail"], (failure, body)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_cart_add_is_one_statement_that_answers_the_whole_cart(settings: Settings) -> None:
    """`Carts.add` (shop/carts.py): the upsert and the cart read after it in one statement on
    the pool. A second add of a product raises its line, the other lines come along, and a
    foreign key tells a user who is gone (None) from a product that is gone (404)."""
    user, _ = new_user(settings)

    async def run() -> tuple[Any, ...]:
        pool = ReadPool(settings.postgres_dsn, 2, 1)
        await pool.open()
        engine = create_async_engine(settings.postgres_dsn)  # Carts' other writes; unused here
        carts = Carts(engine, pool)
        try:
            products = await pool.fetch(
                Statement.of(text("SELECT id FROM products ORDER BY id LIMIT 2"))
            )
            a, b = (row[0] for row in products)
            first = await carts.add(user["id"], b, 2, Decimal("3.50"))
            second = await carts.add(user["id"], a, 1, Decimal("1.25"))
            third = await carts.add(user["id"], b, 1, Decimal("4.00"))
            gone_user = await carts.add(987_654_321, a, 1, Decimal("1.00"))
            try:
                await carts.add(user["id"], 987_654_321, 1, Decimal("1.00"))
                gone_product: Exception | None = None
            except NotFoundException as exc:
                gone_product = exc
            return a, b, first, second, third, gone_user, gone_product
        finally:
            await pool.close()
            await engine.dispose()

    a, b, first, second, third, gone_user, gone_product = asyncio.run(run())
    assert [(line.product_id, line.quantity) for line in first.items] == [(b, 2)]
    assert sorted((line.product_id, line.quantity) for line in second.items) == [(a, 1), (b, 2)]
    # The line of b keeps its id and place, takes the new price, and the total follows.
    assert [(line.product_id, line.quantity) for line in third.items] == [
        (line.product_id, 3 if line.product_id == b else 1) for line in second.items
    ]
    assert third.items_count == 4 and third.total == Decimal("4.00") * 3 + Decimal("1.25")
    assert gone_user is None
    assert gone_product is not None and "987654321" in str(gone_product.detail)
