"""Bulk writes: many rows of one table in one statement stream, inside the caller's transaction.

On PostgreSQL the rows go through ``COPY ... FROM STDIN`` (psycopg's ``cursor.copy``):
one round trip for the whole batch, no SQL to parse per row, several times faster than
``executemany`` (which psycopg pipelines as one INSERT per row) and than multi-row
INSERTs. Elsewhere (SQLite, where the driver's ``executemany`` is a C loop over one
prepared statement) a Core ``insert()`` executemany.

Values are converted as the table's column types would bind them (aware datetimes to
naive UTC, JSON to text), and Python-side column defaults missing from the rows (such
as ``notification.sms_step``) are computed as SQLAlchemy computes them on insert. A
column missing from the rows with a server default (a serial ``id``) gets it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table, insert

from dispatcher.columns import UTCDateTime

Row = dict[str, Any]


class _Context:
    """What a Python column default function is given: the row being inserted."""

    def __init__(self, row: Row) -> None:
        self._row = row

    def get_current_parameters(self) -> Row:
        return self._row


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _same(value: Any) -> Any:
    return value


def _converter(table: Table, name: str) -> Callable[[Any], Any]:
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime):
        return _naive_utc
    if isinstance(kind, JSON):
        return _as_json
    return _same


def _with_defaults(table: Table, rows: Sequence[Row]) -> list[Row]:
    """The rows, with Python-side column defaults filled where a row lacks the column."""
    missing = [c for c in table.columns if c.default is not None and c.name not in rows[0]]
    if not missing:
        return list(rows)
    filled = []
    for row in rows:
        full = dict(row)
        for column in missing:
            default: Any = column.default
            if default.is_scalar:
                full[column.name] = default.arg
            elif default.is_callable:
                full[column.name] = default.arg(_Context(full))
        filled.append(full)
    return filled


def insert_rows(connection: Connection, table: Table, rows: Sequence[Row]) -> int:
    """Insert ``rows`` (dicts with the same keys) into ``table``; returns how many."""
    if not rows:
        return 0
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), list(rows))
        return len(rows)
    rows = _with_defaults(table, rows)
    names = list(rows[0])
    values = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    converted = [
        (i, _Memo(convert))
        for i, convert in enumerate(_converter(table, name) for name in names)
        if convert is not _same
    ]
    columns = ", ".join(f'"{name}"' for name in names)
    driver = connection.connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy,
    ):
        for row in rows:
            out = list(values(row))
            for i, convert in converted:
                out[i] = convert(out[i])
            copy.write_row(out)
    return len(rows)


class _Memo:
    """A converter that converts each distinct object once per call: the rows of a batch
    share their times and many JSON values (one ``now``, one content per locale).

    Keyed by identity, which is safe while ``rows`` holds every value alive.
    """

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        self._convert = convert
        self._seen: dict[int, Any] = {}

    def __call__(self, value: Any) -> Any:
        key = id(value)
        found = self._seen.get(key, _MISSING)
        if found is _MISSING:
            found = self._seen[key] = self._convert(value)
        return found


_MISSING = object()
