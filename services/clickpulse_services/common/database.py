"""SQLAlchemy (advanced-alchemy) wiring for Litestar, and what a database outage looks like to
a client: 503 with a clear body, never a 500."""

from __future__ import annotations

from typing import Any

import asyncpg
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
from opentelemetry import trace
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from clickpulse_services.common.admission import RETRY_AFTER_S, SHED_REASON
from clickpulse_services.common.read_pool import ReadPoolTimeout, lost_connection
from clickpulse_services.common.settings import ServiceSettings


def sqlalchemy_config(settings: ServiceSettings) -> SQLAlchemyAsyncConfig:
    return SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        # No overflow: under load, overflow connections were opened and closed around every
        # request (a TLS probe and a login each time). Admission control (common/admission.py)
        # keeps the requests that wait for this pool few, and a short pool timeout answers 503.
        # No pre-ping: it was a round trip before every request. A connection that died with
        # the server fails its request with a 503 (see below) and SQLAlchemy then drops the
        # whole pool, so one request per process pays for an outage instead of all of them.
        engine_config=EngineConfig(
            pool_size=settings.db_pool_size,
            max_overflow=0,
            pool_pre_ping=False,
            pool_timeout=settings.db_pool_timeout_s,
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


def _pool_exhausted(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # Shed as admission control sheds (common/admission.py); the span tells the two apart.
    trace.get_current_span().set_attribute(SHED_REASON, "db_pool_timeout")
    response = _body(
        HTTP_503_SERVICE_UNAVAILABLE,
        f"over capacity: no database connection within the pool timeout; retry after"
        f" {RETRY_AFTER_S} s",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _detail(exc: Exception, fallback: str) -> str:
    detail = getattr(exc, "detail", None)
    return str(detail) if detail else fallback


def _not_found(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(HTTP_404_NOT_FOUND, _detail(exc, "not found"))


def _conflict(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(HTTP_409_CONFLICT, _detail(exc, "conflicts with existing data"))


def _bad_value(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(
        HTTP_400_BAD_REQUEST,
        "a value is out of range for the database or holds a character it cannot store (NUL)",
    )


def _repository_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    cause = exc.__cause__
    if isinstance(cause, DataError):
        return _bad_value(request, exc)
    if isinstance(cause, OperationalError | InterfaceError | OSError) or (
        isinstance(cause, DBAPIError) and cause.connection_invalidated
    ):
        return _database_unavailable(request, exc)
    raise exc


def _statement_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A driver error from a Core statement (the hot paths bypass the repositories): a lost
    connection is the database being unavailable; bad data (a NUL byte, a number beyond
    BIGINT: SQLSTATE class 22, or asyncpg refusing the argument) is the client's."""
    assert isinstance(exc, DBAPIError)
    cause = exc.orig.__cause__ if exc.orig is not None else None
    if exc.connection_invalidated or isinstance(cause, OSError | ConnectionError):
        return _database_unavailable(request, exc)
    sqlstate = str(getattr(cause, "sqlstate", "") or "")
    if sqlstate.startswith("22") or isinstance(cause, asyncpg.exceptions.DataError):
        return _bad_value(request, exc)
    raise exc


def _driver_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """An asyncpg error from the read pool (common/read_pool.py), mapped as `_statement_error`
    maps the same errors coming through SQLAlchemy."""
    if lost_connection(exc):
        return _database_unavailable(request, exc)
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate.startswith("22") or isinstance(exc, asyncpg.exceptions._base.DataError):
        return _bad_value(request, exc)
    raise exc


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NotFoundError: _not_found,
    DuplicateKeyError: _conflict,
    IntegrityError: _conflict,
    RepositoryError: _repository_error,
    DataError: _bad_value,
    PoolTimeout: _pool_exhausted,
    OperationalError: _database_unavailable,
    InterfaceError: _database_unavailable,
    ConnectionError: _database_unavailable,
    OSError: _database_unavailable,
    DBAPIError: _statement_error,
    ReadPoolTimeout: _pool_exhausted,
    asyncpg.PostgresError: _driver_error,
    asyncpg.InterfaceError: _driver_error,
}
