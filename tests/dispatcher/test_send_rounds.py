"""Claims and recordings in rounds (group commit) on the real database.

The threads of one worker process claim, and later record, the sends they have
in flight together in one transaction each. These tests drive the rounds
directly, then through ``send_attempt`` from many real threads.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from dispatcher.claims import claim_round
from dispatcher.dispatch import send_attempt
from dispatcher.outcomes import Outcome, record_round
from tests.support.dispatching import Make, pending_bells
from tests.support.scenario import PHONE, attempts, put_customer, receipt, send, show


def _customers(api: TestClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        contacts = [
            {"channel": "push", "address": f"fcm-token-{i:03d}-" + "b" * 30},
            {"channel": "sms", "address": PHONE},
        ]
        put_customer(api, f"round-{i}", contacts=contacts)
        ids.append(send(api, f"round-{i}")["id"])
    return ids


def test_one_round_claims_each_attempt_once(make: Make):
    """Three attempts and a duplicate message in one round: one claim each, one token."""
    runtime, api = make()
    notifications = _customers(api, 3)
    first, second, third = pending_bells(runtime)
    claimed = claim_round(runtime, [(first, None), (second, None), (first, None), (third, None)])
    tokens = [c.token for c in claimed]
    assert tokens[2] is None  # the duplicate
    assert claimed[2].prepared == "not_claimed"
    assert None not in (tokens[0], tokens[1], tokens[3])
    assert len({tokens[0], tokens[1], tokens[3]}) == 1  # one transaction, one token
    recipients = [c.prepared[0].recipient for c in claimed if not isinstance(c.prepared, str)]
    assert recipients == [f"fcm-token-{i:03d}-" + "b" * 30 for i in range(3)]
    for nid in notifications:
        assert show(api, nid)["state"] == "in_progress"
        assert attempts(api, nid) == [("push", "sending")]
    again = claim_round(runtime, [(first, None)])
    assert again[0].token is None  # committed: a later message finds nothing to claim


@pytest.mark.parametrize("status", ["read", "clicked"])
def test_a_round_records_each_outcome_and_receipts_that_came_meanwhile(make: Make, status: str):
    """Recorded together: one read (or the app's tap) during the send (finishes), one sent,
    one claim lost."""
    runtime, api = make()
    notifications = _customers(api, 3)
    bells = pending_bells(runtime)
    claimed = claim_round(runtime, [(bell, None) for bell in bells])
    outcomes = []
    for c in claimed:
        assert not isinstance(c.prepared, str)
        message, (provider, *_) = c.prepared
        outcomes.append(Outcome(provider, result=provider.send(message)))
    assert receipt(api, bells[0], status)["outcome"] == "waiting"  # arrived mid-send
    items = [(bells[0], str(claimed[0].token), outcomes[0])]
    items += [(bells[1], str(claimed[1].token), outcomes[1])]
    items += [(bells[2], "someone-else", outcomes[2])]  # not our claim
    assert record_round(runtime, items) == ["sent", "sent", "claim_lost"]
    assert show(api, notifications[0])["state"] == "read"  # applied in the same round
    assert attempts(api, notifications[1]) == [("push", "sent")]
    assert attempts(api, notifications[2]) == [("push", "sending")]
    assert pending_bells(runtime) == []  # nothing escalates to SMS


def test_many_threads_send_each_attempt_exactly_once(make: Make):
    """Real threads, each message delivered twice: every attempt sent once, the rest refused."""
    runtime, api = make()
    notifications = _customers(api, 12)
    bells = pending_bells(runtime) * 2
    words: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(bells))

    def work(bell: str) -> None:
        start.wait(10)
        word = send_attempt(runtime, bell)
        with lock:
            words.append(word)

    threads = [threading.Thread(target=work, args=(bell,)) for bell in bells]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert Counter(words) == {"sent": 12, "not_claimed": 12}
    for nid in notifications:
        assert attempts(api, nid) == [("push", "sent")]
        events = [e["type"] for e in show(api, nid)["events"]]
        assert events.count("sent") == 1


def test_a_round_resets_each_providers_failures_once(make: Make):
    """Three sends on one provider recorded together: its failure count is reset (a success
    ends a run of failures) with one Redis command for the round, not one per send."""
    runtime, api = make()
    _customers(api, 3)
    bells = pending_bells(runtime)
    claimed = claim_round(runtime, [(bell, None) for bell in bells])
    items = []
    for bell, c in zip(bells, claimed, strict=True):
        assert not isinstance(c.prepared, str)
        message, (provider, *_) = c.prepared
        items.append((bell, str(c.token), Outcome(provider, result=provider.send(message))))
    health = runtime.router.health
    health.failed("sandbox", "not_sent", runtime.now())
    client = health._redis
    assert client.exists("cascade:health:failures:sandbox")
    client.config_resetstat()
    assert record_round(runtime, items) == ["sent", "sent", "sent"]
    assert not client.exists("cascade:health:failures:sandbox")
    assert client.info("commandstats")["cmdstat_del"]["calls"] == 1
