"""experiments: notification.experiment/variant and the operators' variant statuses

A/B cascades record the experiment and variant each notification was assigned; the
stats compare variants from the partial index over those rows only. Stopping or
promoting a variant is a row of ``experiment_variant_state`` (no row: active).

Revision ID: 3b20d132a28b
Revises: adee7234c03d
Create Date: 2026-11-29 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import dispatcher.models

revision: str = "3b20d132a28b"
down_revision: str | None = "adee7234c03d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_EXPERIMENT = "experiment IS NOT NULL"


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "experiment_variant_state",
        sa.Column("experiment", _str(64), nullable=False),
        sa.Column("variant", _str(64), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("updated_at", dispatcher.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("experiment", "variant"),
    )
    # Plain ADD COLUMNs: no table copy, so other branches' partial indexes stay as they are.
    op.add_column("notification", sa.Column("experiment", _str(64), nullable=True))
    op.add_column("notification", sa.Column("variant", _str(64), nullable=True))
    op.create_index(
        "ix_notification_experiment",
        "notification",
        ["experiment", "created_at"],
        postgresql_where=sa.text(IN_EXPERIMENT),
        sqlite_where=sa.text(IN_EXPERIMENT),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_experiment", table_name="notification")
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("variant")
        batch.drop_column("experiment")
    op.drop_table("experiment_variant_state")
