"""Request and response bodies of the CRUD API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
Price = Annotated[Decimal, msgspec.Meta(ge=0, le=1_000_000)]
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Region = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    name: Name
    region: Region = "unknown"


class UserRead(msgspec.Struct):
    id: int
    email: str
    name: str
    region: str
    created_at: datetime


class ProductCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    category: Category
    price: Price
    stock: Stock = 0


class ProductUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    price: Price | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | msgspec.UnsetType = msgspec.UNSET


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
