"""content: locale and SMS segments on attempts, SMS segments per notification, inbound times

Revision ID: 24665776211f
Revises: 72c02006f8ea
Depends on: c3d4e5f6a7b8 (it creates ix_notification_created, rebuilt here)
Create Date: 2026-11-29 12:00:00

``attempt.locale`` (the template variant sent), ``attempt.encoding`` and
``attempt.segments`` (SMS), ``notification.sms_segments`` (the SMS-only baseline's
unit, added to the stats index so /v1/stats still reads the index alone on
PostgreSQL) and ``contactpoint.last_inbound_at`` (WhatsApp's 24-hour window). Rows
written before stay NULL: stats count a NULL as one segment, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "24665776211f"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "c3d4e5f6a7b8"

STATS_INCLUDE = ["id", "cascade", "state", "finished_channel", "sms_step", "cost"]


def upgrade() -> None:
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(length=35), nullable=True)
        )
        batch_op.add_column(
            sa.Column("encoding", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )
        batch_op.add_column(sa.Column("segments", sa.Integer(), nullable=True))
    with op.batch_alter_table("contactpoint", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_inbound_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_segments", sa.Integer(), nullable=True))
        batch_op.drop_index("ix_notification_created")
        batch_op.create_index(
            "ix_notification_created",
            ["created_at"],
            unique=False,
            postgresql_include=[*STATS_INCLUDE[:-1], "sms_segments", "cost"],
        )


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_created")
        batch_op.create_index(
            "ix_notification_created",
            ["created_at"],
            unique=False,
            postgresql_include=STATS_INCLUDE,
        )
        batch_op.drop_column("sms_segments")
    with op.batch_alter_table("contactpoint", schema=None) as batch_op:
        batch_op.drop_column("last_inbound_at")
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_column("segments")
        batch_op.drop_column("encoding")
        batch_op.drop_column("locale")
