"""The CRUD API (users, products, demo data, sign-in):
`uvicorn clickpulse_services.crud.app:app`."""

from __future__ import annotations

import logging

from litestar import Litestar

from clickpulse_services.common.settings import get_settings
from clickpulse_services.common.signing_keys import SigningKeys
from clickpulse_services.common.tokens import TokenIssuer
from clickpulse_services.common.web import create_app
from clickpulse_services.crud.controllers import (
    AuthController,
    DemoController,
    ProductController,
    UserController,
)
from clickpulse_services.crud.services import ensure_admin

SERVICE_NAME = "crud-api"
settings = get_settings(SERVICE_NAME)
keys = SigningKeys(settings.jwt_keys_dir, settings.jwt_private_key)


async def _ensure_admin(app: Litestar) -> None:
    if settings.admin_password:
        await ensure_admin(app.state.engine, settings.admin_email, settings.admin_password)
    else:
        logging.getLogger(__name__).warning(
            "CLICKPULSE_ADMIN_PASSWORD is not set: no administrator account is made"
        )


app = create_app(
    settings=settings,
    keys=keys,
    title="clickpulse CRUD API",
    description="Users, products, demo data, and sign-in (access tokens and their keys).",
    route_handlers=[AuthController, UserController, ProductController, DemoController],
    extra_state={
        "issuer": TokenIssuer(
            keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_s=settings.token_ttl_s,
        )
    },
    on_startup_hooks=[_ensure_admin],
)
