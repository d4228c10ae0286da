"""The shared PostgreSQL schema. Both services use one database: checkout must decrement
product stock in the same transaction that writes the order, so products, carts and orders
live side by side (the CRUD API owns users and products, the e-commerce API the rest)."""

from __future__ import annotations

from decimal import Decimal

from advanced_alchemy.base import BigIntAuditBase
from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

MONEY = Numeric(12, 2)


class User(BigIntAuditBase):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(32), default="unknown")
    # An argon2id hash (common/passwords.py); NULL: the user cannot sign in.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    # "admin" may write products and generate demo data; "user" owns a cart and orders.
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")


class Product(BigIntAuditBase):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_products_category", "category"),
    )

    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    price: Mapped[Decimal] = mapped_column(MONEY)
    stock: Mapped[int] = mapped_column(default=0)


class CartItem(BigIntAuditBase):
    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("user_id", "product_id", name="one_line_per_product"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    quantity: Mapped[int]
    unit_price: Mapped[Decimal] = mapped_column(MONEY)


class Order(BigIntAuditBase):
    __tablename__ = "orders"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="placed")
    total: Mapped[Decimal] = mapped_column(MONEY)
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="selectin", cascade="all, delete-orphan"
    )


class OrderItem(BigIntAuditBase):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="order_quantity_positive"),)

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int]
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    order: Mapped[Order] = relationship(back_populates="items")
