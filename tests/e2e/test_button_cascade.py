"""Telegram can stop a cascade: push (unread) -> Telegram waiting for its "Got it" button ->
SMS. A real worker sends through the Telegram and Twilio simulators; presses arrive at our
webhook signed with the bot's secret token, as Telegram sends them.

One world, two notifications (a worker start is the expensive part):

* A: the customer presses the button: A finishes ``read`` and no SMS is ever sent for it;
  the identical update replayed, and a second press, change nothing.
* B: nobody presses; forged presses (a wrong MAC, B's MAC on A's reference, a wrong
  secret token) confirm nothing; at the timeout B's SMS is sent exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.migrate import upgrade
from dispatcher.sweep import sweep
from tests.e2e.world import World, world
from tests.simulators import telegram, twilio
from tests.simulators.server import serve
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CASCADE = """\
name: confirm
ttl: 1h
quiet_hours: ignore
steps:
  - channel: push
    wait_for: read
    timeout: 60s
  - channel: telegram
    wait_for: read
    timeout: 120s
  - channel: sms
    wait_for: delivered
    timeout: 240s
"""
HOOK_SECRET = "tg-secret-123"
CHATS = {"a": "111111111", "b": "222222222"}
PHONES = {"a": "+14155550101", "b": "+14155550102"}


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def press(w: World, data: str, chat: str, query_id: str, secret: str = HOOK_SECRET) -> int:
    """POST a ``callback_query`` update to our Telegram webhook, as Telegram does."""
    headers, body = telegram.callback_update(
        secret=secret, chat_id=int(chat), message_id=1, data=data, query_id=query_id
    )
    return httpx.post(w.webhook("telegram"), content=body, headers=headers).status_code


def test_a_press_stops_the_cascade_and_no_press_sends_one_sms(
    redis_base: str, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'cascade.db'}"
    upgrade(db)
    cascades = tmp_path / "cascades"
    cascades.mkdir()
    (cascades / "confirm.yaml").write_text(CASCADE)
    tg_sim, sms_sim = telegram.create_app(), twilio.create_app()
    with serve(tg_sim) as tg_url, serve(sms_sim) as sms_url:
        providers: dict[str, dict[str, Any]] = {
            "telegram": {
                "base_url": tg_url,
                "token": telegram.TOKEN,
                "webhook_secret": HOOK_SECRET,
            },
            "twilio": twilio.provider_settings(sms_url),
        }
        channels = {"telegram": ["telegram"], "sms": ["twilio"]}  # push: the sandbox, unread
        with world(
            database_url=db,
            redis_url=f"{redis_base}/10",
            data=tmp_path,
            channels=channels,
            providers=providers,
            cascades_dir=str(cascades),
        ) as w:
            nids = {}
            for who in ("a", "b"):
                contacts = [
                    {"channel": "push", "address": f"device-{who}-" + "z" * 30},
                    {"channel": "telegram", "address": CHATS[who]},
                    {"channel": "sms", "address": PHONES[who]},
                ]
                w.api.put(f"/v1/customers/{who}", json={"contacts": contacts})
                nids[who] = w.api.post(
                    "/v1/notifications",
                    json={"customer_id": who, "cascade": "confirm", "content": {"text": "Hi"}},
                ).json()["id"]
                w.step_done(nids[who], 0)
            sweep(w.runtime, now=later(61))  # both pushes unread: Telegram goes out
            tg = {who: w.step_done(nid, 1) for who, nid in nids.items()}
            assert [tg["a"]["state"], tg["b"]["state"]] == ["sent", "sent"]
            buttons = {
                sent["chat"]["id"]: sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                for sent in tg_sim.sent
            }
            data_a, data_b = buttons[int(CHATS["a"])], buttons[int(CHATS["b"])]
            assert data_a.startswith(f"ack:{tg['a']['id']}:")

            # Forged presses on B: confirm nothing.
            mac_b = data_b.rsplit(":", 1)[1]
            forged = [
                press(w, f"ack:{tg['b']['id']}:{'A' * 16}", CHATS["b"], "f1"),  # wrong MAC
                press(w, f"ack:{tg['a']['id']}:{mac_b}", CHATS["b"], "f2"),  # B's MAC, A's ref
                press(w, data_b, CHATS["b"], "f3", secret="not-the-secret"),  # not Telegram
            ]
            assert forged == [200, 200, 403]
            assert [w.show(nid)["state"] for nid in nids.values()] == ["in_progress"] * 2

            # A's customer presses the button (the simulator posts the signed update).
            pressed = httpx.post(
                f"{tg_url}/_sim/callback",
                json={
                    "message_id": tg["a"]["provider_message_id"],
                    "url": w.webhook("telegram"),
                    "secret": HOOK_SECRET,
                },
            ).json()
            assert pressed["status_code"] == 200
            assert '"answerCallbackQuery"' in pressed["body"]
            wait_until(lambda: w.show(nids["a"])["state"] == "read", what="A read")
            # A second press and a replayed update change nothing.
            assert press(w, data_a, CHATS["a"], "again") == 200
            assert press(w, data_a, CHATS["a"], "again") == 200
            assert w.show(nids["b"])["state"] == "in_progress"

            sweep(w.runtime, now=later(200))  # Telegram's timeout passed: B escalates
            sms = w.step_done(nids["b"], 2)
            sweep(w.runtime, now=later(500))  # and past the SMS step's: nothing is resent
            wait_until(lambda: w.show(nids["b"])["state"] == "exhausted", what="B exhausted")

            assert w.attempts(nids["a"]) == [
                ("push", "sandbox", "escalated"),
                ("telegram", "telegram", "read"),
            ]
            assert w.attempts(nids["b"]) == [
                ("push", "sandbox", "escalated"),
                ("telegram", "telegram", "escalated"),
                ("sms", "twilio", "escalated"),
            ]
            assert sms["provider"] == "twilio"
            assert [m["to"] for m in sms_sim.sent] == [PHONES["b"]]
            events = [e["type"] for e in w.show(nids["a"])["events"]]
            assert events.count("read") == 1
