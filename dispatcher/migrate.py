"""Schema migrations (Alembic), applied by ``dispatcher up`` and ``dispatcher migrate``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema.

    ``heads``: independent changes may branch from the same revision (each one a
    migration of its own, applied in any order) without a merge revision. A migration
    that reads another branch's columns names that revision in ``depends_on``.
    """
    command.upgrade(alembic_config(url), "heads")


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the models (developer tool)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
