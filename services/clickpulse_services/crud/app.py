"""The CRUD API (users, products, demo data): `uvicorn clickpulse_services.crud.app:app`."""

from __future__ import annotations

from clickpulse_services.common.settings import get_settings
from clickpulse_services.common.web import create_app
from clickpulse_services.crud.controllers import DemoController, ProductController, UserController

SERVICE_NAME = "crud-api"

app = create_app(
    settings=get_settings(SERVICE_NAME),
    title="clickpulse CRUD API",
    description="Users, products and demo data.",
    route_handlers=[UserController, ProductController, DemoController],
)
