"""A broadcast to 10,000 customers through real Redis and a real Celery worker.

Each customer gets exactly one notification; opted-out ones are never sent to;
Telegram (a local Bot API simulator, per-provider limit) and push (the sandbox,
per-channel limit) are rate-limited by the global token bucket, and each rate is
measured where the provider sees it: the simulator's request arrival times, the
sandbox journal's times. So that the test fits this 2-core machine, most customers are
inside their quiet hours: their notification is created with its attempt postponed, and
only ~200 sends happen.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from dispatcher.customer_tables import ContactPoint, Customer
from dispatcher.models import Attempt, Notification
from dispatcher.sweep import sweep
from tests.e2e.world import world
from tests.simulators import telegram
from tests.simulators.server import serve
from tests.support.scenario import PUSH_TOKEN, outbox
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

TOTAL, TELEGRAM, PUSH, OPTED_OUT = 10_000, 60, 100, 500
RATE = 5.0  #: messages/s for Telegram: well under what the worker could offer
PUSH_RATE = 25.0  #: messages/s for push (the sandbox), a channel-wide limit
JITTER = 0.2  #: seconds between taking a token and the request reaching the simulator


class Timed:
    """ASGI wrapper recording when each sendMessage request reached the simulator."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.arrivals: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/sendMessage"):
            self.arrivals.append(time.monotonic())
        await self.app(scope, receive, send)


def customers(engine: Any, now: datetime) -> dict[str, list[str]]:
    """Bulk-insert the audience; returns customer ids by group."""
    quiet_from = (now - timedelta(hours=2)).strftime("%H:%M")
    quiet_to = (now + timedelta(hours=2)).strftime("%H:%M")
    groups: dict[str, list[str]] = {"telegram": [], "push": [], "opted_out": [], "quiet": []}
    rows: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    for i in range(TOTAL):
        group = (
            "telegram"
            if i < TELEGRAM
            else "push"
            if i < TELEGRAM + PUSH
            else "opted_out"
            if i < TELEGRAM + PUSH + OPTED_OUT
            else "quiet"
        )
        cid = f"bc-{i:05d}"
        groups[group].append(cid)
        rows.append(
            {
                "id": cid,
                "locale": None,
                "timezone": "UTC",
                "channel_order": [],
                "opt_out_channels": [],
                "opt_out_categories": ["promo"] if group == "opted_out" else [],
                "quiet_start": quiet_from if group == "quiet" else None,
                "quiet_end": quiet_to if group == "quiet" else None,
                "max_per_day": {},
                "created_at": now,
                "updated_at": now,
            }
        )
        channel, address = (
            ("telegram", str(700_000_000 + i)) if group == "telegram" else ("push", PUSH_TOKEN)
        )
        contacts.append(
            {
                "customer_id": cid,
                "channel": channel,
                "address": address,
                "verified": False,
                "status": "active",
                "invalid_reason": None,
                "created_at": now,
                "updated_at": now,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(Customer.__table__), rows)  # type: ignore[attr-defined]
        connection.execute(insert(ContactPoint.__table__), contacts)  # type: ignore[attr-defined]
    return groups


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


@pytest.mark.timeout(300)
def test_broadcast_to_10000_customers(database_url: str, redis_url: str, tmp_path: Path):
    """Fan-out by the worker: one notification each, none sent to the opted out, Telegram
    never faster than its limit across the worker's processes."""
    sim = Timed(telegram.create_app())
    with (
        serve(sim) as url,
        world(
            database_url=database_url,
            redis_url=redis_url,
            data=tmp_path,
            channels={"telegram": ["telegram"]},
            providers={"telegram": {"base_url": url, "token": telegram.TOKEN, "rate_limit": RATE}},
            rate_limits={"push": PUSH_RATE},
        ) as w,
    ):
        engine = w.runtime.engine
        groups = customers(engine, datetime.now(UTC))
        ids = [cid for group in groups.values() for cid in group]
        response = w.api.post(
            "/v1/broadcasts",
            json={
                "cascade": "basic",
                "category": "promo",
                "content": {"title": "Sale", "text": "Half price today"},
                "audience": {"customer_ids": ids},
            },
            timeout=60,
        )
        assert response.status_code == 202, response.text
        bid = response.json()["id"]

        def progress() -> dict[str, Any] | None:
            got = w.api.get(
                f"/v1/broadcasts/{bid}", timeout=60
            ).json()  # SQLite: a batch holds the lock
            return got if got["state"] != "fanning_out" else None

        fanned = wait_until(progress, timeout=150, what="the fan-out to finish")
        assert (fanned["audience"], fanned["created"]) == (TOTAL, TOTAL)
        assert fanned["suppressed"] == {"opted_out_category": OPTED_OUT}

        with Session(engine) as session:
            per_customer = dict(
                session.exec(
                    select(Notification.customer_id, func.count())
                    .where(Notification.broadcast_id == bid)
                    .group_by(Notification.customer_id)
                ).all()
            )
        assert per_customer == {cid: 1 for cid in ids}

        def sent_all() -> bool:
            # Beat's part: a send group offers the token bucket more sends at once than it
            # grants within CASCADE_THROTTLE_MAX_WAIT; those go back to the database with
            # their next slot as retry time, and the sweep rings them when it comes.
            sweep(w.runtime)
            sent = w.api.get(f"/v1/broadcasts/{bid}", timeout=60).json()["sent"]
            return bool(sent == TELEGRAM + PUSH)

        wait_until(sent_all, timeout=150, what="the telegram and push sends")

        # Exactly one send per reachable customer, none to the opted out or the quiet ones.
        chats = sorted(str(m["chat"]["id"]) for m in sim.app.sent)
        assert chats == sorted(str(700_000_000 + i) for i in range(TELEGRAM))
        journal = outbox(tmp_path / "outbox.jsonl")
        pushed = [line["reference"] for line in journal]
        assert len(pushed) == len(set(pushed)) == PUSH
        with Session(engine) as session:
            reached = set(
                session.exec(
                    select(Notification.customer_id)
                    .join(Attempt, col(Attempt.notification_id) == col(Notification.id))
                    .where(Notification.broadcast_id == bid, col(Attempt.sent_at).is_not(None))
                ).all()
            )
            waiting = session.exec(
                select(func.count())
                .select_from(Attempt)
                .join(Notification, col(Attempt.notification_id) == col(Notification.id))
                .where(
                    Notification.broadcast_id == bid,
                    Attempt.state == "pending",
                    col(Attempt.published_at).is_(None),
                )
            ).one()
        assert reached == set(groups["telegram"]) | set(groups["push"])
        assert not reached & set(groups["opted_out"])
        assert waiting == len(groups["quiet"])

        # Each channel's rate, measured where its provider sees the requests: the
        # Telegram simulator's arrival times, the push sandbox's journal times.
        push_times = sorted(float(line["at"]) for line in journal)
        for arrivals, rate, count in (
            (sim.arrivals, RATE, TELEGRAM),
            (push_times, PUSH_RATE, PUSH),
        ):
            assert len(arrivals) == count
            for window in (1.0, 2.0, 5.0):
                allowed = 1 + rate * (window + JITTER)  # burst 1
                assert max_in_window(arrivals, window) <= allowed, (rate, window, allowed)
            assert arrivals[-1] - arrivals[0] >= (count - 1) / rate - JITTER
