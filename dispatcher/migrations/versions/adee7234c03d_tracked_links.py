"""tracked links: attempt.clicked_at and the linkclick table

A click on a tracked link stamps the attempt's first click (it confirms a step waiting
for ``clicked``) and every counted click is a ``linkclick`` row: the stats count clicks
per link and channel over a period of notifications (``ix_linkclick_period``).

Revision ID: adee7234c03d
Revises: d8e9f0a1b2c3
Create Date: 2026-11-29 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dispatcher.models

revision: str = "adee7234c03d"
down_revision: str | None = "d8e9f0a1b2c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(sa.Column("clicked_at", dispatcher.models.UTCDateTime(), nullable=True))
    op.create_table(
        "linkclick",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("link", sa.Integer(), nullable=False),
        sa.Column("page", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("first", sa.Boolean(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("cascade", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("notification_created_at", dispatcher.models.UTCDateTime(), nullable=True),
        sa.Column("at", dispatcher.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempt.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_linkclick_attempt_id", "linkclick", ["attempt_id"])
    op.create_index("ix_linkclick_period", "linkclick", ["notification_created_at", "cascade"])


def downgrade() -> None:
    op.drop_index("ix_linkclick_period", table_name="linkclick")
    op.drop_index("ix_linkclick_attempt_id", table_name="linkclick")
    op.drop_table("linkclick")
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("clicked_at")
