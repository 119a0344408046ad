"""Emptying a test database, also while workers and beat still write to it.

The fault suite's world keeps its worker, sweep worker and beat running between
scenarios; a beat folding the stats rollup holds row locks on the tables a
``TRUNCATE`` locks one by one, and PostgreSQL may break the cycle by aborting the
``TRUNCATE``. It is then simply run again: the other side has finished by then.
"""

from __future__ import annotations

import time

from psycopg import errors as pg_errors
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

TRUNCATE_TRIES = 5


def truncate(engine: Engine) -> None:
    """Delete every row of every table (identities restart on PostgreSQL)."""
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            # The stats rollup last: deleting rows runs its triggers, which append deltas.
            for table in sorted(tables, key=lambda name: name.startswith("stats_")):
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our table names
        return
    statement = text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    for attempt in range(1, TRUNCATE_TRIES + 1):
        try:
            with engine.begin() as connection:
                connection.execute(statement)
            return
        except OperationalError as error:
            if not isinstance(error.orig, pg_errors.DeadlockDetected) or attempt == TRUNCATE_TRIES:
                raise
            time.sleep(0.1 * attempt)
