"""partial indexes: unapplied provider events by attempt and by provider message

Recording a send looks up the receipts that arrived while it was in flight (by the
attempt's id and by the provider's message id). Only unapplied events matter, so the
indexes hold only those: the lookup stays a few index probes however many receipts
were ever stored or are scheduled (sandbox) for later.

Revision ID: d8e9f0a1b2c3
Revises: 72c02006f8ea
Create Date: 2026-11-29 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8e9f0a1b2c3"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNAPPLIED = "applied_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_provider_event_unapplied_reference",
        "providerevent",
        ["reference"],
        postgresql_where=sa.text(UNAPPLIED),
        sqlite_where=sa.text(UNAPPLIED),
    )
    op.create_index(
        "ix_provider_event_unapplied_message",
        "providerevent",
        ["provider", "provider_message_id"],
        postgresql_where=sa.text(UNAPPLIED),
        sqlite_where=sa.text(UNAPPLIED),
    )


def downgrade() -> None:
    op.drop_index("ix_provider_event_unapplied_message", table_name="providerevent")
    op.drop_index("ix_provider_event_unapplied_reference", table_name="providerevent")
