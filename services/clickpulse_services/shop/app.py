"""The e-commerce API (cart, checkout, orders): `uvicorn clickpulse_services.shop.app:app`."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar

from clickpulse_services.common.jwks_client import RemoteJwks
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
keys = RemoteJwks(settings.jwks_url)


async def _refresh_keys() -> None:
    while True:
        await keys.fetch()
        await asyncio.sleep(keys.max_age_s if keys.version else keys.min_refetch_s)


async def _start(app: Litestar) -> None:
    telemetry = app.state.telemetry
    app.state.catalogue = Catalogue(
        settings.crud_api_url,
        telemetry.tracer_provider if settings.telemetry_enabled else None,
        timeout_s=settings.catalogue_timeout_s,
        connections=settings.max_in_flight,
    )
    # The CRUD API may start after us: tokens are refused (401, unknown key) until the first
    # fetch succeeds, retried every few seconds.
    app.state.key_refresher = asyncio.create_task(_refresh_keys())


async def _stop(app: Litestar) -> None:
    app.state.key_refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.state.key_refresher
    await app.state.catalogue.close()
    await keys.close()


app = create_app(
    settings=settings,
    keys=keys,
    title="clickpulse e-commerce API",
    description="Cart, checkout and orders of the signed-in user; product data comes from the "
    "CRUD API, which also issues the access tokens this API accepts.",
    route_handlers=[CartController, CheckoutController, OrderController],
    on_startup_hooks=[_start],
    on_shutdown_hooks=[_stop],
)
