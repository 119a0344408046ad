"""broadcast batches: bounds cut when the audience is stored, a claim row per batch

Fan-out batches run in parallel. ``broadcast.bounds`` lists the first customer id of
each batch; ``broadcast_batch`` holds one row per committed batch, inserted first in
the batch's transaction, so a batch run twice (or twice at once) commits once.

Revision ID: 1f7845444935
Revises: b31a817138e0
Create Date: 2026-11-29 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatcher.models

revision: str = "1f7845444935"
down_revision: str | None = "b31a817138e0"
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
    _bound_fan_outs_in_flight()


def _bound_fan_outs_in_flight() -> None:
    """A broadcast still fanning out continues from its cursor: its members after the
    cursor are cut into batches of 1,000 (numbered from 0 again, ``batches`` reset)."""
    connection = op.get_bind()
    broadcast = sa.table(
        "broadcast",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("cursor", sa.String),
        sa.column("batches", sa.Integer),
        sa.column("bounds", sa.JSON),
    )
    member = sa.table(
        "broadcast_member",
        sa.column("broadcast_id", sa.String),
        sa.column("customer_id", sa.String),
    )
    in_flight = connection.execute(
        sa.select(broadcast.c.id, broadcast.c.cursor).where(broadcast.c.state == "fanning_out")
    ).all()
    for broadcast_id, cursor in in_flight:
        mine = member.c.broadcast_id == broadcast_id
        if cursor is not None:
            mine = sa.and_(mine, member.c.customer_id > cursor)
        numbered = (
            sa.select(
                member.c.customer_id,
                sa.func.row_number().over(order_by=member.c.customer_id).label("n"),
            )
            .where(mine)
            .subquery()
        )
        firsts = sa.select(numbered.c.customer_id).where((numbered.c.n - 1) % 1000 == 0)
        bounds = list(connection.execute(firsts.order_by(numbered.c.customer_id)).scalars())
        connection.execute(
            broadcast.update()
            .where(broadcast.c.id == broadcast_id)
            .values(bounds=bounds, batches=0)
        )


def downgrade() -> None:
    op.drop_table("broadcast_batch")
    op.drop_column("broadcast", "bounds")
