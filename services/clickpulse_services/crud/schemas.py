"""Request and response bodies of the CRUD API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

# Users made by /demo/generate-users live here (RFC 2606 reserves .test) and share the demo
# password (README, "Who may do what").
DEMO_EMAIL_DOMAIN = "demo.clickpulse.test"

# Spaces and control characters spelled out: `\s` means more characters to Python (the server)
# than to the ECMA regexes of OpenAPI (clients), which would then disagree on what is valid.
_EMAIL_PART = r"[^@\x00-\x20\x7f]+"
Email = Annotated[
    str, msgspec.Meta(pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$", max_length=320)
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
# A decimal string, as responses give prices: a JSON number is a binary float, a price is exact.
# The pattern is the whole rule (0 to 1000000, at most 2 decimals), so the spec states it as the
# server applies it. ASCII digits only: Python's \d and Decimal() take other scripts' digits.
PRICE_PATTERN = r"^(?:[0-9]{1,6}(?:\.[0-9]{1,2})?|1000000(?:\.00?)?)$"
Price = Annotated[
    str,
    msgspec.Meta(
        pattern=PRICE_PATTERN,
        description='a decimal string from "0" to "1000000", at most 2 decimals',
        examples=["12.50"],
    ),
]


Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
# The same bounds: Litestar drops a bound of 0 from the spec of a field that may be left out
# (`| UnsetType`), and the spec would then allow a negative stock the server refuses.
StockChange = Annotated[int, msgspec.Meta(gt=-1, le=1_000_000_000)]
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


class ProductUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    price: Price | msgspec.UnsetType = msgspec.UNSET
    stock: StockChange | msgspec.UnsetType = msgspec.UNSET


def product_columns(data: ProductCreate | ProductUpdate) -> dict[str, Any]:
    """The columns a create or update sets: the fields sent, the price as an exact Decimal."""
    columns = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    if "price" in columns:
        columns["price"] = Decimal(columns["price"])
    return columns


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
