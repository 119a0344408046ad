"""``GET /l/{token}`` on the real database (SQLite and PostgreSQL): an e-mail step waiting
for ``clicked`` before SMS. A person's click confirms it (no SMS), previews and scanners
are redirected but count nothing, forged tokens are refused, stats count per link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from config.cascade_files import load_cascades
from dispatcher.api.app import create_app
from dispatcher.claims import build_message
from dispatcher.links import link_key, make_token
from dispatcher.models import Attempt, Event, Notification
from dispatcher.publisher import RecordingPublisher
from dispatcher.receipt_tables import APP_LINK, APP_PAGE, LinkClick
from dispatcher.runtime import Runtime, build_router, capabilities
from dispatcher.sweep import sweep
from dispatcher.tokens import receipt_token
from tests.conftest import AUTH, make_settings
from tests.support.clock import FakeClock
from tests.support.dispatching import drain
from tests.support.scenario import EMAIL, PHONE, PUSH_TOKEN, put_customer, show

BASE = "https://cascade.example"
TARGET = "https://shop.example/o/42?customer=alice"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Safari/605.1.15"
CASCADE = """\
name: clicks
ttl: 1h
quiet_hours: ignore
steps:
  - {channel: email, wait_for: clicked, timeout: 60s}
  - {channel: sms, wait_for: delivered, timeout: 60s}
"""
SMS_FIRST = """\
name: sms_first
ttl: 1h
quiet_hours: ignore
paid_last: false
steps:
  - {channel: sms, wait_for: clicked, timeout: 60s}
  - {channel: email, wait_for: sent, timeout: 60s}
"""
PUSH_TAP = """\
name: push_tap
ttl: 1h
quiet_hours: ignore
steps:
  - {channel: push, wait_for: clicked, timeout: 60s}
  - {channel: sms, wait_for: delivered, timeout: 60s}
"""
VARIANTS = """\
name: variants
ttl: 1h
quiet_hours: ignore
steps:
  - {channel: email, wait_for: sent, timeout: 60s, track_links: false}
  - {channel: sms, wait_for: delivered, timeout: 60s}
experiment:
  variants:
    - {name: control, weight: 1}
    - name: clicky
      weight: 1
      steps:
        - {channel: email, wait_for: clicked, timeout: 60s}
        - {channel: sms, wait_for: delivered, timeout: 60s}
"""
UNTRACKED = """\
name: untracked
ttl: 1h
quiet_hours: ignore
steps:
  - {channel: email, wait_for: sent, timeout: 60s, track_links: false}
  - {channel: sms, wait_for: delivered, timeout: 60s, track_links: false}
