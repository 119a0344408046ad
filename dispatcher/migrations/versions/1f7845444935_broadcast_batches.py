"""broadcast batches: bounds cut when the audience is stored, a claim row per batch

Fan-out batches run in parallel. ``broadcast.bounds`` lists the first customer id of
each batch; ``broadcast_batch`` holds one row per committed batch, inserted first in
the batch's transaction, so a batch run twice (or twice at once) commits once.

Revision ID: 1f7845444935
Revises: d8e9f0a1b2c3
Create Date: 2026-11-29 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatcher.models

revision: str = "1f7845444935"
down_revision: str | None = "d8e9f0a1b2c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "a7b8c9d0e1f2"  # the broadcast table


def upgrade() -> None:
    op.add_column("broadcast", sa.Column("bounds", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "broadcast_batch",
        sa.Column("broadcast_id", sa.String(length=36), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("created_at", dispatcher.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("broadcast_id", "batch"),
    )


def downgrade() -> None:
    op.drop_table("broadcast_batch")
    op.drop_column("broadcast", "bounds")
