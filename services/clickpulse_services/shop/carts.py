"""The cart's hot paths (read it, add to it) as SQLAlchemy Core statements in autocommit.

Through the ORM session, `GET /cart` was BEGIN, a user lookup, the cart query and COMMIT, and
`POST /cart` a locking read and a flush on top: four to six round trips. Here reading is one
statement (the user joined to their lines: no row means no such user), and so is adding: an
upsert on the `one_line_per_product` constraint (atomic without an explicit lock) whose
RETURNING row joins the user's other lines. Both run on the read pool (common/read_pool.py),
not through the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.exceptions import NotFoundException
from sqlalchemy import BindParameter, bindparam, delete, func, select, union_all, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from clickpulse_services.common.models import CartItem, User
from clickpulse_services.common.read_pool import ReadPool, Statement
from clickpulse_services.shop.schemas import CartLine, CartRead

MAX_QUANTITY = 1000

CART_OF_USER = (
    select(User.id, CartItem.id, CartItem.product_id, CartItem.quantity, CartItem.unit_price)
    .outerjoin(CartItem, CartItem.user_id == User.id)
    .where(User.id == bindparam("user_id"))
    .order_by(CartItem.id)
)


def _add_line() -> Any:
    now: BindParameter[datetime] = bindparam("now")
    statement = insert(CartItem).values(
        user_id=bindparam("user_id"),
        product_id=bindparam("product_id"),
        quantity=bindparam("quantity"),
        unit_price=bindparam("unit_price"),
        created_at=now,
        updated_at=now,
    )
    return statement.on_conflict_do_update(
        constraint="one_line_per_product",
        set_={
            "quantity": func.least(CartItem.quantity + statement.excluded.quantity, MAX_QUANTITY),
            "unit_price": statement.excluded.unit_price,
            "updated_at": now,
        },
    )


def _add_line_and_read() -> Any:
    """The upsert, and the cart as `CART_OF_USER` reads it afterwards, in one statement.

    A statement's parts all see the rows as they were before it, so the user's other lines
    come from the tables and the added line from the upsert's RETURNING. Through the engine
    the two statements were ~0.6 of POST /cart's 1.4 ms of the shop's CPU (closed loop, 4
    clients, py-spy); a round trip each, and SQLAlchemy's asyncio layer around each. As one
    statement on the pool, POST /cart takes 0.74 ms."""
    upsert = (
        _add_line()
        .returning(
            CartItem.user_id,
            CartItem.id.label("line_id"),
            CartItem.product_id,
            CartItem.quantity,
            CartItem.unit_price,
        )
        .cte("added")
    )
    others = (
        select(
            User.id.label("user_id"),
            CartItem.id.label("line_id"),
            CartItem.product_id,
            CartItem.quantity,
            CartItem.unit_price,
        )
        .outerjoin(
            CartItem,
            (CartItem.user_id == User.id) & (CartItem.product_id != bindparam("product_id")),
        )
        .where(User.id == bindparam("user_id"))
    )
    return union_all(others, select(upsert)).order_by("line_id")


ADD_LINE_AND_READ = Statement.of(_add_line_and_read())
# Ownership is in the WHERE clause: someone else's line is simply not found. (An UPDATE's
# parameters may not share a column's name.)
SET_QUANTITY = (
    update(CartItem)
    .where(CartItem.id == bindparam("item_id"), CartItem.user_id == bindparam("owner"))
    .values(quantity=bindparam("new_quantity"), updated_at=bindparam("now"))
    .returning(CartItem.product_id)
)
REMOVE_LINE = (
    delete(CartItem)
    .where(CartItem.id == bindparam("item_id"), CartItem.user_id == bindparam("user_id"))
    .returning(CartItem.product_id)
)
USER_EXISTS_READ = Statement.of(select(User.id).where(User.id == bindparam("user_id")))
CART_OF_USER_READ = Statement.of(CART_OF_USER)


def cart_from_rows(user_id: int, rows: Sequence[Any]) -> CartRead:
    lines = [
        CartLine(
            id=line_id,
            product_id=product_id,
            quantity=quantity,
            unit_price=unit_price,
            line_total=unit_price * quantity,
        )
        for _, line_id, product_id, quantity, unit_price in rows
        if line_id is not None
    ]
    return CartRead(
        user_id=user_id,
        items=lines,
        items_count=sum(line.quantity for line in lines),
        total=sum((line.line_total for line in lines), Decimal("0.00")),
    )


class Carts:
    """Writes through the engine; the plain reads on the read pool (common/read_pool.py)."""

    def __init__(self, engine: AsyncEngine, reads: ReadPool) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.reads = reads

    async def get(self, user_id: int) -> CartRead | None:
        """The user's cart; None if there is no such user."""
        rows = await self.reads.fetch(CART_OF_USER_READ, user_id=user_id)
        return cart_from_rows(user_id, rows) if rows else None

    async def _changed_line(self, statement: Any, parameters: dict[str, Any]) -> int | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement, parameters)).first()
        return None if row is None else int(row[0])

    async def set_quantity(self, user_id: int, item_id: int, quantity: int) -> int | None:
        """The line's product id, or None if the user has no such line."""
        parameters = {
            "owner": user_id,
            "item_id": item_id,
            "new_quantity": quantity,
            "now": datetime.now(UTC),
        }
        return await self._changed_line(SET_QUANTITY, parameters)

    async def remove(self, user_id: int, item_id: int) -> int | None:
        """The removed line's product id, or None if the user has no such line."""
        return await self._changed_line(REMOVE_LINE, {"user_id": user_id, "item_id": item_id})

    async def user_exists(self, user_id: int) -> bool:
        return bool(await self.reads.fetch(USER_EXISTS_READ, user_id=user_id))

    async def add(
        self, user_id: int, product_id: int, quantity: int, unit_price: Decimal
    ) -> CartRead | None:
        """Adds `quantity` (capped at 1000 a line) at the catalogue's current price; None if
        there is no such user."""
        parameters = {
            "user_id": user_id,
            "product_id": product_id,
            "quantity": min(quantity, MAX_QUANTITY),
            "unit_price": unit_price,
            "now": datetime.now(UTC),
        }
        try:
            rows = await self.reads.fetch(ADD_LINE_AND_READ, **parameters)
        except asyncpg.ForeignKeyViolationError as exc:  # the user, or (since) the product
            if "user_id" in (exc.constraint_name or ""):
                return None
            raise NotFoundException(detail=f"product {product_id} does not exist") from exc
        return cart_from_rows(user_id, rows)
