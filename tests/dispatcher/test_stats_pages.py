"""The stats pages: login and its cookie, data from /v1/stats, a notification's timeline."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.api.login import COOKIE
from dispatcher.runtime import Runtime
from dispatcher.sweep import sweep
from tests.conftest import TEST_KEY
from tests.dispatcher.test_stats import drain
from tests.support.clock import FakeClock
from tests.support.scenario import PHONE, PUSH_TOKEN, TEXT, put_customer, receipt, send, show

PUSH_AND_SMS = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]


@pytest.fixture(name="browser")
def _browser(runtime: Runtime) -> Iterator[TestClient]:
    """A client like a browser: no Authorization header, keeps cookies, sees redirects."""
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        yield client


def embedded(html: str, element_id: str) -> Any:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html)
    assert match, f"no {element_id} in the page"
    return json.loads(match.group(1))


def log_in(browser: TestClient, key: str = TEST_KEY, next_: str = "/stats") -> Any:
    return browser.post(
        "/stats/login",
        content=f"key={key}&next={next_}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_pages_need_a_key_and_the_login_sets_a_signed_httponly_cookie(
    browser: TestClient, clock: FakeClock
):
    """No key: to the login form. A wrong key: 401 naming the field. A right one: a cookie
    without the key, HttpOnly, for /stats only, refused once tampered with or expired."""
    response = browser.get("/stats", params={"since": "7d"})
    assert (response.status_code, response.headers["location"]) == (
        303,
        "/stats/login?next=/stats%3Fsince%3D7d",
    )
    assert 'name="key"' in browser.get("/stats/login").text
    wrong = log_in(browser, key="not-the-key")
    assert wrong.status_code == 401
    assert 'data-field="key"' in wrong.text
    assert COOKIE not in browser.cookies
    response = log_in(browser, next_="/stats?since=7d")
    assert (response.status_code, response.headers["location"]) == (303, "/stats?since=7d")
    header = response.headers["set-cookie"].lower()
    assert all(part in header for part in ("httponly", "samesite=lax", "path=/stats"))
    token = browser.cookies[COOKIE]
    assert TEST_KEY not in token
    assert browser.get("/stats").status_code == 200
    assert browser.get("/stats/login").headers["location"] == "/stats"  # already logged in
    browser.cookies.clear()
    browser.cookies.set(COOKIE, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert browser.get("/stats").status_code == 303  # tampered
    browser.cookies.clear()
    log_in(browser)
    clock.advance(12 * 3600 + 1)
    assert browser.get("/stats").status_code == 303  # expired
    clock.advance(-(12 * 3600 + 1))
    assert browser.get("/stats").status_code == 200
    assert browser.post("/stats/logout").headers["location"] == "/stats/login"
    assert COOKIE not in browser.cookies
    assert log_in(browser, next_="https://elsewhere.example/").headers["location"] == "/stats"
    authorised = browser.get("/stats", headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert authorised.status_code == 200


def test_the_page_draws_the_v1_stats_document(api: TestClient, runtime: Runtime, clock: FakeClock):
    """The data the page draws is exactly /v1/stats for the same period; nothing external."""
    put_customer(api, "pg1", contacts=PUSH_AND_SMS)
    first = send(api, "pg1")["id"]
    second = send(api, "pg1")["id"]
    drain(runtime)
    receipt(api, show(api, first)["attempts"][0]["id"], "read")
    sweep(runtime, now=clock.advance(61))
    drain(runtime)
    receipt(api, show(api, second)["attempts"][1]["id"], "delivered")
    page = api.get("/stats", params={"since": "1h"})
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert embedded(page.text, "stats-data") == api.get("/v1/stats", params={"since": "1h"}).json()
    assert re.findall(r'<script src="([^"]+)"', page.text) == [
        "/stats/static/chartjs/chart.umd.min.js",
        "/stats/static/stats.js",
    ]
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text))
    assert f'href="/stats/notifications/{first}"' in page.text
    assert '<tr data-channel="sms"><td>sms</td><td>1</td><td>1</td>' in page.text
    assert TEXT not in page.text
    assert PHONE not in page.text
    script = api.get("/stats/static/chartjs/chart.umd.min.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "Chart.js v4.6.1" in script.text[:200]


def test_a_bad_period_on_the_page_names_the_field(api: TestClient):
    page = api.get("/stats", params={"since": "yesterday"})
    assert page.status_code == 422
    assert 'data-field="since"' in page.text
    assert "stats-data" not in page.text


def test_timeline_has_a_lane_per_attempt_and_a_mark_per_event(
    api: TestClient, runtime: Runtime, clock: FakeClock
):
    """Push unread and escalated, SMS delivered, then the push read late: all on the page."""
    put_customer(api, "tl1", contacts=PUSH_AND_SMS)
    nid = send(api, "tl1")["id"]
    drain(runtime)
    clock.advance(61)
    sweep(runtime, now=clock())
    drain(runtime)
    attempts = show(api, nid)["attempts"]
    clock.advance(9)
    receipt(api, attempts[1]["id"], "delivered")
    clock.advance(30)
    receipt(api, attempts[0]["id"], "read")
    page = api.get(f"/stats/notifications/{nid}")
    assert page.status_code == 200
    data = embedded(page.text, "timeline-data")
    assert (data["id"], data["state"], data["finished_channel"]) == (nid, "delivered", "sms")
    assert data["lanes"] == ["notification", "0 push", "1 sms"]
    assert [(s["lane"], s["state"], s["from"]) for s in data["spans"]] == [
        ("0 push", "escalated", 0.0),
        ("1 sms", "delivered", 61.0),
    ]
    marks = {(m["lane"], m["type"], m["offset"]) for m in data["marks"]}
    assert {
        ("notification", "accepted", 0.0),
        ("0 push", "sent", 0.0),
        ("0 push", "escalated", 61.0),
        ("1 sms", "sent", 61.0),
        ("1 sms", "delivered", 70.0),
        ("0 push", "late_receipt", 100.0),
    } <= marks
    assert PHONE not in page.text
    assert TEXT not in page.text
    missing = api.get("/stats/notifications/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    found = api.get("/stats/find", params={"id": nid}, follow_redirects=False)
    assert found.headers["location"] == f"/stats/notifications/{nid}"
    assert api.get("/stats/find", params={"id": "<script>"}).status_code == 422
