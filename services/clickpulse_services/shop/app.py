"""The e-commerce API (cart, checkout, orders): `uvicorn clickpulse_services.shop.app:app`."""

from __future__ import annotations

from litestar import Litestar

from clickpulse_services.common.settings import get_settings
from clickpulse_services.common.web import create_app
from clickpulse_services.shop.catalogue import Catalogue
from clickpulse_services.shop.controllers import (
    CartController,
    CheckoutController,
    OrderController,
)

SERVICE_NAME = "ecommerce-api"
settings = get_settings(SERVICE_NAME)


async def _open_catalogue(app: Litestar) -> None:
    telemetry = app.state.telemetry
    app.state.catalogue = Catalogue(
        settings.crud_api_url,
        telemetry.tracer_provider if settings.telemetry_enabled else None,
        timeout_s=settings.catalogue_timeout_s,
        connections=settings.max_in_flight,
    )


async def _close_catalogue(app: Litestar) -> None:
    await app.state.catalogue.close()


app = create_app(
    settings=settings,
    title="clickpulse e-commerce API",
    description="Cart, checkout and orders; product data comes from the CRUD API.",
    route_handlers=[CartController, CheckoutController, OrderController],
    on_startup_hooks=[_open_catalogue],
    on_shutdown_hooks=[_close_catalogue],
)
