"""Cart and order services over advanced-alchemy repositories; checkout is one transaction."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.exceptions import ClientException, NotFoundException
from litestar.status_codes import HTTP_409_CONFLICT
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from clickpulse_services.common.models import CartItem, Order, OrderItem, Product, User


class OutOfStock(ClientException):
    status_code = HTTP_409_CONFLICT


class OrderService(SQLAlchemyAsyncRepositoryService[Order]):
    class Repo(SQLAlchemyAsyncRepository[Order]):
        model_type = Order

    repository_type = Repo


async def ensure_user(session: AsyncSession, user_id: int) -> None:
    if await session.get(User, user_id) is None:
        raise NotFoundException(detail=f"user {user_id} does not exist")


async def place_order(session: AsyncSession, user_id: int, lines: dict[int, int]) -> Order:
    """Re-reads prices and decrements stock under row locks, writes the order and its items.

    Rows are locked in product-id order, so two checkouts sharing products cannot deadlock;
    the stock check happens under the lock, so concurrent checkouts never oversell.
    """
    products = {
        p.id: p
        for p in (
            await session.scalars(
                select(Product).where(Product.id.in_(lines)).order_by(Product.id).with_for_update()
            )
        ).all()
    }
    missing = sorted(set(lines) - set(products))
    if missing:
        raise NotFoundException(detail=f"products {missing} do not exist")
    short = {
        pid: {"requested": qty, "available": products[pid].stock}
        for pid, qty in lines.items()
        if products[pid].stock < qty
    }
    if short:
        raise OutOfStock(detail="not enough stock", extra={"shortages": short})
    total = Decimal("0.00")
    order = Order(user_id=user_id, status="placed", total=Decimal("0.00"))
    for pid in sorted(lines):
        product, qty = products[pid], lines[pid]
        product.stock -= qty
        total += product.price * qty
        order.items.append(OrderItem(product_id=pid, quantity=qty, unit_price=product.price))
    order.total = total
    session.add(order)
    await session.flush()
    return order


async def checkout(session: AsyncSession, user_id: int) -> tuple[Order, int]:
    """The user's cart becomes an order and is emptied, all in the caller's transaction."""
    items = (
        await session.scalars(select(CartItem).where(CartItem.user_id == user_id).with_for_update())
    ).all()
    if not items:
        raise ClientException(status_code=HTTP_409_CONFLICT, detail="the cart is empty")
    lines: dict[int, int] = defaultdict(int)
    for item in items:
        lines[item.product_id] += item.quantity
    order = await place_order(session, user_id, dict(lines))
    await session.execute(delete(CartItem).where(CartItem.user_id == user_id))
    return order, sum(lines.values())
