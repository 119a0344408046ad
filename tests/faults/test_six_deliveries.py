"""Scenario 5: every doorbell is delivered six times (the original and five copies)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from dispatcher.models import Attempt
from dispatcher.publisher import task_name
from dispatcher.queues import create_celery
from tests.faults.counts import report
from tests.faults.harness import FaultWorld

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(600)]

NOTIFICATIONS = 100
COPIES = 5


def test_each_message_six_times_one_paid_send(world: FaultWorld, capsys):
    """``send.<channel>(attempt)`` re-sent by name 5 more times per attempt: one SMS each."""
    app = create_celery(world.runtime.settings)
    copied: set[str] = set()
    mark = world.log_size()

    def copy_new_attempts() -> None:
        with Session(world.runtime.engine) as session:
            rows = session.exec(select(Attempt.id, Attempt.channel)).all()
        for attempt_id, channel in rows:
            if attempt_id in copied:
                continue
            copied.add(attempt_id)
            for _ in range(COPIES):
                app.send_task(task_name(channel), args=[attempt_id], queue=channel)

    ids = world.submit(NOTIFICATIONS)
    world.wait_final(timeout=300, tick=copy_new_attempts)
    counts = world.tally(
        copied=len(copied) * COPIES, not_claimed=world.log_count(": not_claimed", mark)
    )
    report(capsys, "each message delivered six times", counts)
    assert counts.notifications == len(ids)
    counts.assert_clean()
    assert len(copied) == 2 * NOTIFICATIONS  # push and SMS attempts, all copied
    assert counts.paid_sends == NOTIFICATIONS  # one SMS per attempt, none lost either
