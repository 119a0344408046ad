"""Keeping the stats rollup small and right: compact the deltas, rebuild from scratch.

:func:`compact` folds the ``stats_*_delta`` rows the triggers appended into the
``stats_*_hour`` rows (one per key); beat runs it after every sweep pass, so readers sum a
few delta rows on top of the hours. On PostgreSQL one statement per table deletes the
deltas it sees and adds their sums (``DELETE ... RETURNING`` feeding an upsert), so a
delta committed meanwhile stays for the next pass and none is counted twice; on SQLite
the one writer does the same in two statements of one transaction.

:func:`rebuild` (``dispatcher stats rebuild``, and the migration's backfill) recomputes
every hour from ``notification`` and ``attempt`` with the triggers' own expressions,
holding writers off those two tables (``SHARE`` lock) until it commits.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from dispatcher.rollup_triggers import Kind, kinds

#: The delta tables and the hour tables they fold into.
HOURS = {
    "stats_notification_delta": "stats_notification_hour",
    "stats_attempt_delta": "stats_attempt_hour",
    "stats_read_delta": "stats_read_hour",
}


def _names(kind: Kind) -> tuple[str, str, str]:
    keys = ", ".join(name for name, _ in kind.keys)
    sums = ", ".join(name for name, _ in kind.sums)
    added = ", ".join(
        f"{name} = {HOURS[kind.delta]}.{name} + excluded.{name}" for name, _ in kind.sums
    )
    return keys, sums, added


def _fold(connection: Connection, kind: Kind) -> None:
    keys, sums, added = _names(kind)
    totals = ", ".join(f"sum({name})" for name, _ in kind.sums)
    hour = HOURS[kind.delta]
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"WITH gone AS (DELETE FROM {kind.delta} RETURNING {keys}, {sums}) "  # noqa: S608
            f"INSERT INTO {hour} ({keys}, {sums}) SELECT {keys}, {totals} FROM gone "
            f"GROUP BY {keys} ON CONFLICT ({keys}) DO UPDATE SET {added}"
        )
        return
    last = connection.exec_driver_sql(f"SELECT max(id) FROM {kind.delta}").scalar()  # noqa: S608
    if last is None:
        return
    connection.exec_driver_sql(
        f"INSERT INTO {hour} ({keys}, {sums}) SELECT {keys}, {totals} "  # noqa: S608
        f"FROM {kind.delta} WHERE id <= ? GROUP BY {keys} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {added}",
        (last,),
    )
    connection.exec_driver_sql(f"DELETE FROM {kind.delta} WHERE id <= ?", (last,))  # noqa: S608


def compact(engine: Engine) -> None:
    """Fold every delta appended so far into its hour."""
    with engine.begin() as connection:
        for kind in kinds(engine.dialect.name):
            _fold(connection, kind)


def rebuild(connection: Connection) -> None:
    """Recompute the rollup from the rows, in the caller's transaction."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql("LOCK TABLE notification, attempt IN SHARE MODE")
    for kind in kinds(dialect):
        keys, sums, _ = _names(kind)
        connection.exec_driver_sql(f"DELETE FROM {kind.delta}")  # noqa: S608
        connection.exec_driver_sql(f"DELETE FROM {HOURS[kind.delta]}")  # noqa: S608
        exprs = [f"{expr.format(r='')}" for _, expr in kind.keys]
        totals = [f"sum({expr.format(r='')})" for _, expr in kind.sums]
        positions = ", ".join(str(i + 1) for i in range(len(exprs)))
        connection.exec_driver_sql(
            f"INSERT INTO {HOURS[kind.delta]} ({keys}, {sums}) "  # noqa: S608 - our constants
            f"SELECT {', '.join(exprs + totals)} FROM {kind.source} "
            f"WHERE {kind.where.format(r='')} GROUP BY {positions}"
        )


def rebuild_all(engine: Engine) -> None:
    with engine.begin() as connection:
        rebuild(connection)
