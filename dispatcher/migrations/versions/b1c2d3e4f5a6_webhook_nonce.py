"""webhook nonces: one-time callback tokens (Mailgun replay protection)

Revision ID: b1c2d3e4f5a6
Revises: 72c02006f8ea
Create Date: 2026-11-27 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dispatcher.models

revision: str = "b1c2d3e4f5a6"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_nonce",
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", dispatcher.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "nonce"),
    )
    with op.batch_alter_table("webhook_nonce", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_nonce_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_nonce", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_nonce_expires_at"))
    op.drop_table("webhook_nonce")