"""


@pytest.fixture(name="cascades_dir")
def _cascades_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cascades"
    directory.mkdir()
    (directory / "clicks.yaml").write_text(CASCADE)
    (directory / "untracked.yaml").write_text(UNTRACKED)
    (directory / "sms_first.yaml").write_text(SMS_FIRST)
    (directory / "push_tap.yaml").write_text(PUSH_TAP)
    (directory / "variants.yaml").write_text(VARIANTS)
    return directory


@pytest.fixture(name="tracked")
def _tracked(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    db_engine: Engine,
    clock: FakeClock,
    cascades_dir: Path,
) -> Iterator[tuple[Runtime, TestClient]]:
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        cascades_dir=cascades_dir,
        link_tracking=True,
        public_url=BASE,
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    router = build_router(settings, client)
    cascades = load_cascades(settings.cascades_dir, capabilities(settings, router))
    runtime = Runtime(settings, cascades, db_engine, router, RecordingPublisher(), clock)
    with TestClient(create_app(runtime), headers=AUTH) as api:
        yield runtime, api


def sent_email(
    runtime: Runtime, api: TestClient, customer: str, cascade: str = "clicks", text: str = ""
) -> tuple[str, str]:
    """A notification whose e-mail (with one link) is sent: (notification id, attempt id)."""
    put_customer(
        api,
        customer,
        [{"channel": "email", "address": EMAIL}, {"channel": "sms", "address": PHONE}],
    )
    answer = api.post(
        "/v1/notifications",
        json={
            "customer_id": customer,
            "cascade": cascade,
            "content": {"title": "Order 42", "text": text or f"Your order: {TARGET}"},
        },
    )
    assert answer.status_code == 202, answer.text
    drain(runtime)
    nid = answer.json()["id"]
    attempt = show(api, nid)["attempts"][0]
    assert (attempt["channel"], attempt["state"]) == ("email", "sent")
    return nid, attempt["id"]


def link(runtime: Runtime, attempt_id: str, index: int = 0) -> str:
    return (
        f"/l/{make_token(link_key(runtime.settings.effective_receipt_secret), attempt_id, index)}"
    )


def visit(api: TestClient, path: str, agent: str | None = BROWSER, method: str = "GET") -> Any:
    headers = {"Authorization": ""} | ({"User-Agent": agent} if agent else {})
    request = api.build_request(method, path, headers=headers)
    if agent is None:
        del request.headers["user-agent"]
    return api.send(request, follow_redirects=False)


def clicks(runtime: Runtime) -> list[tuple[str, int, str, bool]]:
    with Session(runtime.engine) as session:
        rows = session.exec(select(LinkClick).order_by(col(LinkClick.id))).all()
        return [(r.attempt_id, r.link, r.page, r.first) for r in rows]


def events(api: TestClient, nid: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in show(api, nid)["events"] if e["type"] == type_]


def test_sent_message_carries_a_tracked_link_to_the_original(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """The e-mail as sent holds a short signed link; following it leads to the original."""
    runtime, api = tracked
    nid, attempt_id = sent_email(runtime, api, "lk1")
    with Session(runtime.engine) as session:
        notification = session.get(Notification, nid)
        attempt = session.get(Attempt, attempt_id)
        assert notification is not None
        assert attempt is not None
        message = build_message(runtime, notification, attempt, EMAIL)
    assert TARGET not in message.text
    assert message.text == f"Your order: {BASE}{link(runtime, attempt_id)}"
    clock.advance(30)
    answer = visit(api, link(runtime, attempt_id))
    assert answer.status_code == 302
    assert answer.headers["location"] == TARGET
    assert answer.headers["cache-control"] == "no-store"


def test_a_click_confirms_the_step_and_no_sms_is_sent(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """First click: notification 'clicked', history event, timer gone; the SMS step is
    never created; a second click is only counted."""
    runtime, api = tracked
    nid, attempt_id = sent_email(runtime, api, "lk2")
    clock.advance(30)
    assert visit(api, link(runtime, attempt_id)).status_code == 302
    state = show(api, nid)
    assert state["state"] == "clicked"
    assert state["attempts"][0]["state"] == "read"  # a click implies it was read
    assert state["attempts"][0]["clicked_at"] == state["attempts"][0]["read_at"] is not None
    clock.advance(30)
    assert visit(api, link(runtime, attempt_id)).headers["location"] == TARGET
    sweep(runtime, now=clock.advance(120))
    drain(runtime)
    assert [a["channel"] for a in show(api, nid)["attempts"]] == ["email"]
    assert [(e["detail"]["link"], e["detail"]["first"]) for e in events(api, nid, "clicked")] == [
        (0, True),
        (0, False),
    ]
    assert len(events(api, nid, "finished")) == 1
    with Session(runtime.engine) as session:  # the history names links by index, no URL
        rows = session.exec(select(Event).where(Event.notification_id == nid)).all()
    assert "shop.example" not in repr([r.detail for r in rows])
    page = "https://shop.example/o/42"
    assert clicks(runtime) == [(attempt_id, 0, page, True), (attempt_id, 0, page, False)]
    stats = api.get("/v1/stats", params={"since": "1d"}).json()
    assert stats["links"] == [{"page": page, "channel": "email", "clicks": 2, "messages": 1}]
    (email,) = [c for c in stats["channels"] if c["channel"] == "email"]
    assert (email["clicked"], email["click_rate"]) == (1, 1.0)
    html = api.get("/stats", params={"since": "1d"}).text  # the stats page shows the same
    assert f'<tr data-link="{page}"><td>{page}</td><td>email</td><td>2</td><td>1</td></tr>' in html
    row = re.search(r'<tr data-channel="email">(.*?)</tr>', html)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert (cells[4], cells[8]) == ("1", "100.0%")  # clicked, click rate
    assert "→ clicked</figcaption>" in html


#: Requests that are not a person clicking: (seconds after the send, method, User-Agent).
PREVIEWS = [
    (0.5, "GET", BROWSER),  # within a second of the send: a scanner on arrival
    (30, "HEAD", BROWSER),
    (0, "GET", "TelegramBot (like TwitterBot)"),
    (0, "GET", "Mozilla/5.0 (compatible; Mimecast URL protect)"),
    (0, "GET", None),
]


def test_previews_redirect_but_count_nothing_and_sms_follows_once(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """Each preview fetch gets its redirect and records nothing; at the step's timeout
    the SMS is sent exactly once."""
    runtime, api = tracked
    nid, attempt_id = sent_email(runtime, api, "lk3")
    for after, method, agent in PREVIEWS:
        clock.advance(after)
        answer = visit(api, link(runtime, attempt_id), agent, method)
        assert (answer.status_code, answer.headers["location"]) == (302, TARGET), agent
        assert show(api, nid)["state"] == "in_progress", (method, agent)
    assert clicks(runtime) == []
    assert events(api, nid, "clicked") == []
    sweep(runtime, now=clock.advance(61))
    drain(runtime)
    sweep(runtime, now=clock.advance(1))
    drain(runtime)
    email, sms = show(api, nid)["attempts"]
    assert (email["channel"], email["state"]) == ("email", "escalated")
    assert (sms["channel"], sms["tries"]) == ("sms", 1)
    assert sms["sent_at"] is not None


def test_forged_tokens_are_refused_and_confirm_nothing(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """Another secret's token, another link index, a truncated or made-up token: a 404
    problem, no redirect, nothing recorded."""
    runtime, api = tracked
    nid, attempt_id = sent_email(runtime, api, "lk4")
    clock.advance(30)
    genuine = link(runtime, attempt_id)
    forged = [
        f"/l/{make_token(link_key('not-our-secret'), attempt_id, 0)}",
        link(runtime, attempt_id, 1),  # signed, but the message has one link only
        link(runtime, "00000000-0000-4000-8000-000000000000"),  # signed, no such attempt
        genuine[:-1],
        genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
        "/l/not-a-token",
    ]
    for path in forged:
        answer = visit(api, path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"
        assert "location" not in answer.headers
    overlong = visit(api, "/l/" + "A" * 5000)  # a 404 like any other, not echoed back whole
    assert overlong.status_code == 404
    assert len(overlong.json()["instance"]) == 256
    assert show(api, nid)["state"] == "in_progress"
    assert clicks(runtime) == []
    assert events(api, nid, "clicked") == []


def test_a_step_with_track_links_false_keeps_its_links(
    tracked: tuple[Runtime, TestClient],
):
    """``track_links: false``: the message goes as written, and its SMS is sized as written;
    a tracked SMS is sized with its tracked link (longer here: two segments)."""
    runtime, api = tracked
    text = f"Your order: {TARGET} " + "x" * 90  # 142 characters: one SMS as written
    plain, attempt_id = sent_email(runtime, api, "lk6", cascade="untracked", text=text)
    tracked_id, _ = sent_email(runtime, api, "lk7", text=text)
    with Session(runtime.engine) as session:
        notification = session.get(Notification, plain)
        other = session.get(Notification, tracked_id)
        attempt = session.get(Attempt, attempt_id)
        assert notification is not None
        assert other is not None
        assert attempt is not None
        assert build_message(runtime, notification, attempt, EMAIL).text == text
        assert notification.content["sms"]["segments"] == 1
        assert other.content["sms"]["segments"] == 2


def test_an_sms_step_waiting_for_a_click(tracked: tuple[Runtime, TestClient], clock: FakeClock):
    """The same on SMS: the click in the SMS finishes it; the e-mail step never comes."""
    runtime, api = tracked
    put_customer(
        api, "lk8", [{"channel": "email", "address": EMAIL}, {"channel": "sms", "address": PHONE}]
    )
    answer = api.post(
        "/v1/notifications",
        json={"customer_id": "lk8", "cascade": "sms_first", "content": {"text": f"See {TARGET}"}},
    )
    nid = answer.json()["id"]
    drain(runtime)
    (sms,) = show(api, nid)["attempts"]
    assert (sms["channel"], sms["state"]) == ("sms", "sent")
    clock.advance(10)
    assert visit(api, link(runtime, sms["id"])).headers["location"] == TARGET
    sweep(runtime, now=clock.advance(120))
    drain(runtime)
    state = show(api, nid)
    assert state["state"] == "clicked"
    assert [a["channel"] for a in state["attempts"]] == ["sms"]


def test_the_app_reporting_a_tap_is_a_click(tracked: tuple[Runtime, TestClient], clock: FakeClock):
    """POST /v1/receipts status=clicked (the push's receipt token): a click on the message
    itself. It satisfies a push step waiting for 'clicked' (a 'read' does not), so no SMS;
    counted per channel and as its own row in the links; again: only counted. The same
    token cannot click another channel's attempt."""
    runtime, api = tracked
    contacts = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]
    put_customer(api, "tap1", contacts)
    nid = api.post(
        "/v1/notifications",
        json={"customer_id": "tap1", "cascade": "push_tap", "content": {"text": "Parcel"}},
    ).json()["id"]
    drain(runtime)
    (push,) = show(api, nid)["attempts"]
    secret = runtime.settings.effective_receipt_secret

    def app_says(attempt_id: str, status: str, event_id: str | None = None) -> dict[str, Any]:
        token = receipt_token(secret, attempt_id)
        body = {"attempt_id": attempt_id, "status": status, "token": token, "event_id": event_id}
        answer = api.post("/v1/receipts", json=body, headers={"Authorization": ""})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    clock.advance(5)
    assert app_says(push["id"], "read")["notification_state"] == "in_progress"
    clock.advance(5)
    assert app_says(push["id"], "clicked") == {
        "outcome": "finished",
        "notification_state": "clicked",
    }
    assert app_says(push["id"], "clicked")["outcome"] == "duplicate"  # the app's retry
    assert app_says(push["id"], "clicked", event_id="tap-2")["outcome"] == "counted"
    sweep(runtime, now=clock.advance(120))
    drain(runtime)
    state = show(api, nid)
    assert [a["channel"] for a in state["attempts"]] == ["push"]
    assert state["attempts"][0]["clicked_at"] is not None
    assert [
        (e["detail"]["link"], e["detail"]["first"], e["source"])
        for e in events(api, nid, "clicked")
    ] == [
        (APP_LINK, True, "app"),
        (APP_LINK, False, "app"),
    ]
    stats = api.get("/v1/stats", params={"since": "1d"}).json()
    assert stats["links"] == [{"page": APP_PAGE, "channel": "push", "clicks": 2, "messages": 1}]
    (row,) = [c for c in stats["channels"] if c["channel"] == "push"]
    assert (row["clicked"], row["click_rate"]) == (1, 1.0)

    other = api.post(
        "/v1/notifications",
        json={"customer_id": "tap1", "cascade": "push_tap", "content": {"text": "Parcel"}},
    ).json()["id"]
    drain(runtime)
    sweep(runtime, now=clock.advance(61))
    drain(runtime)
    sms = show(api, other)["attempts"][1]
    assert sms["channel"] == "sms"
    assert app_says(sms["id"], "clicked")["outcome"] == "foreign"  # a push's token only
    assert show(api, other)["attempts"][1]["clicked_at"] is None


