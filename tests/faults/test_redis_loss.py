"""Scenario 2: Redis loses everything (FLUSHALL), then dies and comes back empty."""

from __future__ import annotations

import pytest

from tests.faults.counts import report
from tests.faults.harness import FaultWorld
from tests.support.processes import PrivateRedis
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(600)]

NOTIFICATIONS = 200


def test_flushall_and_restart_with_hundreds_in_flight(
    world: FaultWorld, fault_redis: PrivateRedis, capsys
):
    """Queued and unacked doorbells vanish twice; the sweep republishes; no SMS twice."""
    mark = world.log_size()
    ids = world.submit_in_flight(NOTIFICATIONS)
    wait_until(lambda: len(world.sim.sent) >= 20, timeout=120, what="paid sends under way")
    in_flight_at_flush = world.open_count()
    fault_redis.flushall()
    sent_at_flush = len(world.sim.sent)
    wait_until(
        lambda: len(world.sim.sent) >= sent_at_flush + 20,
        timeout=180,
        what="sends to resume after FLUSHALL",
    )
    in_flight_at_restart = world.open_count()
    fault_redis.restart(down_for=1.0)
    world.wait_final(timeout=300)
    counts = world.tally(
        **{
            "open at FLUSHALL": in_flight_at_flush,
            "open at restart": in_flight_at_restart,
            "republished": world.sweep_total("republished", mark),
        }
    )
    report(capsys, "Redis FLUSHALL, then Redis killed and restarted empty", counts)
    assert counts.notifications == len(ids)
    counts.assert_clean()
    # Hundreds in flight, as the scenario promises: every notification whose SMS had not
    # gone out was still open (the sent ones may already have been confirmed).
    assert in_flight_at_flush >= NOTIFICATIONS - sent_at_flush >= 100
    assert counts.extra["republished"] >= 1  # the sweep, not luck, recovered lost doorbells
