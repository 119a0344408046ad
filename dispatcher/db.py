"""Database engines and sessions, one engine per process.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` transactions: a writer takes
the lock up front, so two workers never deadlock upgrading a read to a write
(SQLITE_BUSY_SNAPSHOT), and ``busy_timeout`` makes them queue instead of fail.
PostgreSQL uses plain READ COMMITTED with row locks (``FOR UPDATE SKIP LOCKED``
in the sweep) and compare-and-set updates everywhere.

Workers do not ping a pooled connection before each use (a round trip per round):
connections are recycled after :data:`RECYCLE_AFTER`, and the first statement on one
that died (the server restarted) fails, invalidating every connection pooled before
it; :func:`retry_disconnect` runs such work once more, on a fresh connection.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

_ENGINES: dict[tuple[int, str, bool], Engine] = {}
_LOCK = threading.Lock()
#: Seconds a pooled PostgreSQL connection is used before it is replaced.
RECYCLE_AFTER = 1800
T = TypeVar("T")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        try:
            cursor.execute("SELECT exp(0)")  # built without SQLITE_ENABLE_MATH_FUNCTIONS?
        except sqlite3.OperationalError:
            # The engagement counts decay with exp() in SQL: give such builds Python's.
            dbapi_connection.create_function("exp", 1, math.exp, deterministic=True)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, pool_size: int = 5, *, pre_ping: bool = True) -> Engine:
    """A new engine for ``url`` (SQLite file or PostgreSQL); ``pre_ping``: test each
    PostgreSQL connection when it leaves the pool (the worker does not)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(
        url,
        pool_pre_ping=pre_ping,
        pool_recycle=RECYCLE_AFTER,
        pool_size=pool_size,
        max_overflow=10,
    )


def get_engine(url: str, pool_size: int = 5, *, pre_ping: bool = True) -> Engine:
    """The engine for ``url`` in this process; a forked child makes its own."""
    key = (os.getpid(), url, pre_ping)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = make_engine(url, pool_size, pre_ping=pre_ping)
    return engine


def retry_disconnect(run: Callable[[], T]) -> T:
    """``run()``, and once more if it failed on a dead connection (not pinged before use).

    Only for work that is one transaction and safe to do again: a rolled-back claim or
    fan-out batch. The pool has dropped the connections older than the failure, so the
    second try gets a fresh one.
    """
    try:
        return run()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return run()


def dispose_all() -> None:
    """Forget engines (after fork, or in tests)."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
