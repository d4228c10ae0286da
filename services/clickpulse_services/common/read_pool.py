"""The hot reads' own asyncpg pool, running SQLAlchemy Core statements compiled once.

The Core statements of crud/reads.py already skipped the ORM, the session and the transaction.
What was left of SQLAlchemy on those paths was its asyncio adaptation: a greenlet switch into
the sync engine, its pool checkout, the cursor adapter over asyncpg and the result machinery.
Side by side on `GET /products/{id}` (telemetry on, 20 VUs, service CPU a request): 0.88 ms
through the engine, 0.67 through the engine's own asyncpg connection, 0.54 through this pool.

The statements stay the SQLAlchemy Core statements built on the models (crud/reads.py); each is
compiled once to PostgreSQL's `$n` form with the asyncpg dialect, and its rows come back as
asyncpg records, which the read structs take positionally as they took SQLAlchemy's rows.
Writes keep advanced-alchemy and its engine (its transactions, repositories and services),
except the shop's: a cart add is one statement in autocommit here (shop/carts.py), and an order
one transaction (`ReadPool.transaction`, shop/orders.py).

An outage looks the same to a client as through the engine (common/database.py maps the
driver's errors): 503 while PostgreSQL is away, 503 with Retry-After when no connection frees
within the pool timeout, 400 for a value PostgreSQL refuses. After a lost connection every
pooled one is marked for replacement (as SQLAlchemy drops its pool); asyncpg notices most
connections the server ended before they are used, so after a PostgreSQL restart a few reads
per process fail with 503 at most (the test allows one per pooled connection), then all succeed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class ReadPoolTimeout(Exception):
    """No connection of the read pool freed within the pool timeout: over capacity."""


def lost_connection(exc: BaseException) -> bool:
    """The connection (or the server) went away, as opposed to a statement failing:
    SQLSTATE class 08 (connection exception) or 57P (shutdown, starting up)."""
    if isinstance(exc, OSError | ConnectionError | asyncpg.PostgresConnectionError):
        return True
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return sqlstate.startswith(("08", "57P"))


@dataclass(frozen=True)
class Statement:
    """A Core statement compiled for asyncpg: its SQL and its parameters in `$n` order, with
    the values the statement binds itself (a literal in `endswith(...)`) as defaults."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement) -> Statement:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)  # the dialect's is `$n`-positional
        names = tuple(compiled.positiontup or ())
        return cls(str(compiled), names, dict(compiled.params))

    def arguments(self, parameters: dict[str, Any]) -> list[Any]:
        return [parameters[n] if n in parameters else self.defaults[n] for n in self.names]


async def _unchanged(connection: asyncpg.Connection) -> None:
    """What a read leaves to reset: nothing. asyncpg still rolls back a transaction left open
    (there is none: each read is one statement in autocommit); its default reset is one more
    round trip per read (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlocks): ~8 % of
    `GET /products/{id}`'s CPU in the profile, and PostgreSQL's."""


class ReadPool:
    """asyncpg pool of one service process, opened by the app's lifespan. It connects on first
    use (min_size 0): a service starts, and answers 503, while PostgreSQL is down."""

    def __init__(
        self, database_url: str, size: int, timeout_s: float, application_name: str = ""
    ) -> None:
        url = make_url(database_url)
        self._connect = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database,
            # In pg_stat_activity: which service's reads a session is.
            "server_settings": {"application_name": application_name},
        }
        self.size = size
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            **self._connect,
            min_size=0,
            max_size=self.size,
            max_inactive_connection_lifetime=300,
            reset=_unchanged,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def in_use(self) -> int:
        pool = self._pool
        return 0 if pool is None else pool.get_size() - pool.get_idle_size()

    async def fetch(self, statement: Statement, **parameters: Any) -> Sequence[Any]:
        connection = await self._acquire()
        try:
            return await Transaction(connection).fetch(statement, **parameters)
        except Exception as exc:
            await self._reraise(connection, exc)
            raise
        finally:
            await self._release(connection)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Statements on one connection in one transaction (PostgreSQL's default, read
        committed), committed when the block ends, rolled back when it raises."""
        connection = await self._acquire()
        try:
            async with connection.transaction():
                yield Transaction(connection)
        except Exception as exc:
            await self._reraise(connection, exc)
            raise
        finally:
            await self._release(connection)

    async def _acquire(self) -> asyncpg.Connection:
        pool = self._pool
        if pool is None:
            raise ConnectionError("the read pool is not open")
        # With a connection idle, acquiring takes it at once: no timeout to arm and cancel
        # (asyncio's timeout machinery was ~5 % of a cheap read's CPU).
        timeout = None if pool.get_idle_size() else self.timeout_s
        try:
            connection: asyncpg.Connection = await pool.acquire(timeout=timeout)
        except TimeoutError as exc:
            raise ReadPoolTimeout from exc
        except Exception as exc:
            if lost_connection(exc):
                await pool.expire_connections()
            raise
        return connection

    async def _reraise(self, connection: asyncpg.Connection, exc: Exception) -> None:
        """Raises ConnectionError when `exc` means the connection was lost (and marks the
        pool's connections for replacement); otherwise the caller re-raises `exc`."""
        # A connection PostgreSQL ended before asyncpg noticed can also fail with asyncpg's
        # InternalClientError ("cannot switch to state 11; another operation is in
        # progress"), which is no PostgresError: without this it was a 500.
        if (
            lost_connection(exc)
            or connection.is_closed()
            or isinstance(exc, asyncpg.InternalClientError)
        ):
            assert self._pool is not None
            await self._pool.expire_connections()
            raise ConnectionError(f"the database connection was lost: {exc}") from exc

    async def _release(self, connection: asyncpg.Connection) -> None:
        assert self._pool is not None
        try:
            await self._pool.release(connection)
        except Exception:  # a broken connection: asyncpg has terminated it
            await self._pool.expire_connections()


@dataclass(frozen=True)
class Transaction:
    """A pooled connection's statements (`ReadPool.transaction`)."""

    connection: asyncpg.Connection

    async def fetch(self, statement: Statement, **parameters: Any) -> Sequence[Any]:
        rows: Sequence[Any] = await self.connection.fetch(
            statement.sql, *statement.arguments(parameters)
        )
        return rows
