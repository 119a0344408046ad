"""broadcasts: the broadcast and its members; notification.broadcast_id

Revision ID: a7b8c9d0e1f2
Revises: 72c02006f8ea
Create Date: 2026-11-29 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dispatcher.models

revision: str = "a7b8c9d0e1f2"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    utc = dispatcher.models.UTCDateTime
    op.create_table(
        "broadcast",
        sa.Column("id", _str(36), nullable=False),
        sa.Column("cascade", _str(64), nullable=False),
        sa.Column("category", _str(32), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("ttl_seconds", sa.Float(), nullable=False),
        sa.Column("audience_kind", _str(16), nullable=False),
        sa.Column("audience_filter", _str(64), nullable=True),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("state", _str(16), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("cursor", _str(128), nullable=True),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", _str(255), nullable=True),
        sa.Column("request_hash", _str(64), nullable=True),
        sa.Column("api_key_id", _str(16), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("progress_at", utc(), nullable=False),
        sa.Column("finished_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "idempotency_key"),
    )
    op.create_index("ix_broadcast_state", "broadcast", ["state"], unique=False)
    op.create_table(
        "broadcast_member",
        sa.Column("broadcast_id", _str(36), nullable=False),
        sa.Column("customer_id", _str(128), nullable=False),
        sa.PrimaryKeyConstraint("broadcast_id", "customer_id"),
    )
    # A plain ADD COLUMN: no table copy, so other branches' partial indexes stay as they are.
    op.add_column("notification", sa.Column("broadcast_id", _str(36), nullable=True))
    op.create_index(
        "uq_notification_broadcast_customer",
        "notification",
        ["broadcast_id", "customer_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_notification_broadcast_customer", table_name="notification")
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("broadcast_id")
    op.drop_table("broadcast_member")
    op.drop_index("ix_broadcast_state", table_name="broadcast")
    op.drop_table("broadcast")
