"""stats without joins: the notification's created_at and cascade on its attempts

``/v1/stats`` filters attempts by their notification's period and cascade. Joining
1.7 million attempts to a million notifications for that took seconds; both values
never change after the notification is created, so each attempt now carries them
(written with the attempt); one covering index serves the per-channel figures and
a partial one the medians (read attempts only). The join's covering index on
``notification_id`` is dropped (the plain ``ix_attempt_notification_id`` stays).
Existing attempts are backfilled here: on a large PostgreSQL table this rewrites
every attempt once; run it in a maintenance window.

Revision ID: 5c3b255aefa7
Revises: 72c02006f8ea
Create Date: 2026-11-29 03:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dispatcher.models

revision: str = "5c3b255aefa7"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
#: c3d4e5f6a7b8 created the covering index dropped here.
depends_on: str | Sequence[str] | None = "c3d4e5f6a7b8"

INCLUDE = ["cascade", "channel", "sent_at", "delivered_at", "read_at", "cost", "error_code"]
READ = "read_at IS NOT NULL AND sent_at IS NOT NULL"
BACKFILL = {
    "postgresql": """UPDATE attempt SET notification_created_at = notification.created_at,
        cascade = notification.cascade FROM notification
        WHERE notification.id = attempt.notification_id""",
    "sqlite": """UPDATE attempt SET
        notification_created_at = (SELECT created_at FROM notification
                                   WHERE notification.id = attempt.notification_id),
        cascade = (SELECT cascade FROM notification
                   WHERE notification.id = attempt.notification_id)""",
}


def upgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(
            sa.Column("notification_created_at", dispatcher.models.UTCDateTime(), nullable=True)
        )
        batch.add_column(
            sa.Column("cascade", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    op.execute(BACKFILL[op.get_bind().dialect.name])
    with op.batch_alter_table("attempt") as batch:
        batch.drop_index("ix_attempt_notification_outcome")
        batch.create_index(
            "ix_attempt_period",
            ["notification_created_at"],
            unique=False,
            postgresql_include=INCLUDE,
        )
        batch.create_index(
            "ix_attempt_period_read",
            ["notification_created_at"],
            unique=False,
            postgresql_include=["cascade", "channel", "sent_at", "read_at"],
            postgresql_where=sa.text(READ),
            sqlite_where=sa.text(READ),
        )


def downgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.drop_index("ix_attempt_period_read")
        batch.drop_index("ix_attempt_period")
        batch.create_index(
            "ix_attempt_notification_outcome",
            ["notification_id"],
            unique=False,
            postgresql_include=INCLUDE[1:],
        )
        batch.drop_column("cascade")
        batch.drop_column("notification_created_at")
