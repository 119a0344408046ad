"""The suite's ``truncate`` survives being chosen as a deadlock victim.

The fault suite empties its database while its beat may be folding the stats
rollup; CI once failed at a scenario's setup with ``deadlock detected`` on the
``TRUNCATE``. Here a second session builds exactly that cycle: it holds a lock on
the last table the ``TRUNCATE`` needs, then asks for the first one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel

from dispatcher.customer_tables import Customer
from dispatcher.db import get_engine
from dispatcher.migrate import upgrade
from tests.support.database import truncate
from tests.support.services import drop_postgres_database, postgres_database

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 29, tzinfo=UTC)


@pytest.fixture(name="pg_engine")
def _pg_engine() -> Iterator[Engine]:
    name = f"cascade_truncate_{os.getpid()}"
    url = postgres_database(name)
    upgrade(url)
    engine = get_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_postgres_database(name)


def test_truncate_runs_again_after_losing_a_deadlock(pg_engine: Engine):
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    first, last = tables[0], tables[-1]
    with Session(pg_engine) as setup:
        setup.add(Customer(id="c-1", created_at=NOW, updated_at=NOW))
        setup.commit()
    errors: list[BaseException] = []

    def empty() -> None:
        try:
            truncate(pg_engine)
        except BaseException as error:
            errors.append(error)

    with pg_engine.connect() as writer:
        writer.execute(text(f"LOCK TABLE {last} IN ROW EXCLUSIVE MODE"))
        emptying = threading.Thread(target=empty)
        emptying.start()
        # Wait until the TRUNCATE holds the first tables and waits for the last one.
        for _ in range(200):
            with pg_engine.connect() as watcher:
                waiting = watcher.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                ).scalar_one()
            if waiting:
                break
            threading.Event().wait(0.05)
        assert waiting, "the TRUNCATE never waited for the writer's lock"
        writer.execute(text(f"LOCK TABLE {first} IN ROW EXCLUSIVE MODE"))
        writer.commit()
        emptying.join(timeout=30)
    assert not emptying.is_alive()
    assert errors == []
    with pg_engine.connect() as check:
        assert check.execute(text("SELECT count(*) FROM customer")).scalar_one() == 0
