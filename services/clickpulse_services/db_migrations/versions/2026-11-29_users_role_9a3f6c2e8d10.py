"""users.role: "admin" may write products and generate demo data

Revision ID: 9a3f6c2e8d10
Revises: 5c1e0a7d2b41
Create Date: 2026-11-29 20:41:00

"""

import sqlalchemy as sa
from alembic import op

revision = "9a3f6c2e8d10"
down_revision = "5c1e0a7d2b41"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default fills existing rows in place (PostgreSQL 11+ adds it without a rewrite).
    op.add_column(
        "users",
        sa.Column("role", sa.String(length=16), nullable=False, server_default="user"),
    )


def downgrade() -> None:
    op.drop_column("users", "role")
