"""Monitoring on the real database: what the observers see, the counters, the gauges,
the sweep's log and readiness marks, the send task's outcomes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest
import redis
from celery.exceptions import Retry
from prometheus_client import REGISTRY

from dispatcher import flower, history, metrics
from dispatcher.history import Row
from dispatcher.readiness import last_sweep
from dispatcher.scheduler import Lease, Scheduler
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import PHONE, PUSH_TOKEN

CONTACTS = [{"channel": "push", "address": PUSH_TOKEN}, {"channel": "sms", "address": PHONE}]


@pytest.fixture(name="seen")
def _seen() -> Iterator[list[Row]]:
    rows: list[Row] = []

    def observe(committed: Sequence[Row]) -> None:
        rows.extend(committed)

    history.observers.append(observe)
    yield rows
    history.observers.remove(observe)


def _notify(api, customer: str = "m1") -> str:
    assert api.put(f"/v1/customers/{customer}", json={"contacts": CONTACTS}).status_code == 200
    response = api.post(
        "/v1/notifications",
        json={"customer_id": customer, "cascade": "short", "content": {"text": "hi"}},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observers_see_committed_history_only(make: Make, seen: list[Row]):
    """Accepted, sent: the observers get the rows after commit; a refused request adds none."""
    runtime, api = make()
    nid = _notify(api)
    assert [(r["type"], r["notification_id"]) for r in seen] == [("accepted", nid)]
    drain(runtime)
    assert [r["type"] for r in seen][-1] == "sent"
    assert seen[-1]["detail"]["provider"] == "sandbox"
    before = len(seen)
    bad = api.post("/v1/notifications", json={"customer_id": "m1", "cascade": "nope"})
    assert bad.status_code == 422
    assert len(seen) == before


def test_counters_follow_the_history(make: Make, clock: FakeClock):
    """Accepted, sent, escalated, receipt: each counter moves by what was committed."""
    runtime, api = make()
    metrics.install()
    accepted = _value("cascade_notifications_accepted_total", cascade="short")
    sent = _value("cascade_sends_total", channel="push", provider="sandbox", outcome="sent")
    escalated = _value("cascade_escalations_total", channel="push")
    delivered = _value("cascade_receipts_total", channel="sms", kind="delivered")
    nid = _notify(api)
    drain(runtime)
    from dispatcher.sweep import sweep

    sweep(runtime, now=clock.advance(2))  # the push was not read in 1 s
    drain(runtime)
    sms = api.get(f"/v1/notifications/{nid}").json()["attempts"][1]["id"]
    assert api.post("/v1/receipts", json={"attempt_id": sms, "status": "delivered"}).is_success
    assert _value("cascade_notifications_accepted_total", cascade="short") == accepted + 1
    assert (
        _value("cascade_sends_total", channel="push", provider="sandbox", outcome="sent")
        == sent + 1
    )
    assert _value("cascade_escalations_total", channel="push") == escalated + 1
    assert _value("cascade_receipts_total", channel="sms", kind="delivered") == delivered + 1


def test_overdue_escalation_age_and_queue_depth(make: Make, clock: FakeClock):
    """The gauge reads the oldest due timer at scrape time; none due is 0."""
    runtime, api = make()
    runtime.publisher.depths["sms"] = 7  # type: ignore[attr-defined]
    gauges = metrics.LiveGauges(runtime.engine, runtime.publisher.queue_depth, ["sms"], clock)
    assert gauges.overdue_age() == 0.0
    _notify(api)
    drain(runtime)  # push sent: its 1 s timer runs
    clock.advance(31)  # no sweep ran: 30 s overdue
    assert gauges.overdue_age() == pytest.approx(30, abs=0.01)
    exposed = api.get("/metrics").text
    assert 'cascade_queue_depth{queue="sms"} 7.0' in exposed
    assert "cascade_oldest_overdue_escalation_seconds 30." in exposed


def test_idle_sweeps_log_nothing_and_mark_the_time(
    make: Make, redis_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """Beat's ticks that find nothing write no log line, but readiness sees each sweep."""
    runtime, _ = make()
    client = redis.Redis.from_url(redis_url)
    scheduler = Scheduler(runtime, Lease(client, "test:lease", ttl=30), interval=1)
    scheduler.tick()  # "sweeping": the leadership change is logged once
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            clock.advance(1)
            scheduler.tick()
    assert caplog.records == []
    assert last_sweep(client) == clock()


