"""engagement: decayed per customer and channel attempt counts (adaptive order)

Revision ID: b31a817138e0
Revises: 3b20d132a28b
Create Date: 2026-11-29 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "b31a817138e0"
down_revision: str | None = "3b20d132a28b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engagement",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("confirmed", sa.Float(), nullable=False),
        sa.Column("tried", sa.Float(), nullable=False),
        sa.Column("as_of", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("customer_id", "channel"),
    )


def downgrade() -> None:
    op.drop_table("engagement")
