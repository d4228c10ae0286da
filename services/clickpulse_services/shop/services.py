"""The e-commerce API's services: the cart (Core statements, process-wide) and orders
(advanced-alchemy, one per request: checkout and direct orders are one transaction each).

Every method acts for one caller, the verified subject of the request's token, and everything
it reads or changes is scoped to that user in the statement itself: someone else's cart line or
order is not found. A token whose user has since been deleted gets a 401 (its data went with
it), found on the path that already missed, so the hot paths pay no extra lookup.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import OffsetPagination, SQLAlchemyAsyncRepositoryService
from litestar.exceptions import ClientException, NotFoundException
from litestar.status_codes import HTTP_409_CONFLICT
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from clickpulse_services.common.models import CartItem, Order, OrderItem, Product, User
from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.tokens import unauthorized
from clickpulse_services.shop.carts import Carts
from clickpulse_services.shop.catalogue import Catalogue
from clickpulse_services.shop.schemas import CartRead, OrderLine, OrderRead


class OutOfStock(ClientException):
    status_code = HTTP_409_CONFLICT


@dataclass(frozen=True)
class Caller:
    """The signed-in user a request acts for, and the headers its calls to the CRUD API carry
    (same token and session, and the client's address: this service is a trusted proxy)."""

    user_id: int
    forward: dict[str, str]


def user_gone(user_id: int) -> Exception:
    return unauthorized(f"the token's user {user_id} no longer exists")


def _counted(cart: CartRead) -> CartRead:
    annotate(cart_items_count=cart.items_count)
    return cart


class CartService:
    """The caller's cart: reads and writes in autocommit, one statement each."""

    def __init__(self, carts: Carts, catalogue: Catalogue) -> None:
        self.carts = carts
        self.catalogue = catalogue

    async def get(self, caller: Caller) -> CartRead:
        cart = await self.carts.get(caller.user_id)
        if cart is None:
            raise user_gone(caller.user_id)
        return _counted(cart)

    async def add(self, caller: Caller, product_id: int, quantity: int) -> CartRead:
        """Adds at the catalogue's current price (the CRUD API confirms the product)."""
        product = await self.catalogue.product(product_id, headers=caller.forward)
        annotate(
            product_id=product.id, product_name=product.name, product_category=product.category
        )
        cart = await self.carts.add(caller.user_id, product.id, quantity, product.price)
        if cart is None:
            raise user_gone(caller.user_id)
        return _counted(cart)

    async def set_quantity(self, caller: Caller, item_id: int, quantity: int) -> CartRead:
        product_id = await self.carts.set_quantity(caller.user_id, item_id, quantity)
        if product_id is None:
            raise await self._missing_line(caller, item_id)
        annotate(product_id=product_id)
        return await self.get(caller)

    async def remove(self, caller: Caller, item_id: int) -> None:
        product_id = await self.carts.remove(caller.user_id, item_id)
        if product_id is None:
            raise await self._missing_line(caller, item_id)
        annotate(product_id=product_id)

    async def _missing_line(self, caller: Caller, item_id: int) -> Exception:
        if not await self.carts.user_exists(caller.user_id):
            return user_gone(caller.user_id)
        return NotFoundException(detail=f"cart item {item_id} is not in your cart")


def order_read(order: Order) -> OrderRead:
    return OrderRead(
        id=order.id,
        user_id=order.user_id,
        status=order.status,
        total=order.total,
        created_at=order.created_at,
        items=[
            OrderLine(product_id=i.product_id, quantity=i.quantity, unit_price=i.unit_price)
            for i in sorted(order.items, key=lambda i: i.product_id)
        ],
    )


class OrderService(SQLAlchemyAsyncRepositoryService[Order]):
    """The caller's orders, in the request's session (committed when the response is 2xx)."""

    class Repo(SQLAlchemyAsyncRepository[Order]):
        model_type = Order

    repository_type = Repo
    catalogue: Catalogue

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session
        return session

    async def _ensure_user(self, caller: Caller) -> None:
        if await self.session.get(User, caller.user_id) is None:
            raise user_gone(caller.user_id)

    async def page(self, caller: Caller, limit: int, offset: int) -> OffsetPagination[OrderRead]:
        results, total = await self.list_and_count(
            LimitOffset(limit=limit, offset=offset), OrderBy("id", "desc"), user_id=caller.user_id
        )
        if not total:
            # Only then can the user be gone: a user with orders cannot be deleted (the
            # orders' foreign key), so most pages skip that round trip.
            await self._ensure_user(caller)
        return OffsetPagination(
            items=[order_read(o) for o in results], total=total, limit=limit, offset=offset
        )

    async def one(self, caller: Caller, order_id: int) -> OrderRead:
        annotate(order_id=order_id)
        order = await self.get_one_or_none(id=order_id, user_id=caller.user_id)
        if order is None:
            await self._ensure_user(caller)
            raise NotFoundException(detail=f"order {order_id} is not one of your orders")
        return order_read(order)

    async def buy(self, caller: Caller, items: Collection[tuple[int, int]]) -> OrderRead:
        """An order of the given (product, quantity) items, without the cart."""
        await self._ensure_user(caller)
        lines: dict[int, int] = {}
        for product_id, quantity in items:
            lines[product_id] = min(lines.get(product_id, 0) + quantity, 100_000)
        await self.catalogue.products(lines, headers=caller.forward)
        order = await self._place(caller.user_id, lines)
        annotate(
            order_id=order.id,
            transaction_amount=float(order.total),
            cart_items_count=sum(lines.values()),
        )
        return order_read(order)

    async def checkout(self, caller: Caller) -> OrderRead:
        """The caller's cart becomes an order and is emptied, in one transaction."""
        product_ids = (
            await self.session.scalars(
                select(CartItem.product_id).where(CartItem.user_id == caller.user_id).distinct()
            )
        ).all()
        # The catalogue confirms every product still exists (and joins the trace); prices and
        # stock are then re-read under lock in this transaction, which is what counts.
        await self.catalogue.products(product_ids, headers=caller.forward)
        items = (
            await self.session.scalars(
                select(CartItem).where(CartItem.user_id == caller.user_id).with_for_update()
            )
        ).all()
        if not items:
            # A deleted user's cart went with them (its foreign key cascades): only an empty
            # cart needs the round trip that tells the two apart.
            await self._ensure_user(caller)
            raise ClientException(status_code=HTTP_409_CONFLICT, detail="the cart is empty")
        lines: dict[int, int] = defaultdict(int)
        for item in items:
            lines[item.product_id] += item.quantity
        order = await self._place(caller.user_id, dict(lines))
        await self.session.execute(delete(CartItem).where(CartItem.user_id == caller.user_id))
        count = sum(lines.values())
        annotate(order_id=order.id, transaction_amount=float(order.total), cart_items_count=count)
        if len(order.items) == 1:
            annotate(product_id=order.items[0].product_id)
        return order_read(order)

    async def _place(self, user_id: int, lines: dict[int, int]) -> Order:
        """Re-reads prices and decrements stock under row locks, writes the order and its items.

        Rows are locked in product-id order, so two checkouts sharing products cannot deadlock;
        the stock check happens under the lock, so concurrent checkouts never oversell.
        """
        products = {
            p.id: p
            for p in (
                await self.session.scalars(
                    select(Product)
                    .where(Product.id.in_(lines))
                    .order_by(Product.id)
                    .with_for_update()
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
        self.session.add(order)
        await self.session.flush()
        return order
