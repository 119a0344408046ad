"""stats: finished_channel and sms_step on notification; indexes for /v1/stats and latency

Revision ID: c3d4e5f6a7b8
Revises: 72c02006f8ea
Create Date: 2026-11-30 10:00:00

Existing rows are backfilled: ``finished_channel`` from the notification's ``finished``
event (the channel it finished on), ``sms_step`` from the resolved ``steps`` JSON. On a
large PostgreSQL table this rewrites every finished notification once; run it in a
maintenance window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "c3d4e5f6a7b8"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED_CHANNEL = """
UPDATE notification SET finished_channel = (
    SELECT event.channel FROM event
    WHERE event.type = 'finished' AND event.notification_id = notification.id
      AND event.channel IS NOT NULL
    ORDER BY event.id LIMIT 1)
WHERE state IN ('read', 'delivered', 'sent') AND finished_channel IS NULL
"""
SMS_STEP = {
    "postgresql": """UPDATE notification SET sms_step = EXISTS (
        SELECT 1 FROM json_array_elements(steps) AS step WHERE step ->> 'channel' = 'sms')
        WHERE sms_step IS NULL""",
    "sqlite": """UPDATE notification SET sms_step = EXISTS (
        SELECT 1 FROM json_each(notification.steps)
        WHERE json_extract(json_each.value, '$.channel') = 'sms')
        WHERE sms_step IS NULL""",
}


def upgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "finished_channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
        batch_op.add_column(sa.Column("sms_step", sa.Boolean(), nullable=True))
        batch_op.create_index(
            "ix_notification_created",
            ["created_at"],
            unique=False,
            postgresql_include=["id", "cascade", "state", "finished_channel", "sms_step", "cost"],
        )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_attempt_notification_outcome",
            ["notification_id"],
            unique=False,
            postgresql_include=[
                "channel",
                "sent_at",
                "delivered_at",
                "read_at",
                "cost",
                "error_code",
            ],
        )
        batch_op.create_index(
            "ix_attempt_provider_delivered",
            ["provider", "delivered_at"],
            unique=False,
            postgresql_include=["sent_at"],
        )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_type_notification", ["type", "notification_id"], unique=False
        )
    op.execute(FINISHED_CHANNEL)
    op.execute(SMS_STEP[op.get_bind().dialect.name])


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_type_notification")
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_attempt_provider_delivered")
        batch_op.drop_index("ix_attempt_notification_outcome")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_created")
        batch_op.drop_column("sms_step")
        batch_op.drop_column("finished_channel")
