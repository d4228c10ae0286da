"""Building blocks both Litestar apps share: pagination parameters, the health endpoint, the
app factory that wires settings, database, telemetry and error bodies."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar import Litestar, Request, Router, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import Parameter
from litestar.response import Response
from litestar.routes import HTTPRoute
from litestar.types import ControllerRouterHandler
from litestar.utils import normalize_path
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from clickpulse_services.common.admission import Admission
from clickpulse_services.common.auth import NO_TOKEN, bearer_auth
from clickpulse_services.common.client_identity import client_identity
from clickpulse_services.common.database import (
    EXCEPTION_HANDLERS,
    sqlalchemy_config,
    sqlalchemy_plugin,
)
from clickpulse_services.common.gc_policy import settle_heap
from clickpulse_services.common.openapi import MAX_ID, ClosedStructs, amend
from clickpulse_services.common.rate_limits import NAMES, RateLimits
from clickpulse_services.common.read_pool import ReadPool
from clickpulse_services.common.settings import ServiceSettings
from clickpulse_services.common.telemetry import Telemetry, remember_exception
from clickpulse_services.common.tokens import KeySource, TokenVerifier

MAX_PAGE = 100

Limit = Annotated[
    int, Parameter(ge=1, le=MAX_PAGE, default=20, description=f"page size, at most {MAX_PAGE}")
]
Offset = Annotated[int, Parameter(ge=0, le=10_000_000, default=0, description="rows to skip")]
# Ids are PostgreSQL BIGINTs: a larger number is a client error, not a database error.
Id = Annotated[int, Parameter(ge=1, le=MAX_ID)]


@get(
    "/health",
    operation_id="health",
    tags=["health"],
    security=NO_TOKEN,
    summary="Ready to serve: the database answers",
    # Neither authenticated, rate limited nor shed: a health check must see a busy service alive.
    responses={
        503: ResponseSpec(
            data_container=dict[str, str],
            description="The database does not answer",
            generate_examples=False,
        )
    },
)
async def health(db_session: AsyncSession) -> Response[dict[str, str]]:
    try:
        await db_session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        return Response({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return Response({"status": "ok", "database": "ok"})


def _too_many_requests(
    _: Request[Any, Any, Any], exc: TooManyRequestsException
) -> Response[dict[str, Any]]:
    """The rate limiter's RateLimit headers (common/rate_limits.py, or the CRUD API's passed
    on by the shop), Retry-After (RFC 9110), and a body that says which limit was hit."""
    given = {name.lower(): value for name, value in (exc.headers or {}).items()}
    headers = {name: given[key.decode()] for key, name in NAMES.items() if key.decode() in given}
    reset = given.get("ratelimit-reset", given.get("retry-after", "1"))
    count, _sep, window = given.get("ratelimit-policy", "").partition("; w=")
    return Response(
        {
            "status_code": 429,
            "detail": f"rate limit reached: {count} requests per {window} s for this caller; "
            f"retry after {reset} s",
        },
        status_code=429,
        headers={**headers, "Retry-After": reset},
    )


def _unauthorized(
    _: Request[Any, Any, Any], exc: NotAuthorizedException
) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": 401, "detail": exc.detail},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer", **(exc.headers or {})},
    )


_LITESTAR_OPTIONS = f"{HTTPRoute.create_options_handler.__qualname__}.<locals>.options_handler"


def _allow_lists_every_method(app: Litestar) -> None:
    """Litestar 2 answers OPTIONS on a path served by several handlers with an `Allow` header
    that lists the methods of only some of them (litestar#4169, fixed in v3): its automatic
    OPTIONS handler reads the methods of the route as it was when the handler was made, before
    the other handlers of the path joined it. Each route gets one made from the final route."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        stale, _ = route.route_handler_map["OPTIONS"]
        if stale.fn.__qualname__ != _LITESTAR_OPTIONS:  # an OPTIONS handler of our own
            continue
        fresh = route.create_options_handler(route.path)
        fresh.owner = stale.owner
        fresh.on_registration(app)
        route.route_handler_map["OPTIONS"] = (
            fresh,
            fresh.create_kwargs_model(path_parameters=route.path_parameters),
        )


def create_app(
    *,
    settings: ServiceSettings,
    keys: KeySource,
    title: str,
    description: str,
    route_handlers: Sequence[ControllerRouterHandler],
    extra_state: dict[str, Any] | None = None,
    on_startup_hooks: Sequence[Any] = (),
    on_shutdown_hooks: Sequence[Any] = (),
) -> Litestar:
    telemetry = Telemetry(settings)
    db_config: SQLAlchemyAsyncConfig = sqlalchemy_config(settings)

    read_pool = ReadPool(
        settings.database_url,
        settings.db_pool_size,
        settings.db_pool_timeout_s,
        application_name=f"{settings.service_name} reads",
    )

    def pool_checked_out() -> int:
        pool = db_config.get_engine().pool
        checked_out = getattr(pool, "checkedout", None)
        return (int(checked_out()) if callable(checked_out) else 0) + read_pool.in_use()

    telemetry.observe_process(pool_checked_out)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> Any:
        await read_pool.open()
        settle_heap()
        try:
            yield
        finally:
            await read_pool.close()
            telemetry.shutdown()

    app = Litestar(
        route_handlers=[health, Router(path="/", route_handlers=list(route_handlers))],
        plugins=[sqlalchemy_plugin(db_config), ClosedStructs()],
        on_app_init=[bearer_auth().on_app_init],
        middleware=[RateLimits(settings)],
        exception_handlers={
            **EXCEPTION_HANDLERS,
            TooManyRequestsException: _too_many_requests,
            NotAuthorizedException: _unauthorized,
        },
        after_exception=[remember_exception] if settings.telemetry_enabled else [],
        openapi_config=OpenAPIConfig(
            title=title,
            version="1.0.0",
            description=description,
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
        ),
        state=State(
            {
                "settings": settings,
                "telemetry": telemetry,
                "clients": client_identity(settings.trusted_proxies, settings.regions),
                "engine": db_config.get_engine(),
                "read_pool": read_pool,
                "key_source": keys,
                "tokens": TokenVerifier(
                    keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience
                ),
                **(extra_state or {}),
            }
        ),
        lifespan=[lifespan],
        on_startup=list(on_startup_hooks),
        on_shutdown=list(on_shutdown_hooks),
    )
    _allow_lists_every_method(app)
    amend(app.openapi_schema)
    router = app.asgi_router

    def route_of(path: str, method: str) -> str | None:
        try:
            template: str = router.handle_routing(path=normalize_path(path), method=method)[4]
        except Exception:  # no such route or method: the span goes without one, as a 404 would
            return None
        return template

    # Around the router, where Litestar's own OpenTelemetry plugin puts its middleware:
    # requests that match no route (404, 405) are traced too, and so are the ones admission
    # control sheds.
    app.asgi_handler = Admission(
        app.asgi_handler, settings.max_in_flight, route_of, settings.max_queued
    )
    if settings.telemetry_enabled:
        app.asgi_handler = telemetry.server_spans(app.asgi_handler)
    return app
