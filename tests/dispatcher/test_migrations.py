"""Migrations that rewrite existing rows: what was there before is carried over."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from dispatcher.migrate import alembic_config
from tests.support.services import drop_postgres_database, postgres_database

PERIOD = "5c3b255aefa7"  #: attempts carry their notification's created_at and cascade


@pytest.fixture(name="empty_url")
def _empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    name = f"cascade_migration_{os.getpid()}"
    yield postgres_database(name)
    drop_postgres_database(name)


def test_attempt_period_backfilled_from_the_notification(empty_url: str):
    config = alembic_config(empty_url)
    script = ScriptDirectory.from_config(config)
    for head in script.get_heads():
        after = getattr(script.get_revision(head).module, "AFTER", ())  # e.g. the stats rollup
        if head != PERIOD and PERIOD not in after:
            command.upgrade(config, head)
    engine = create_engine(empty_url)
    with engine.begin() as connection:
        for nid, cascade, created in (
            ("n1", "basic", "2026-11-01 10:00:00"),
            ("n2", "otp", "2026-11-02 11:30:00"),
        ):
            connection.execute(
                text(
                    "INSERT INTO notification (id, customer_id, cascade, steps, category, "
                    "content, api_key_id, state, respect_quiet_hours, expires_at, created_at, "
                    "cost) VALUES (:id, 'c', :cascade, '[]', 'transactional', '{}', '', "
                    "'in_progress', true, :created, :created, 0)"
                ),
                {"id": nid, "cascade": cascade, "created": created},
            )
            connection.execute(
                text(
                    "INSERT INTO attempt (id, notification_id, step, channel, wait_for, "
                    "timeout_seconds, state, idempotency_key, due_at, tries, cost, created_at) "
                    "VALUES (:aid, :id, 0, 'push', 'read', 60, 'sent', :aid, :created, 1, 0, "
                    "'2026-11-20 00:00:00')"
                ),
                {"aid": f"a-{nid}", "id": nid, "created": created},
            )
    command.upgrade(config, "heads")
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, cascade, CAST(notification_created_at AS VARCHAR) FROM attempt "
                "ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [(a, c, str(t)[:19]) for a, c, t in rows] == [
        ("a-n1", "basic", "2026-11-01 10:00:00"),
        ("a-n2", "otp", "2026-11-02 11:30:00"),
    ]
