"""Every guard of both services runs on the event loop. Litestar runs a guard that is a plain
function in a worker thread: a thread hop per guarded request, which was ~10 % of the
e-commerce API's CPU under the mixed scenario (every one of its operations is guarded)."""

from __future__ import annotations

import pytest
from clickpulse_services.crud.controllers import (
    AuthController,
    DemoController,
    ProductController,
    UserController,
)
from clickpulse_services.shop.controllers import (
    CartController,
    CheckoutController,
    OrderController,
)
from litestar import Controller
from litestar.handlers import HTTPRouteHandler
from litestar.utils import is_async_callable

pytestmark = pytest.mark.no_stack

CONTROLLERS: list[type[Controller]] = [
    AuthController,
    UserController,
    ProductController,
    DemoController,
    CartController,
    CheckoutController,
    OrderController,
]


def test_every_guard_is_a_coroutine_function() -> None:
    guards = []
    for controller in CONTROLLERS:
        guards += [(controller.__name__, g) for g in vars(controller).get("guards") or ()]
        for handler in vars(controller).values():
            if isinstance(handler, HTTPRouteHandler):
                guards += [(f"{controller.__name__}.{handler}", g) for g in handler.guards or ()]
    assert len(guards) >= 10, guards
    assert [(where, g) for where, g in guards if not is_async_callable(g)] == []
