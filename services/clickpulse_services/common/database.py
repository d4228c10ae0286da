"""SQLAlchemy (advanced-alchemy) wiring for Litestar, and what a database outage looks like to
a client: 503 with a clear body, never a 500."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.exceptions import (
    DuplicateKeyError,
    IntegrityError,
    NotFoundError,
    RepositoryError,
)
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Request, Response
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

from clickpulse_services.common.settings import ServiceSettings


def sqlalchemy_config(settings: ServiceSettings) -> SQLAlchemyAsyncConfig:
    return SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(
            pool_size=10, max_overflow=10, pool_pre_ping=True, pool_timeout=5
        ),
        before_send_handler="autocommit",
        create_all=False,
    )


def sqlalchemy_plugin(config: SQLAlchemyAsyncConfig) -> SQLAlchemyPlugin:
    return SQLAlchemyPlugin(config=config)


def _body(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def _database_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the database is unavailable; retry shortly",
        error=type(exc).__name__,
    )


def _detail(exc: Exception, fallback: str) -> str:
    detail = getattr(exc, "detail", None)
    return str(detail) if detail else fallback


def _not_found(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(HTTP_404_NOT_FOUND, _detail(exc, "not found"))


def _conflict(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(HTTP_409_CONFLICT, _detail(exc, "conflicts with existing data"))


def _bad_value(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(HTTP_400_BAD_REQUEST, "a value is out of range for the database")


def _repository_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    cause = exc.__cause__
    if isinstance(cause, DataError):
        return _bad_value(request, exc)
    if isinstance(cause, OperationalError | InterfaceError | OSError) or (
        isinstance(cause, DBAPIError) and cause.connection_invalidated
    ):
        return _database_unavailable(request, exc)
    raise exc


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NotFoundError: _not_found,
    DuplicateKeyError: _conflict,
    IntegrityError: _conflict,
    RepositoryError: _repository_error,
    DataError: _bad_value,
    OperationalError: _database_unavailable,
    InterfaceError: _database_unavailable,
    ConnectionError: _database_unavailable,
    OSError: _database_unavailable,
}
