"""Bulk writes (COPY on PostgreSQL) store exactly what a Core insert stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from dispatcher.bulk import insert_rows
from dispatcher.models import Event, Notification

NOW = datetime(2026, 11, 29, 12, 30, 15, 123456, tzinfo=UTC)


def _notification(nid: str, channels: list[str]) -> dict[str, Any]:
    return {
        "id": nid,
        "customer_id": f"customer {nid}",
        "cascade": "basic",
        "steps": [
            {"channel": c, "contact_id": 1, "wait_for": "read", "timeout": 60} for c in channels
        ],
        "category": "promo",
        "content": {"push": {"title": 'Tab\there, \\ and "quotes"\nnewline', "body": "é ✓"}},
        "idempotency_key": None,
        "request_hash": None,
        "api_key_id": "k",
        "state": "accepted",
        "reason": None,
        "respect_quiet_hours": True,
        "expires_at": NOW.astimezone(UTC) + timedelta(hours=1),
        "created_at": NOW,
        "finished_at": None,
        "cost": 0.25,
        "broadcast_id": "b1",
    }


def _read(engine: Engine, ids: list[str]) -> list[dict[str, Any]]:
    table = Notification.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.id.in_(ids)).order_by(table.c.id))
        return [
            {k: v for k, v in r._mapping.items() if k not in ("id", "customer_id")} for r in rows
        ]


def test_bulk_rows_equal_core_insert_rows(db_engine: Engine):
    """Escaping, JSON, times (aware in, naive UTC stored), the sms_step default, serial ids."""
    table = Notification.__table__  # type: ignore[attr-defined]
    with db_engine.begin() as connection:
        connection.execute(insert(table), [_notification("a1", ["push", "sms"])])
        connection.execute(insert(table), [_notification("a2", ["push"])])
        written = insert_rows(
            connection, table, [_notification("b1", ["push", "sms"]), _notification("b2", ["push"])]
        )
        events = [
            {
                "notification_id": "b1",
                "attempt_id": None,
                "customer_id": "customer b1",
                "type": t,
                "channel": None,
                "at": NOW,
                "source": "broadcast",
                "detail": {"reason": None, "n": 1},
            }
            for t in ("accepted", "suppressed")
        ]
        insert_rows(connection, Event.__table__, events)  # type: ignore[attr-defined]
        assert insert_rows(connection, table, []) == 0
    assert written == 2
    core, bulk = _read(db_engine, ["a1", "a2"]), _read(db_engine, ["b1", "b2"])
    assert [r["sms_step"] for r in bulk] == [True, False]
    assert [r["created_at"] for r in bulk] == [NOW, NOW]
    assert bulk == core
    with db_engine.connect() as connection:
        stored = connection.execute(
            select(Event.id, Event.type, Event.detail).order_by(Event.id)  # type: ignore[call-overload]
        ).all()
    assert [(t, d) for _, t, d in stored] == [
        ("accepted", {"reason": None, "n": 1}),
        ("suppressed", {"reason": None, "n": 1}),
    ]
    assert stored[0][0] is not None
    assert stored[1][0] == stored[0][0] + 1
