"""One controller per resource of the e-commerce API. Callers identify themselves with the
`X-User-Id` header (this demo has no authentication; a real deployment derives it from a token)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.service import OffsetPagination
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clickpulse_services.common.client_identity import SESSION_HEADER, USER_HEADER, client_address
from clickpulse_services.common.models import CartItem, Order
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.web import Id, Limit, Offset
from clickpulse_services.shop.carts import Carts, cart_from_rows
from clickpulse_services.shop.catalogue import Catalogue
from clickpulse_services.shop.schemas import (
    CartAdd,
    CartRead,
    CartUpdate,
    OrderCreate,
    OrderLine,
    OrderRead,
)
from clickpulse_services.shop.services import (
    OrderService,
    checkout,
    ensure_user,
    place_order,
)

UserId = Annotated[
    int,
    Parameter(header="X-User-Id", ge=1, le=2**63 - 1, description="the calling user's id"),
]


def _forwarded(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Headers for calls to the CRUD API: same user and session, and the original client address
    (this service is a trusted proxy for it)."""
    settings: ServiceSettings = request.app.state.settings
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)
    headers = {"x-forwarded-for": address}
    for name in (USER_HEADER, SESSION_HEADER):
        if value := request.headers.get(name):
            headers[name] = value
    return headers


async def _confirm_in_catalogue(
    request: Request[Any, Any, Any], product_ids: Collection[int]
) -> None:
    """The catalogue confirms every product still exists (and joins the trace); prices and
    stock are then re-read under lock in the order's transaction, which is what counts."""
    catalogue: Catalogue = request.app.state.catalogue
    await catalogue.products(product_ids, headers=_forwarded(request))


async def _cart(session: AsyncSession, user_id: int) -> CartRead:
    """The cart as the ORM session sees it, inside a transaction that changed it."""
    rows = (
        await session.execute(
            select(
                CartItem.user_id,
                CartItem.id,
                CartItem.product_id,
                CartItem.quantity,
                CartItem.unit_price,
            )
            .where(CartItem.user_id == user_id)
            .order_by(CartItem.id)
        )
    ).all()
    return _counted(cart_from_rows(user_id, rows))


def _counted(cart: CartRead) -> CartRead:
    annotate(cart_items_count=cart.items_count)
    return cart


def _carts(state: State) -> Carts:
    return Carts(state.engine)


def _order(order: Order) -> OrderRead:
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


class CartController(Controller):
    path = "/cart"
    tags = ["cart"]
    # Built once per process (use_cache): the hot paths resolve no per-request dependency.
    dependencies = {"carts": Provide(_carts, use_cache=True, sync_to_thread=False)}

    @get(operation_id="GetCart")
    async def get_cart(self, carts: Carts, user_id: UserId) -> CartRead:
        return _counted(await carts.get(user_id))

    @post(operation_id="AddToCart", status_code=HTTP_201_CREATED)
    async def add_to_cart(
        self, request: Request[Any, Any, Any], carts: Carts, user_id: UserId, data: CartAdd
    ) -> CartRead:
        catalogue: Catalogue = request.app.state.catalogue
        product = await catalogue.product(data.product_id, headers=_forwarded(request))
        annotate(product_id=product.id, product_category=product.category)
        return _counted(await carts.add(user_id, product.id, data.quantity, product.price))

    @put("/{item_id:int}", operation_id="UpdateCartItem")
    async def update_cart_item(
        self, db_session: AsyncSession, user_id: UserId, item_id: Id, data: CartUpdate
    ) -> CartRead:
        line = await db_session.get(CartItem, item_id, with_for_update=True)
        if line is None or line.user_id != user_id:
            raise NotFoundException(detail=f"cart item {item_id} is not in user {user_id}'s cart")
        line.quantity = data.quantity
        annotate(product_id=line.product_id)
        await db_session.flush()
        return await _cart(db_session, user_id)

    @delete("/{item_id:int}", operation_id="RemoveCartItem", status_code=HTTP_204_NO_CONTENT)
    async def remove_cart_item(
        self, db_session: AsyncSession, user_id: UserId, item_id: Id
    ) -> None:
        line = await db_session.get(CartItem, item_id)
        if line is None or line.user_id != user_id:
            raise NotFoundException(detail=f"cart item {item_id} is not in user {user_id}'s cart")
        annotate(product_id=line.product_id)
        await db_session.delete(line)


class CheckoutController(Controller):
    path = "/checkout"
    tags = ["checkout"]

    @post(operation_id="Checkout", status_code=HTTP_201_CREATED)
    async def checkout(
        self, request: Request[Any, Any, Any], db_session: AsyncSession, user_id: UserId
    ) -> OrderRead:
        await ensure_user(db_session, user_id)
        product_ids = (
            await db_session.scalars(
                select(CartItem.product_id).where(CartItem.user_id == user_id).distinct()
            )
        ).all()
        await _confirm_in_catalogue(request, product_ids)
        order, count = await checkout(db_session, user_id)
        annotate(order_id=order.id, transaction_amount=float(order.total), cart_items_count=count)
        if len(order.items) == 1:
            annotate(product_id=order.items[0].product_id)
        return _order(order)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]
    dependencies = {"orders": Provide(create_service_provider(OrderService))}

    @get(operation_id="ListOrders", summary="The user's orders, newest first")
    async def list_orders(
        self,
        orders: OrderService,
        db_session: AsyncSession,
        user_id: UserId,
        limit: Limit,
        offset: Offset,
    ) -> OffsetPagination[OrderRead]:
        await ensure_user(db_session, user_id)
        page = LimitOffset(limit=limit, offset=offset)
        results, total = await orders.list_and_count(page, OrderBy("id", "desc"), user_id=user_id)
        return OffsetPagination(
            items=[_order(o) for o in results], total=total, limit=limit, offset=offset
        )

    @post(
        operation_id="CreateOrder",
        status_code=HTTP_201_CREATED,
        summary="Buy the given items directly, without the cart",
    )
    async def create_order(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        user_id: UserId,
        data: OrderCreate,
    ) -> OrderRead:
        await ensure_user(db_session, user_id)
        lines: dict[int, int] = {}
        for line in data.items:
            lines[line.product_id] = min(lines.get(line.product_id, 0) + line.quantity, 100_000)
        await _confirm_in_catalogue(request, lines)
        order = await place_order(db_session, user_id, lines)
        annotate(
            order_id=order.id,
            transaction_amount=float(order.total),
            cart_items_count=sum(lines.values()),
        )
        return _order(order)

    @get("/{order_id:int}", operation_id="GetOrder")
    async def get_order(self, db_session: AsyncSession, user_id: UserId, order_id: Id) -> OrderRead:
        annotate(order_id=order_id)
        order = await db_session.get(Order, order_id)
        if order is None or order.user_id != user_id:
            raise NotFoundException(detail=f"order {order_id} of user {user_id} does not exist")
        return _order(order)