def test_clicks_recorded_per_attempt_are_capped(
    tracked: tuple[Runtime, TestClient], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """A script following one link in a loop gets every redirect, but only MAX_CLICKS of
    its clicks become rows and history events (the first one confirms)."""
    monkeypatch.setattr("dispatcher.receipt_tables.MAX_CLICKS", 3)
    runtime, api = tracked
    nid, attempt_id = sent_email(runtime, api, "cap1")
    clock.advance(30)
    for _ in range(6):
        assert visit(api, link(runtime, attempt_id)).headers["location"] == TARGET
    assert [first for *_, first in clicks(runtime)] == [True, False, False]
    assert len(events(api, nid, "clicked")) == 3
    assert show(api, nid)["state"] == "clicked"


def test_clicks_at_the_same_moment_are_capped_too(
    tracked: tuple[Runtime, TestClient], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """After the first click, 24 at once: counted under the attempt's row lock, so the
    rows stop at the cap (on PostgreSQL, counting before the lock let 63 of 50 in)."""
    monkeypatch.setattr("dispatcher.receipt_tables.MAX_CLICKS", 3)
    runtime, api = tracked
    _, attempt_id = sent_email(runtime, api, "cap2")
    clock.advance(30)
    assert visit(api, link(runtime, attempt_id)).status_code == 302
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: visit(api, link(runtime, attempt_id)), range(24)))
    assert {a.status_code for a in answers} == {302}
    assert len(clicks(runtime)) == 3


