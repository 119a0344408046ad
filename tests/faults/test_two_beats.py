"""Scenario 4: two ``dispatcher beat`` processes schedule sweeps at the same time."""

from __future__ import annotations

import pytest

from tests.faults.counts import report
from tests.faults.harness import FaultWorld
from tests.support.processes import stop

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(600)]

NOTIFICATIONS = 150


def test_two_beats_no_double_escalation(world: FaultWorld, capsys):
    """Every sweep runs twice as often, racing: each step is created once, each SMS paid once."""
    second = world.start_beat()
    try:
        ids = world.submit(NOTIFICATIONS)
        world.wait_final(timeout=300)
    finally:
        stop(second)
        world.beats.remove(second)
    counts = world.tally()
    report(capsys, "two beats at once", counts)
    assert counts.notifications == len(ids)
    counts.assert_clean()
    # Both steps ran for every notification: escalations really happened, once each.
    assert counts.final_states == {"exhausted": NOTIFICATIONS}
