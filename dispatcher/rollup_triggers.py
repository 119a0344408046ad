"""The triggers that keep the stats rollup: every change to a counted row, in its transaction.

A notification counts once in the hour it was created, under its (cascade, state,
finished channel, sms step) with its cost and SMS segments; an attempt counts in its
notification's hour under (cascade, channel): sent, delivered, read, failed, cost; a read
attempt (sent and read) also counts in the bin of its seconds to read. Every INSERT,
UPDATE or DELETE of ``notification`` and ``attempt`` appends the difference it made
(minus the old row's contribution, plus the new one's) to the ``stats_*_delta`` tables.

Triggers, not calls from Python: every writer is covered without knowing (the ORM, the
send rounds' Core statements, the broadcast fan-out's COPY, a DBA's UPDATE), and the
statements on the send path stay as they are. PostgreSQL runs one trigger per statement
over its transition tables, so a batch round appends one row per distinct key, not one
per changed row; an UPDATE that leaves the counted columns alone appends nothing.
SQLite (one writer at a time) runs row triggers that fire only when a counted column
changed.

The expressions here are also the reader's (:mod:`dispatcher.rollup`): the bin of a read
is computed by the same SQL text in the trigger, the live edges and the median lookup.
Changing one needs a migration that reinstalls the triggers and rebuilds the rollup.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection


def floor(dialect: str, value: str) -> str:
    """``floor(value)`` as an integer, without SQLite's optional math functions."""
    if dialect == "postgresql":
        return f"CAST(floor({value}) AS BIGINT)"
    return f"(CAST({value} AS INTEGER) - (({value}) < CAST({value} AS INTEGER)))"


def hour_of(dialect: str, column: str) -> str:
    """The start of ``column``'s UTC hour, stored as the database stores times."""
    if dialect == "postgresql":
        return f"date_trunc('hour', {column})"
    return f"strftime('%Y-%m-%d %H:00:00.000000', {column})"


def seconds_to_read(dialect: str, r: str = "") -> str:
    """Seconds from sent to read, exactly as :func:`dispatcher.channel_stats._seconds_to_read`."""
    if dialect == "postgresql":
        return f"EXTRACT(epoch FROM {r}read_at - {r}sent_at)"
    return f"(julianday({r}read_at) - julianday({r}sent_at)) * 86400.0"


def read_bin(dialect: str, r: str = "") -> str:
    """The histogram bin of a read: whole seconds up to 10 min, minutes up to a day, hours."""
    s = seconds_to_read(dialect, r)
    return (
        f"CASE WHEN {s} < 600 THEN {floor(dialect, s)} "
        f"WHEN {s} < 86400 THEN {floor(dialect, f'({s}) / 60')} * 60 "
        f"ELSE {floor(dialect, f'({s}) / 3600')} * 3600 END"
    )


@dataclass(frozen=True)
class Kind:
    """What one source table contributes to one delta table."""

    source: str
    delta: str
    keys: tuple[tuple[str, str], ...]  #: (column, expression over the row prefix ``{r}``)
    sums: tuple[tuple[str, str], ...]
    where: str  #: rows that count at all
    watched: tuple[str, ...]  #: the source columns the contribution reads

    def having(self) -> str:
        """A key's summed difference is not nothing (float cost: not a rounding residue)."""
        parts = [
            f"abs(sum({name})) > 1e-12" if name == "cost" else f"sum({name}) <> 0"
            for name, _ in self.sums
        ]
        return " OR ".join(parts)


def kinds(dialect: str) -> list[Kind]:
    sms = "CASE WHEN {r}sms_step IS NULL THEN -1 WHEN {r}sms_step THEN 1 ELSE 0 END"
    notification = Kind(
        "notification",
        "stats_notification_delta",
        (
            ("hour", hour_of(dialect, "{r}created_at")),
            ("cascade", "{r}cascade"),
            ("state", "{r}state"),
            ("finished_channel", "coalesce({r}finished_channel, '')"),
            ("sms_step", sms),
        ),
        (
            ("notifications", "1"),
            ("cost", "coalesce({r}cost, 0.0)"),
            ("segments", "coalesce({r}sms_segments, 1)"),
        ),
        "{r}created_at IS NOT NULL",
        ("created_at", "cascade", "state", "finished_channel", "sms_step", "cost", "sms_segments"),
    )
    attempt_keys = (
        ("hour", hour_of(dialect, "{r}notification_created_at")),
        ("cascade", "coalesce({r}cascade, '')"),
        ("channel", "{r}channel"),
    )
    attempt = Kind(
        "attempt",
        "stats_attempt_delta",
        attempt_keys,
        (
            ("attempts", "1"),
            ("sent", "CASE WHEN {r}sent_at IS NOT NULL THEN 1 ELSE 0 END"),
            ("delivered", "CASE WHEN {r}delivered_at IS NOT NULL THEN 1 ELSE 0 END"),
            ("read", "CASE WHEN {r}read_at IS NOT NULL THEN 1 ELSE 0 END"),
            (
                "failed",
                "CASE WHEN {r}error_code IS NOT NULL AND {r}sent_at IS NULL THEN 1 ELSE 0 END",
            ),
            ("cost", "coalesce({r}cost, 0.0)"),
        ),
        "{r}notification_created_at IS NOT NULL",
        (
            "notification_created_at",
            "cascade",
            "channel",
            "sent_at",
            "delivered_at",
            "read_at",
            "error_code",
            "cost",
        ),
    )
    read = Kind(
        "attempt",
        "stats_read_delta",
        (*attempt_keys, ("bin", read_bin(dialect, "{r}"))),
        (("reads", "1"),),
        "{r}notification_created_at IS NOT NULL AND {r}read_at IS NOT NULL "
        "AND {r}sent_at IS NOT NULL",
        ("notification_created_at", "cascade", "channel", "sent_at", "read_at"),
    )
    return [notification, attempt, read]


