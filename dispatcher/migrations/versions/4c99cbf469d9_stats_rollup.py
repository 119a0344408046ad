"""stats rollup: per hour sums kept by triggers, backfilled from the rows

Revision ID: 4c99cbf469d9
Revises: 9e0f1a2b3c4d
Create Date: 2026-11-29 07:00:00

Adds the ``stats_*_hour`` and ``stats_*_delta`` tables, the triggers that append to the
deltas (:mod:`dispatcher.rollup_triggers`), on PostgreSQL the index the exact medians
look a bin up in (an expression index, not declared on the model), and the partial index
of later-step sends that ``savings.redundant`` reads. The backfill is
:func:`dispatcher.rollup_ledger.rebuild`: one pass over ``notification`` and ``attempt``
holding writers off them (a maintenance window on a large database; ``dispatcher stats
rebuild`` runs the same).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dispatcher.models import UTCDateTime
from dispatcher.rollup_ledger import rebuild
from dispatcher.rollup_triggers import install, read_bin, seconds_to_read, uninstall

revision: str = "4c99cbf469d9"
down_revision: str | None = "9e0f1a2b3c4d"  # after every branch: it counts their columns
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "notification": [
        sa.Column("cascade", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("finished_channel", sa.String(32), nullable=False),
        sa.Column("sms_step", sa.Integer(), nullable=False),
    ],
    "attempt": [
        sa.Column("cascade", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
    ],
    "read": [
        sa.Column("cascade", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
    ],
}
SUMS = {
    "notification": [
        ("notifications", sa.Integer()),
        ("cost", sa.Float()),
        ("segments", sa.Integer()),
    ],
    "attempt": [
        ("attempts", sa.Integer()),
        ("sent", sa.Integer()),
        ("delivered", sa.Integer()),
        ("read", sa.Integer()),
        ("failed", sa.Integer()),
        ("cost", sa.Float()),
    ],
    "read": [("reads", sa.Integer())],
}
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
READS = "read_at IS NOT NULL AND sent_at IS NOT NULL"
LATER_SENDS = "step > 0 AND (sent_at IS NOT NULL OR cost > 0)"


def upgrade() -> None:
    for kind, keys in KEYS.items():
        sums = [sa.Column(name, kind_type, nullable=False) for name, kind_type in SUMS[kind]]
        op.create_table(
            f"stats_{kind}_hour",
            sa.Column("hour", UTCDateTime(), primary_key=True, nullable=False),
            *[sa.Column(c.name, c.type, primary_key=True, nullable=False) for c in keys],
            *sums,
        )
        op.create_table(
            f"stats_{kind}_delta",
            sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
            sa.Column("hour", UTCDateTime(), nullable=False),
            *[sa.Column(c.name, c.type, nullable=False) for c in keys],
            *[sa.Column(name, kind_type, nullable=False) for name, kind_type in SUMS[kind]],
        )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX ix_attempt_read_bin ON attempt (channel, ({read_bin('postgresql')}), "
            f"({seconds_to_read('postgresql')})) INCLUDE (notification_created_at, cascade) "
            f"WHERE {READS}"
        )
    op.create_index(
        "ix_attempt_period_later_sends",
        "attempt",
        ["notification_created_at"],
        postgresql_include=["cascade", "channel", "cost", "notification_id", "step"],
        postgresql_where=sa.text(LATER_SENDS),
        sqlite_where=sa.text(LATER_SENDS),
    )
    install(bind)
    rebuild(bind)


def downgrade() -> None:
    bind = op.get_bind()
    uninstall(bind)
    op.drop_index("ix_attempt_period_later_sends", table_name="attempt")
    if bind.dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_attempt_read_bin")
    for kind in KEYS:
        op.drop_table(f"stats_{kind}_delta")
        op.drop_table(f"stats_{kind}_hour")
