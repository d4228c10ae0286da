"""Services over advanced-alchemy repositories for the CRUD API's resources, and sign-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from clickpulse_services.common.models import Order, Product, User
from clickpulse_services.common.passwords import (
    check_password,
    hash_password,
    hash_published_password,
)
from clickpulse_services.common.tokens import ADMIN, TokenIssuer, unauthorized
from clickpulse_services.crud.reads import Reads
from clickpulse_services.crud.schemas import TokenResponse


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def sign_up(self, fields: dict[str, Any]) -> User:
        """A new user with role "user"; the password is stored as its argon2id hash only."""
        password = fields.pop("password")
        fields["password_hash"] = await hash_password(password)
        return await self.create(fields, auto_commit=True)

    async def create_demo(self, rows: list[dict[str, Any]], password: str) -> int:
        """Demo users share one hash of the published demo password (common/passwords.py)."""
        password_hash = hash_published_password(password)
        await self.create_many(
            [{**row, "password_hash": password_hash} for row in rows], auto_commit=True
        )
        return await self.count()

    async def erase(self, user_id: int) -> None:
        """The user, their orders (and order lines, by cascade) and cart, in one transaction."""
        session = self.repository.session
        if await session.get(User, user_id) is None:
            raise NotFoundError(detail=f"user {user_id} does not exist")
        await session.execute(delete(Order).where(Order.user_id == user_id))
        await session.execute(delete(User).where(User.id == user_id))
        await session.commit()


class ProductService(SQLAlchemyAsyncRepositoryService[Product]):
    class Repo(SQLAlchemyAsyncRepository[Product]):
        model_type = Product

    repository_type = Repo


class Accounts:
    """Sign-in: email and password in, a signed access token out."""

    def __init__(self, reads: Reads, issuer: TokenIssuer) -> None:
        self.reads = reads
        self.issuer = issuer

    async def sign_in(self, email: str, password: str) -> TokenResponse:
        found = await self.reads.credentials(email)
        matches = await check_password(password, found[1] if found else None)
        if found is None or not matches:
            raise unauthorized("wrong email or password")
        user_id, _, role = found
        roles = (role,) if role == ADMIN else ()
        token = self.issuer.issue(user_id, roles)
        return TokenResponse(access_token=token, expires_in=self.issuer.ttl_s)


async def ensure_admin(engine: AsyncEngine, email: str, password: str) -> None:
    """The administrator account of CLICKPULSE_ADMIN_EMAIL / _PASSWORD, created on first start
    and given the configured password again if it changed. Several worker processes may run
    this at once: the insert does nothing on a conflict, the update is idempotent."""
    async with engine.begin() as connection:
        row = (
            await connection.execute(select(User.id, User.password_hash).where(User.email == email))
        ).first()
        if row is not None and await check_password(password, row.password_hash):
            await connection.execute(update(User).where(User.id == row.id).values(role=ADMIN))
            return
        password_hash = await hash_password(password)
        now = datetime.now(UTC)
        statement = insert(User).values(
            email=email,
            name="Administrator",
            region="local",
            role=ADMIN,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=[User.email],
                set_={"password_hash": password_hash, "role": ADMIN, "updated_at": now},
            )
        )
