"""A Telegram step waiting for its "Got it" button, on both databases: a press finishes the
notification and no later step is created; a replayed press is applied once; a press after
the notification finished is recorded as a late receipt. Time moves on the injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.dispatch import send_attempt
from dispatcher.publisher import RecordingPublisher
from dispatcher.runtime import Runtime, build_router
from dispatcher.sweep import sweep
from tests.conftest import AUTH, make_settings
from tests.simulators import telegram
from tests.simulators.server import serve
from tests.simulators.sim_common import Simulator
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, show

CASCADE = """\
name: confirm
ttl: 1h
quiet_hours: ignore
steps:
  - channel: telegram
    wait_for: read
    timeout: 120s
  - channel: sms
    wait_for: delivered
    timeout: 240s
"""
HOOK_SECRET = "tg-secret-123"
CHAT = "555000111"


@dataclass
class Setup:
    api: TestClient
    runtime: Runtime
    publisher: RecordingPublisher
    sim: Simulator
    clock: FakeClock

    def notify(self) -> str:
        contacts = [{"channel": "telegram", "address": CHAT}, {"channel": "sms", "address": PHONE}]
        assert self.api.put("/v1/customers/c1", json={"contacts": contacts}).status_code == 200
        body = {"customer_id": "c1", "cascade": "confirm", "content": {"text": "Hi"}}
        nid = str(self.api.post("/v1/notifications", json=body).json()["id"])
        assert self.send_next() == "sent"
        return nid

    def send_next(self) -> str:
        return send_attempt(self.runtime, self.publisher.published[-1].attempt_id)

    def press(self, query_id: str) -> int:
        """The customer presses the button of the last message Telegram took."""
        data = self.sim.sent[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        headers, body = telegram.callback_update(
            secret=HOOK_SECRET, chat_id=int(CHAT), message_id=1, data=data, query_id=query_id
        )
        answer = self.api.post("/v1/webhooks/telegram", content=body, headers=headers)
        return int(answer.status_code)


@pytest.fixture(name="setup")
def _setup(
    database_url: str, redis_url: str, tmp_path: Path, db_engine: Engine, clock: FakeClock
) -> Iterator[Setup]:
    cascades = tmp_path / "cascades"
    cascades.mkdir()
    (cascades / "confirm.yaml").write_text(CASCADE)
    sim = telegram.create_app()
    with serve(sim) as base:
        settings = make_settings(
            database_url,
            redis_url,
            tmp_path,
            cascades_dir=cascades,
            channels={"telegram": ["telegram"]},
            providers={
                "telegram": {
                    "base_url": base,
                    "token": telegram.TOKEN,
                    "webhook_secret": HOOK_SECRET,
                }
            },
        )
        router = build_router(settings, None)
        publisher = RecordingPublisher()
        cascades_ = load_cascades(settings.cascades_dir, router.capabilities())
        runtime = Runtime(settings, cascades_, db_engine, router, publisher, clock)
        with TestClient(create_app(runtime), headers=AUTH) as api:
            yield Setup(api, runtime, publisher, sim, clock)
        router.close()


def event_types(setup: Setup, nid: str) -> list[str]:
    return [e["type"] for e in show(setup.api, nid)["events"]]


def test_a_press_finishes_the_notification_and_nothing_follows(setup: Setup):
    nid = setup.notify()
    assert setup.press("q1") == 200
    assert setup.press("q1") == 200  # Telegram redelivers the same update
    assert setup.press("q2") == 200  # the customer presses again
    view = show(setup.api, nid)
    assert view["state"] == "read"
    assert [(a["channel"], a["state"]) for a in view["attempts"]] == [("telegram", "read")]
    assert event_types(setup, nid).count("read") == 1
    setup.clock.advance(400)
    sweep(setup.runtime)
    assert len(setup.publisher.published) == 1  # no SMS attempt was ever queued
    assert len(show(setup.api, nid)["attempts"]) == 1


def test_a_press_after_the_notification_finished_is_a_late_receipt(setup: Setup):
    nid = setup.notify()
    setup.clock.advance(121)
    sweep(setup.runtime)  # nobody pressed: the SMS step starts
    assert setup.send_next() == "sent"
    setup.clock.advance(241)
    sweep(setup.runtime)
    assert show(setup.api, nid)["state"] == "exhausted"
    assert setup.press("late") == 200
    view = show(setup.api, nid)
    assert view["state"] == "exhausted"
    assert view["attempts"][0]["state"] == "escalated"
    assert event_types(setup, nid).count("late_receipt") == 1
