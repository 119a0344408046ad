"""attempt.started_at: when the step was first claimed (its retries end with its timeout)

Revision ID: e5f6a7b8c9d0
Revises: 72c02006f8ea
Create Date: 2026-11-29 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatcher.models

revision: str = "e5f6a7b8c9d0"
down_revision: str | None = "72c02006f8ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.add_column(sa.Column("started_at", dispatcher.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("started_at")
