"""join the branches: one head again

Independent changes branched from the initial schema, each a migration of its own.
The stats rollup (next) reads columns several of them add, so they are joined here
and everything after follows one line. A branch another one already ``depends_on``
(the broadcast table, the stats indexes) is joined through that one: Alembic fails with a
``KeyError`` when a revision is both a parent here and a dependency there.

Revision ID: 9e0f1a2b3c4d
Revises: 24665776211f, 5c3b255aefa7, b1c2d3e4f5a6,
e5f6a7b8c9d0, f6a7b8c9d0e1, 1f7845444935
Create Date: 2026-11-29 08:00:00
"""

from collections.abc import Sequence

revision: str = "9e0f1a2b3c4d"
down_revision: str | Sequence[str] | None = (
    "24665776211f",
    "5c3b255aefa7",
    "b1c2d3e4f5a6",
    "e5f6a7b8c9d0",
    "f6a7b8c9d0e1",
    "1f7845444935",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: a merge point."""


def downgrade() -> None:
    """Nothing to change: a merge point."""
