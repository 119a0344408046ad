"""Migrations that rewrite existing rows: what was there before is carried over."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from dispatcher.migrate import alembic_config
from tests.support.services import drop_postgres_database, postgres_database

PERIOD = "5c3b255aefa7"  #: attempts carry their notification's created_at and cascade


def upgrade_heads_but(config: Any, skipped: str) -> None:
    """Every revision but ``skipped`` and those after it (through ``down_revision`` or
    ``depends_on``): they wait for the final ``heads``."""
    script = ScriptDirectory.from_config(config)
    for revision in reversed(list(script.walk_revisions())):  # base first
        needed = {r.revision for r in script.iterate_revisions(revision.revision, "base")}
        if skipped not in needed:
            command.upgrade(config, revision.revision)


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
    upgrade_heads_but(config, PERIOD)
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


BATCHES = "1f7845444935"  #: broadcasts cut into batches (bounds) claimed in broadcast_batch


def test_a_fan_out_in_flight_continues_from_its_cursor(empty_url: str):
    """Batches of 1,000 over the members after the cursor; the counter starts again."""
    config = alembic_config(empty_url)
    upgrade_heads_but(config, BATCHES)
    engine = create_engine(empty_url)
    with engine.begin() as connection:
        for bid, state in (("b1", "fanning_out"), ("b2", "sending")):
            connection.execute(
                text(
                    "INSERT INTO broadcast (id, cascade, category, content, ttl_seconds, "
                    "audience_kind, audience, state, batches, cursor, processed, created, "
                    "api_key_id, created_at, progress_at) VALUES (:id, 'basic', 'promo', '{}', "
                    "60, 'ids', 2500, :state, 3, 'c0499', 500, 500, '', "
                    "'2026-11-01 10:00:00', '2026-11-01 10:00:00')"
                ),
                {"id": bid, "state": state},
            )
            connection.execute(
                text("INSERT INTO broadcast_member (broadcast_id, customer_id) VALUES (:b, :c)"),
                [{"b": bid, "c": f"c{i:04d}"} for i in range(2500)],
            )
    command.upgrade(config, "heads")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, batches, CAST(bounds AS VARCHAR) FROM broadcast ORDER BY id")
        ).all()
    engine.dispose()
    assert [(b, n, json.loads(bounds)) for b, n, bounds in rows] == [
        ("b1", 0, ["c0500", "c1500"]),
        ("b2", 3, []),
    ]


#: The heads a database upgraded by the previous release holds (independent branches).
PREVIOUS_HEADS = (
    "24665776211f",
    "5c3b255aefa7",
    "a7b8c9d0e1f2",
    "b1c2d3e4f5a6",
    "c3d4e5f6a7b8",
    "e5f6a7b8c9d0",
    "f6a7b8c9d0e1",
    "d8e9f0a1b2c3",
)


def versions_of(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    return sorted(v for (v,) in rows)


def test_a_database_at_the_previous_branches_upgrades_to_one_head(empty_url: str, tmp_path: Path):
    """The join revision takes a database holding every branch head of the previous
    release (one of them another's dependency too) to where a fresh database ends."""
    config = alembic_config(empty_url)
    for head in PREVIOUS_HEADS:
        command.upgrade(config, head)
    command.upgrade(config, "heads")
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    command.upgrade(alembic_config(fresh), "heads")
    assert versions_of(empty_url) == versions_of(fresh)
    assert len(versions_of(fresh)) == 1
