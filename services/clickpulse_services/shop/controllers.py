"""One controller per resource of the e-commerce API. Every operation acts for the signed-in
caller (the verified subject of the bearer token); each handler makes one service call."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.service import OffsetPagination
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from clickpulse_services.common.auth import current_user, requires_user
from clickpulse_services.common.client_identity import SESSION_HEADER, ClientIdentity
from clickpulse_services.common.openapi import errors
from clickpulse_services.common.web import Id, Limit, Offset
from clickpulse_services.shop.carts import Carts
from clickpulse_services.shop.orders import Orders
from clickpulse_services.shop.schemas import CartAdd, CartRead, CartUpdate, OrderCreate, OrderRead
from clickpulse_services.shop.services import Caller, CartService, OrderService


def _caller(request: Request[Any, Any, Any]) -> Caller:
    clients: ClientIdentity = request.app.state.clients
    address = clients.of(request.scope)[0]
    forward = {"x-forwarded-for": address, "authorization": f"Bearer {request.auth}"}
    if session := request.headers.get(SESSION_HEADER):
        forward[SESSION_HEADER] = session
    return Caller(user_id=current_user(request).id, forward=forward)


def _cart_service(state: State) -> CartService:
    return CartService(Carts(state.engine, state.read_pool), state.catalogue)


def _order_service(state: State) -> OrderService:
    return OrderService(Orders(state.read_pool), state.catalogue)


CALLER = Provide(_caller, sync_to_thread=False)
NO_LINE = "Your cart has no such line"


class CartController(Controller):
    path = "/cart"
    tags = ["cart"]
    guards = [requires_user]
    # Built once per process (use_cache): the hot paths open no ORM session.
    dependencies = {
        "carts": Provide(_cart_service, use_cache=True, sync_to_thread=False),
        "caller": CALLER,
    }

    @get(operation_id="GetCart", summary="Your cart", responses=errors())
    async def get_cart(self, carts: CartService, caller: Caller) -> CartRead:
        return await carts.get(caller)

    @post(
        operation_id="AddToCart",
        summary="Add a product to your cart",
        status_code=HTTP_201_CREATED,
        responses=errors(not_found="No such product"),
    )
    async def add_to_cart(self, carts: CartService, caller: Caller, data: CartAdd) -> CartRead:
        return await carts.add(caller, data.product_id, data.quantity)

    @put(
        "/{item_id:int}",
        operation_id="UpdateCartItem",
        summary="Change a line's quantity",
        responses=errors(not_found=NO_LINE),
    )
    async def update_cart_item(
        self, carts: CartService, caller: Caller, item_id: Id, data: CartUpdate
    ) -> CartRead:
        return await carts.set_quantity(caller, item_id, data.quantity)

    @delete(
        "/{item_id:int}",
        operation_id="RemoveCartItem",
        summary="Remove a line from your cart",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(not_found=NO_LINE),
    )
    async def remove_cart_item(self, carts: CartService, caller: Caller, item_id: Id) -> None:
        await carts.remove(caller, item_id)


class CheckoutController(Controller):
    path = "/checkout"
    tags = ["checkout"]
    guards = [requires_user]
    dependencies = {
        "orders": Provide(_order_service, use_cache=True, sync_to_thread=False),
        "caller": CALLER,
    }

    @post(
        operation_id="Checkout",
        summary="Your cart becomes an order",
        status_code=HTTP_201_CREATED,
        responses=errors(
            not_found="A product in the cart no longer exists",
            conflict="The cart is empty, or a product is short of stock (`extra.shortages`)",
        ),
    )
    async def checkout(self, orders: OrderService, caller: Caller) -> OrderRead:
        return await orders.checkout(caller)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]
    guards = [requires_user]
    dependencies = {
        "orders": Provide(_order_service, use_cache=True, sync_to_thread=False),
        "caller": CALLER,
    }

    @get(operation_id="ListOrders", summary="Your orders, newest first", responses=errors())
    async def list_orders(
        self, orders: OrderService, caller: Caller, limit: Limit, offset: Offset
    ) -> OffsetPagination[OrderRead]:
        return await orders.page(caller, limit, offset)

    @post(
        operation_id="CreateOrder",
        status_code=HTTP_201_CREATED,
        summary="Buy the given items directly, without the cart",
        responses=errors(
            not_found="No such product",
            conflict="A product is short of stock (`extra.shortages`)",
        ),
    )
    async def create_order(
        self, orders: OrderService, caller: Caller, data: OrderCreate
    ) -> OrderRead:
        return await orders.buy(caller, [(line.product_id, line.quantity) for line in data.items])

    @get(
        "/{order_id:int}",
        operation_id="GetOrder",
        summary="One of your orders",
        responses=errors(not_found="No such order of yours"),
    )
    async def get_order(self, orders: OrderService, caller: Caller, order_id: Id) -> OrderRead:
        return await orders.one(caller, order_id)
