"""Request and response bodies of the e-commerce API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from clickpulse_services.common.openapi import MAX_ID

Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
ProductId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


class CartAdd(msgspec.Struct, forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity = 1


class CartUpdate(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Quantity


class CartLine(msgspec.Struct):
    id: int
    product_id: int
    quantity: int
    unit_price: Decimal
    line_total: Decimal


class CartRead(msgspec.Struct):
    user_id: int
    items: list[CartLine]
    items_count: int
    total: Decimal


class OrderLineIn(msgspec.Struct, forbid_unknown_fields=True):
    product_id: ProductId
    quantity: Quantity


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[OrderLineIn], msgspec.Meta(min_length=1, max_length=100)]


class OrderLine(msgspec.Struct):
    product_id: int
    quantity: int
    unit_price: Decimal


class OrderRead(msgspec.Struct):
    id: int
    user_id: int
    status: str
    total: Decimal
    items: list[OrderLine]
    created_at: datetime
