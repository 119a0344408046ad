"""partial indexes for the sweep: live timers and open notifications' TTLs

Finished notifications' waiting attempts get their timers cleared (so the timer
index holds only live ones); existing rows are cleared here too.

Revision ID: f6a7b8c9d0e1
Revises: 72c02006f8ea
Create Date: 2026-11-29 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f6a7b8c9d0e1"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMER = "escalate_at IS NOT NULL AND state IN ('sent', 'delivered', 'unknown', 'failed')"
OPEN = "state IN ('accepted', 'in_progress')"


def upgrade() -> None:
    op.execute(
        "UPDATE attempt SET escalate_at = NULL "
        "WHERE state IN ('sent', 'delivered', 'unknown', 'failed') AND notification_id IN "
        "(SELECT id FROM notification WHERE state NOT IN ('accepted', 'in_progress'))"
    )
    op.create_index(
        "ix_attempt_timer",
        "attempt",
        ["escalate_at"],
        postgresql_where=sa.text(TIMER),
        sqlite_where=sa.text(TIMER),
    )
    op.create_index(
        "ix_notification_open_expiry",
        "notification",
        ["expires_at"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_open_expiry", table_name="notification")
    op.drop_index("ix_attempt_timer", table_name="attempt")
