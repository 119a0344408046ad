"""Scenario 4: two ``dispatcher beat`` processes run at the same time.

The lease lets one sweep and the other stand by; either way every change is a
compare-and-set, so nothing may be escalated or paid twice.
"""

from __future__ import annotations

import pytest

from tests.faults.counts import report
from tests.faults.harness import FaultWorld
from tests.support.processes import stop

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(600)]

NOTIFICATIONS = 100


def test_two_beats_no_double_escalation(world: FaultWorld, capsys):
    """Two beats: one sweeps, one stands by; each step is created once, each SMS paid once."""
    second = world.start_beat()
    try:
        ids = world.submit(NOTIFICATIONS)
        world.wait_final(timeout=300)
    finally:
        stop(second)
        world.beats.remove(second)
    assert world.log_count("standing by: another beat sweeps") >= 1
    counts = world.tally()
    report(capsys, "two beats at once", counts)
    assert counts.notifications == len(ids)
    counts.assert_clean()
    # Both steps ran for every notification: escalations really happened, once each.
    assert counts.final_states == {"exhausted": NOTIFICATIONS}
