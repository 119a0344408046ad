"""Bulk rows for the volume figures: real rows written by Cascade, cloned with Core inserts.

A *template* is one notification as Cascade itself wrote it (its row, its attempts, its
events), read back after a real run. Cloning copies every column of those rows, so the
clones stay valid when the schema gains columns, and only ids, states and times change.
Batches in one transaction each, written by :func:`dispatcher.bulk.insert_rows` (COPY on
PostgreSQL, Core ``insert()`` executemany on SQLite), as the broadcast fan-out writes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine, MetaData, Table, select, text

from dispatcher.bulk import insert_rows

Rowdict = dict[str, Any]
Patch = Callable[[int, Rowdict], Rowdict]
Clone = tuple[Rowdict, list[Rowdict], list[Rowdict]]  #: a notification, its attempts and events


def naive_now() -> datetime:
    """Now as the database stores it: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def tables(engine: Engine) -> dict[str, Table]:
    meta = MetaData()
    meta.reflect(engine)
    return dict(meta.tables)


@dataclass
class Template:
    notification: Rowdict
    attempts: list[Rowdict]
    events: list[Rowdict]


def template(engine: Engine, where: str) -> Template | None:
    """The first notification matching SQL condition ``where`` (on ``notification``)."""
    t = tables(engine)
    notification, attempt, event = t["notification"], t["attempt"], t["event"]
    with engine.connect() as conn:
        picked = conn.execute(
            select(notification).where(notification.c.id.in_(_ids(where))).limit(1)
        ).first()
        if picked is None:
            return None
        nid = picked._mapping["id"]
        attempts = conn.execute(
            select(attempt).where(attempt.c.notification_id == nid).order_by(attempt.c.step)
        ).all()
        events = conn.execute(
            select(event).where(event.c.notification_id == nid).order_by(event.c.id)
        ).all()
    return Template(
        dict(picked._mapping),
        [dict(a._mapping) for a in attempts],
        [{k: v for k, v in e._mapping.items() if k != "id"} for e in events],
    )


def _ids(where: str) -> Any:
    return text(f"SELECT id FROM notification WHERE {where}")  # noqa: S608 - our own constants


def clones(
    tpl: Template,
    n: int,
    patch_notification: Patch,
    patch_attempt: Patch,
    with_events: bool = True,
) -> Iterator[Clone]:
    """``n`` copies of the template with fresh ids; the patches set states and times."""
    for i in range(n):
        nid = str(uuid.uuid4())
        notification = patch_notification(i, {**tpl.notification, "id": nid})
        notification.pop("idempotency_key", None)
        attempts, ids = [], {}
        for a in tpl.attempts:
            aid = ids[a["id"]] = str(uuid.uuid4())
            fresh = {**a, "id": aid, "notification_id": nid, "idempotency_key": aid}
            fresh["provider_message_id"] = f"bench-{aid}" if a["provider_message_id"] else None
            attempt = patch_attempt(i, fresh)
            if "notification_created_at" in attempt:  # the copies stay the notification's
                attempt["notification_created_at"] = notification["created_at"]
                attempt["cascade"] = notification["cascade"]
            attempts.append(attempt)
        events = (
            [
                {**e, "notification_id": nid, "attempt_id": ids.get(e["attempt_id"])}
                for e in tpl.events
            ]
            if with_events
            else []
        )
        yield notification, attempts, events


def insert(
    engine: Engine,
    rows: Iterable[Clone],
    batch: int = 5000,
) -> tuple[int, float]:
    """Insert cloned notifications in batches; returns (notifications, seconds)."""
    t = tables(engine)
    started, total = time.perf_counter(), 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, batch)):
        with engine.begin() as conn:
            insert_rows(conn, t["notification"], [c[0] for c in chunk])
            insert_rows(conn, t["attempt"], [a for c in chunk for a in c[1]])
            insert_rows(conn, t["event"], [e for c in chunk for e in c[2]])
        total += len(chunk)
    return total, time.perf_counter() - started


def analyze(engine: Engine) -> None:
    """Fresh planner statistics after a bulk load (autovacuum may not have run yet)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