def _columns(kind: Kind) -> str:
    return ", ".join(name for name, _ in (*kind.keys, *kind.sums))


def _contribution(kind: Kind, rows: str, sign: str, r: str, extra: str = "") -> str:
    keys = [f"{expr.format(r=r)} AS {name}" for name, expr in kind.keys]
    sums = [f"{sign}({expr.format(r=r)}) AS {name}" for name, expr in kind.sums]
    where = kind.where.format(r=r) + extra
    return f"SELECT {', '.join(keys + sums)} FROM {rows} WHERE {where}"  # noqa: S608


def _grouped(kind: Kind, contributions: str) -> str:
    keys = ", ".join(name for name, _ in kind.keys)
    sums = ", ".join(f"sum({name})" for name, _ in kind.sums)
    return (
        f"INSERT INTO {kind.delta} ({_columns(kind)}) "  # noqa: S608 - our constants
        f"SELECT {keys}, {sums} FROM ({contributions}) AS d GROUP BY {keys} "
        f"HAVING {kind.having()}"
    )


def _pg_update(kind: Kind) -> str:
    old = ", ".join(f"o.{c}" for c in kind.watched)
    new = ", ".join(f"n.{c}" for c in kind.watched)
    changed = (
        "(SELECT n.id FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id "  # noqa: S608
        f"WHERE ({old}) IS DISTINCT FROM ({new}))"
    )
    within = " AND id IN (SELECT id FROM changed)"
    both = (
        _contribution(kind, "old_rows", "-", "", within)
        + " UNION ALL "
        + _contribution(kind, "new_rows", "", "", within)
    )
    return f"WITH changed AS {changed} {_grouped(kind, both)}"


def postgresql_ddl() -> list[str]:
    """Statement triggers over transition tables, one function per table and operation."""
    statements = []
    for table in ("notification", "attempt"):
        mine = [k for k in kinds("postgresql") if k.source == table]
        bodies = {
            "insert": [_grouped(k, _contribution(k, "new_rows", "", "")) for k in mine],
            "delete": [_grouped(k, _contribution(k, "old_rows", "-", "")) for k in mine],
            "update": [_pg_update(k) for k in mine],
        }
        tables = {
            "insert": "NEW TABLE AS new_rows",
            "delete": "OLD TABLE AS old_rows",
            "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        }
        for op, body in bodies.items():
            name = f"stats_{table}_{op}"
            statements.append(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {'; '.join(body)}; RETURN NULL; END $$"
            )
            statements.append(
                f"CREATE TRIGGER {name} AFTER {op.upper()} ON {table} "
                f"REFERENCING {tables[op]} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
    return statements


def _sqlite_insert(kind: Kind, r: str, sign: str) -> str:
    keys = [expr.format(r=r) for _, expr in kind.keys]
    sums = [f"{sign}({expr.format(r=r)})" for _, expr in kind.sums]
    return (
        f"INSERT INTO {kind.delta} ({_columns(kind)}) "
        f"SELECT {', '.join(keys + sums)} WHERE {kind.where.format(r=r)};"
    )


def sqlite_ddl() -> list[str]:
    """Row triggers; the UPDATE ones fire only when a counted column changed."""
    statements = []
    for kind in kinds("sqlite"):
        name = f"stats_{kind.delta.removeprefix('stats_').removesuffix('_delta')}"
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in kind.watched)
        statements += [
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {kind.source} "
            f"BEGIN {_sqlite_insert(kind, 'NEW.', '')} END",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {kind.source} "
            f"BEGIN {_sqlite_insert(kind, 'OLD.', '-')} END",
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(kind.watched)} "
            f"ON {kind.source} WHEN {changed} "
            f"BEGIN {_sqlite_insert(kind, 'OLD.', '-')} {_sqlite_insert(kind, 'NEW.', '')} END",
        ]
    return statements


def install(connection: Connection) -> None:
    dialect = connection.dialect.name
    for statement in postgresql_ddl() if dialect == "postgresql" else sqlite_ddl():
        connection.exec_driver_sql(statement)


def uninstall(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        for table in ("notification", "attempt"):
            for op in ("insert", "update", "delete"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS stats_{table}_{op} ON {table}")
                connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS stats_{table}_{op}()")
        return
    for name in ("notification", "attempt", "read"):
        for op in ("insert", "update", "delete"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS stats_{name}_{op}")