def test_messages_per_link_count_each_message_that_had_it_clicked(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """Two links in one e-mail, the second clicked first: both links show one message."""
    runtime, api = tracked
    text = "Order: https://shop.example/o/9 or help: https://help.example/faq"
    _, attempt_id = sent_email(runtime, api, "two1", text=text)
    clock.advance(30)
    for index in (1, 0, 0):
        assert visit(api, link(runtime, attempt_id, index)).status_code == 302
    stats = api.get("/v1/stats", params={"since": "1d"}).json()["links"]
    assert stats == [
        {"page": "https://shop.example/o/9", "channel": "email", "clicks": 2, "messages": 1},
        {"page": "https://help.example/faq", "channel": "email", "clicks": 1, "messages": 1},
    ]


def test_the_assigned_variants_steps_decide_whether_links_are_tracked(
    tracked: tuple[Runtime, TestClient], clock: FakeClock
):
    """The cascade's e-mail step keeps its links; variant 'clicky' waits for a click on
    them: its customers get tracked links (they used to get the plain URL, so the step
    could never be confirmed and the SMS was always paid for), the control's do not."""
    runtime, api = tracked
    texts: dict[str, str] = {}
    for n in range(40):  # customers of both variants (SHA-256 of the id: about half each)
        customer = f"var{n}"
        nid, attempt_id = sent_email(runtime, api, customer, cascade="variants")
        variant = show(api, nid)["variant"]
        with Session(runtime.engine) as session:
            notification = session.get(Notification, nid)
            attempt = session.get(Attempt, attempt_id)
            assert notification is not None
            assert attempt is not None
            texts.setdefault(variant, build_message(runtime, notification, attempt, EMAIL).text)
        if len(texts) == 2:
            break
    assert texts["control"] == f"Your order: {TARGET}"
    assert texts["clicky"].startswith(f"Your order: {BASE}/l/")
