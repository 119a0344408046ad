"""A worker process killed in the middle of a paid send never causes a second SMS.

The send is under way (the simulator received it and is holding the answer) when
the prefork child is SIGKILLed. Celery rejects and redelivers the message; the
redelivered copy finds the attempt already claimed and does nothing. The sweep
then marks the stale claim ``unknown`` (the SMS may have been billed) and the
step times out without a resend.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.migrate import upgrade
from dispatcher.queues import create_celery
from dispatcher.sweep import sweep
from tests.e2e.world import world
from tests.simulators import twilio
from tests.simulators.server import serve
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HANGS = "+15005559999"  # the simulator holds the answer to this number


def test_killed_mid_send_no_duplicate_sms(tmp_path: Path, redis_base: str):
    """SIGKILL the child during the provider call: one SMS request ever, attempt unknown."""
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    upgrade(db)
    sim = twilio.create_app(hang_seconds=60)
    with serve(sim) as url:
        providers = {"twilio": twilio.provider_settings(url, timeout=30)}
        with world(
            database_url=db,
            redis_url=f"{redis_base}/10",
            data=tmp_path,
            channels={"sms": ["twilio"]},
            providers=providers,
        ) as w:
            w.api.put("/v1/customers/z1", json={"contacts": [{"channel": "sms", "address": HANGS}]})
            nid = w.api.post(
                "/v1/notifications",
                json={"customer_id": "z1", "cascade": "basic", "content": {"text": "code 1234"}},
            ).json()["id"]
            wait_until(lambda: len(sim.requests) == 1, what="the SMS request to reach Twilio")
            attempt_id = w.show(nid)["attempts"][0]["id"]
            inspect = create_celery(w.runtime.settings).control.inspect(timeout=2)
            active = wait_until(
                lambda: [t for ts in (inspect.active() or {}).values() for t in ts],
                what="the active task",
            )
            (task,) = active
            assert (task["name"], task["args"]) == ("send.sms", [attempt_id])
            os.kill(task["worker_pid"], signal.SIGKILL)
            wait_until(
                lambda: f"attempt {attempt_id}: not_claimed" in w.log.read_text(),
                what="the redelivered copy to be refused by the claim",
            )
            assert w.attempts(nid) == [("sms", "twilio", "sending")]  # who may have billed
            stale = w.runtime.settings.sending_stale_after
            sweep(w.runtime, now=datetime.now(UTC) + timedelta(seconds=stale + 1))
            view = w.show(nid)
            assert (view["attempts"][0]["state"], view["attempts"][0]["error_code"]) == (
                "unknown",
                "worker_lost",
            )
            sweep(w.runtime, now=datetime.now(UTC) + timedelta(seconds=stale + 241))
            assert w.show(nid)["state"] == "exhausted"
            assert len(sim.requests) == 1
