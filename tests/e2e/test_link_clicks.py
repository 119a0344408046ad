"""Tracked links end to end: a real worker sends e-mail through a real SMTP server (the
simulator), then SMS through the Twilio simulator, for an e-mail step that waits for a
click. The person who clicks gets no SMS; the one whose link was only previewed and
scanned gets exactly one."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.migrate import upgrade
from dispatcher.sweep import sweep
from tests.e2e.world import world
from tests.simulators import twilio
from tests.simulators.server import serve
from tests.simulators.smtp import SmtpSim
from tests.support.scenario import PHONE

pytestmark = pytest.mark.e2e

TARGET = "https://shop.example/orders/42?ref=mail"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
CASCADE = """\
name: clicks
ttl: 1h
quiet_hours: ignore
steps:
  - {channel: email, wait_for: clicked, timeout: 60s}
  - {channel: sms, wait_for: delivered, timeout: 60s}
"""


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def tracked_links(smtp: SmtpSim, address: str, public: str) -> set[str]:
    """The tracked links in the text and HTML parts of the mail sent to ``address``."""
    (mail,) = [m for m in smtp.messages if address in m.rcpt_tos]
    assert TARGET not in mail.data.decode()
    pattern = re.compile(re.escape(public) + r"/l/[A-Za-z0-9_-]{36}")
    parts = [part.get_content() for part in mail.email.walk() if not part.is_multipart()]
    found = [set(pattern.findall(str(part))) for part in parts]
    text, html = found  # the text and the HTML part hold the same one link
    assert text == html, found
    return text


def test_click_stops_the_cascade_preview_does_not(redis_base: str, tmp_path: Path):
    """Click → 'clicked', no SMS; previews only → the SMS is sent once; stats per link."""
    db = f"sqlite:///{tmp_path / 'cascade.db'}"
    upgrade(db)
    cascades = tmp_path / "cascades"
    cascades.mkdir()
    (cascades / "clicks.yaml").write_text(CASCADE)
    sms_sim = twilio.create_app()
    with serve(sms_sim) as sms_url, SmtpSim("none") as smtp:
        providers: dict[str, dict[str, Any]] = {
            "smtp": smtp.provider_settings(),
            "twilio": twilio.provider_settings(sms_url),
        }
        with world(
            database_url=db,
            redis_url=f"{redis_base}/10",
            data=tmp_path,
            channels={"email": ["smtp"], "sms": ["twilio"]},
            providers=providers,
            cascades_dir=str(cascades),
            link_tracking=True,
        ) as w:
            ids = {}
            for customer in ("clicker", "previewed"):
                email = f"{customer}@example.com"
                w.api.put(
                    f"/v1/customers/{customer}",
                    json={
                        "contacts": [
                            {"channel": "email", "address": email},
                            {"channel": "sms", "address": PHONE},
                        ]
                    },
                )
                ids[customer] = w.api.post(
                    "/v1/notifications",
                    json={
                        "customer_id": customer,
                        "cascade": "clicks",
                        "content": {
                            "title": "Order 42",
                            "text": f"Your order: {TARGET}",
                            "html": f'<p><a href="{TARGET}">Your order</a></p>',
                        },
                    },
                ).json()["id"]
            for nid in ids.values():
                assert w.step_done(nid, 0)["state"] == "sent"
            (clicked,) = tracked_links(smtp, "clicker@example.com", w.public_url)
            (previewed,) = tracked_links(smtp, "previewed@example.com", w.public_url)
            # The API's injected clock: the visits come a while after the sends.
            w.runtime.clock = lambda: datetime.now(UTC) + timedelta(seconds=20)
            with httpx.Client(follow_redirects=False, timeout=10) as visitor:
                for method, agent in (("GET", "WhatsApp/2.23.20.0 A"), ("HEAD", BROWSER)):
                    answer = visitor.request(method, previewed, headers={"User-Agent": agent})
                    assert (answer.status_code, answer.headers["location"]) == (302, TARGET)
                answer = visitor.get(clicked, headers={"User-Agent": BROWSER})
                assert (answer.status_code, answer.headers["location"]) == (302, TARGET)
            assert w.show(ids["clicker"])["state"] == "clicked"
            assert w.show(ids["previewed"])["state"] == "in_progress"
            sweep(w.runtime, now=later(61))
            sms = w.step_done(ids["previewed"], 1)
            assert (sms["channel"], sms["provider"], sms["state"]) == ("sms", "twilio", "sent")
            sweep(w.runtime, now=later(62))
            assert w.attempts(ids["clicker"]) == [("email", "smtp", "read")]
            assert len(sms_sim.sent) == 1
            stats = w.api.get("/v1/stats", params={"since": "1d"}).json()
            assert stats["links"] == [
                {
                    "page": "https://shop.example/orders/42",
                    "channel": "email",
                    "clicks": 1,
                    "messages": 1,
                }
            ]
            log = w.log.read_text()
            assert "shop.example" not in log
            assert "clicker@example.com" not in log
