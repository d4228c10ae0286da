"""users.password_hash: users sign in with a password (argon2id hash)

Revision ID: 5c1e0a7d2b41
Revises: d7b890e76d27
Create Date: 2026-11-29 20:40:00

"""

import sqlalchemy as sa
from alembic import op

revision = "5c1e0a7d2b41"
down_revision = "d7b890e76d27"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: users from before this change have no password and cannot sign in until one
    # is set; demo users get the demo password when /demo/generate-users creates them.
    op.add_column("users", sa.Column("password_hash", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "password_hash")