@pytest.mark.parametrize(
    ("outcome", "row", "expected"),
    [
        ("sent", {"type": "sent", "detail": {"provider": "twilio"}}, "sent via twilio"),
        ("not_claimed", None, "not_claimed"),
        ("failed", {"type": "failed", "detail": {"provider": "twilio", "code": "21211"}}, None),
        ("unknown", {"type": "unknown", "detail": {"provider": "smsru", "code": "read"}}, None),
        ("retry", {"type": "retry_scheduled", "detail": {"code": "429", "delay_s": 5.0}}, None),
    ],
)
def test_send_outcome_is_the_task_state(outcome: str, row: Row | None, expected: str | None):
    """sent: a result; failed and unknown: FAILURE exceptions; retry: Celery's Retry."""
    rows = [{**row, "attempt_id": "a1"}] if row else []
    described = flower.describe(outcome, "a1", rows)
    if expected is not None:
        assert flower.task_result(described) == expected
        return
    with pytest.raises((flower.SendFailed, flower.OutcomeUnknown, Retry)) as raised:
        flower.task_result(described)
    shown = {
        "failed": (flower.SendFailed, "failed via twilio: 21211"),
        "unknown": (flower.OutcomeUnknown, "unknown via smsru: read; not resent"),
        "retry": (Retry, "Retry in 5.0s: NotSent('retry: 429')"),
    }[outcome]
    assert isinstance(raised.value, shown[0])
    assert str(raised.value) == shown[1]


def test_a_group_shows_its_outcomes_counted():
    """All sent: SUCCESS with the count; one failed or unknown: FAILURE naming all of them."""
    sent, failed = flower.SendOutcome("sent", "fcm"), flower.SendOutcome("failed", "fcm", "gone")
    assert flower.group_result([sent, sent]) == "2 attempts: 2 sent via fcm"
    with pytest.raises(
        flower.SendFailed, match=r"^3 attempts: 2 sent via fcm, 1 failed via fcm: gone$"
    ):
        flower.group_result([sent, failed, sent])
    unknown = flower.SendOutcome("unknown", "smsru", "read")
    retry = flower.SendOutcome("retry", "smsru", "429", 5.0)
    with pytest.raises(flower.OutcomeUnknown, match="1 unknown via smsru: read"):
        flower.group_result([retry, unknown])
    assert flower.group_result([retry]) == "1 attempt: 1 retry via smsru: 429"


def test_flower_rows_for_receipts_and_escalations_only():
    """Receipts (not the worker's own outcomes) and escalations get a row; ids only."""
    base = {"attempt_id": "a1", "notification_id": "n1", "channel": "push"}
    read = flower.row_event({**base, "type": "read", "source": "app", "detail": {"late": True}})
    assert read == {
        "name": "receipt.read",
        "args": "['a1']",
        "kwargs": "{'notification_id': 'n1', 'channel': 'push'}",
        "result": "'read (push, app): late, the notification had finished'",
    }
    escalated = {**base, "type": "escalated", "source": "sweep", "detail": {"from_state": "sent"}}
    assert flower.row_event(escalated)["result"] == "'push escalated (was sent)'"  # type: ignore[index]
    assert flower.row_event({**base, "type": "failed", "source": "worker", "detail": {}}) is None
    assert flower.row_event({**base, "type": "accepted", "source": "api", "detail": {}}) is None


def test_grafana_dashboard_uses_only_metrics_we_export():
    """Every series the dashboard queries is one Cascade exports (names drift otherwise)."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana" / "cascade.json").read_text()
    )
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"cascade_[a-z_]+", target["expr"])
    }
    import dispatcher.health  # noqa: F401 - its counters register on import

    exported = {"cascade_queue_depth", "cascade_oldest_overdue_escalation_seconds"}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for family in REGISTRY.collect():
        if family.name.startswith("cascade_"):
            exported |= {family.name + end for end in suffixes.get(family.type, [""])}
    assert queried <= exported, queried - exported
    assert len(dashboard["panels"]) == 14


def test_a_send_sees_its_outcome_recorded_by_another_thread():
    """Threads pool: a round's leader thread records for the others; each send still finds
    the row about its own attempt (and only that)."""
    import threading

    mine = {"attempt_id": "a1", "type": "sent", "detail": {"provider": "twilio"}}
    other = {"attempt_id": "a2", "type": "failed", "detail": {}}
    with flower.watching("a1") as rows:
        leader = threading.Thread(target=flower._watch, args=([mine, other],))
        leader.start()
        leader.join()
    assert rows == [mine]
    assert flower.task_result(flower.describe("sent", "a1", rows)) == "sent via twilio"
