"""The e-commerce API's services, process-wide: the cart (shop/carts.py) and orders
(shop/orders.py), both Core statements on the read pool.

Every method acts for one caller, the verified subject of the request's token, and everything
it reads or changes is scoped to that user in the statement itself: someone else's cart line or
order is not found. A token whose user has since been deleted gets a 401 (its data went with
it), found on the path that already missed, so the hot paths pay no extra lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import TypeVar

from advanced_alchemy.service import OffsetPagination
from litestar.exceptions import ClientException, NotFoundException
from litestar.status_codes import HTTP_409_CONFLICT

from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.tokens import unauthorized
from clickpulse_services.shop.carts import Carts
from clickpulse_services.shop.catalogue import Catalogue
from clickpulse_services.shop.orders import MissingProducts, Orders, Shortage
from clickpulse_services.shop.schemas import CartRead, OrderRead

T = TypeVar("T")


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


class OrderService:
    """The caller's orders (shop/orders.py): a checkout, or a direct order, is one transaction
    after the catalogue has confirmed its products."""

    def __init__(self, orders: Orders, catalogue: Catalogue) -> None:
        self.orders = orders
        self.catalogue = catalogue

    async def page(self, caller: Caller, limit: int, offset: int) -> OffsetPagination[OrderRead]:
        found = await self.orders.page(caller.user_id, limit, offset)
        if found is None:
            raise user_gone(caller.user_id)
        items, total = found
        return OffsetPagination(items=items, total=total, limit=limit, offset=offset)

    async def one(self, caller: Caller, order_id: int) -> OrderRead:
        annotate(order_id=order_id)
        order = await self.orders.one(caller.user_id, order_id)
        if order is None:
            if not await self.orders.user_exists(caller.user_id):
                raise user_gone(caller.user_id)
            raise NotFoundException(detail=f"order {order_id} is not one of your orders")
        return order

    async def buy(self, caller: Caller, items: Collection[tuple[int, int]]) -> OrderRead:
        """An order of the given (product, quantity) items, without the cart."""
        if not await self.orders.user_exists(caller.user_id):
            raise user_gone(caller.user_id)
        lines: dict[int, int] = {}
        for product_id, quantity in items:
            lines[product_id] = min(lines.get(product_id, 0) + quantity, 100_000)
        await self.catalogue.products(lines, headers=caller.forward)
        order = await _placed(self.orders.buy(caller.user_id, lines))
        annotate(
            order_id=order.id,
            transaction_amount=float(order.total),
            cart_items_count=sum(lines.values()),
        )
        return order

    async def checkout(self, caller: Caller) -> OrderRead:
        """The caller's cart becomes an order and is emptied, in one transaction."""
        # The catalogue confirms every product still exists (and joins the trace); prices and
        # stock are then re-read under lock in the transaction, which is what counts.
        product_ids = await self.orders.cart_products(caller.user_id)
        await self.catalogue.products(product_ids, headers=caller.forward)
        order = await _placed(self.orders.checkout(caller.user_id))
        if order is None:
            # A deleted user's cart went with them (its foreign key cascades): only an empty
            # cart needs the round trip that tells the two apart.
            if not await self.orders.user_exists(caller.user_id):
                raise user_gone(caller.user_id)
            raise ClientException(status_code=HTTP_409_CONFLICT, detail="the cart is empty")
        count = sum(line.quantity for line in order.items)
        annotate(order_id=order.id, transaction_amount=float(order.total), cart_items_count=count)
        if len(order.items) == 1:
            annotate(product_id=order.items[0].product_id)
        return order


async def _placed(placing: Awaitable[T]) -> T:
    """The placed order; the products' shortage or absence as the client's error."""
    try:
        return await placing
    except Shortage as exc:
        raise OutOfStock(detail="not enough stock", extra={"shortages": exc.shortages}) from exc
    except MissingProducts as exc:
        raise NotFoundException(detail=f"products {exc.product_ids} do not exist") from exc
