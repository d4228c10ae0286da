"""Request and response bodies of the CRUD API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

# Users made by /demo/generate-users live here (RFC 2606 reserves .test) and share the demo
# password (README, "Who may do what").
DEMO_EMAIL_DOMAIN = "demo.clickpulse.test"

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
# msgspec cannot bound a Decimal with Meta; `_check_price` does, in __post_init__.
Price = Annotated[Decimal, msgspec.Meta(description="0 to 1000000, at most 2 decimals")]
MAX_PRICE = Decimal(1_000_000)


def _check_price(price: Decimal | msgspec.UnsetType) -> None:
    if isinstance(price, msgspec.UnsetType):
        return
    if not price.is_finite() or not Decimal(0) <= price <= MAX_PRICE:
        raise ValueError("price must be between 0 and 1000000")
    if price.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("price has more than 2 decimals")


Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Region = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


Password = Annotated[
    str,
    msgspec.Meta(min_length=8, max_length=128, description="8 to 128 characters"),
]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Sign-up: anyone may create a user (role "user") and then sign in as it."""

    email: Email
    name: Name
    password: Password
    region: Region = "unknown"


class UserRead(msgspec.Struct):
    id: int
    email: str
    name: str
    region: str
    role: str
    created_at: datetime


class DemoUser(msgspec.Struct):
    """A demo user to sign in as, with the demo password."""

    id: int
    email: str


class TokenRequest(msgspec.Struct):
    """OAuth2 password grant (RFC 6749, 4.3.2), form-encoded; `username` is the email.
    Other form fields a client sends (client_id, ...) are ignored, as RFC 6749 allows."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    grant_type: Annotated[str, msgspec.Meta(pattern="^password$")] = "password"
    scope: str = ""


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "bearer"


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    category: Category
    price: Price
    stock: Stock = 0

    def __post_init__(self) -> None:
        _check_price(self.price)


class ProductUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    price: Price | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        _check_price(self.price)


class ProductRead(msgspec.Struct):
    id: int
    name: str
    category: str
    price: Decimal
    stock: int
    created_at: datetime
    updated_at: datetime


class GenerateRequest(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class Generated(msgspec.Struct):
    created: int
    total: int
