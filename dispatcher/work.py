"""A unit of work: one transaction, its clock, and the doorbells it rings after commit.

Everything that changes state runs inside one :class:`Work`. Doorbells collected
while it runs are published only after the transaction committed, so a worker
woken by one always finds the row it was woken for; a publish that fails loses
nothing (the sweep republishes from the database).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Session

from dispatcher.db import session_scope
from dispatcher.publisher import Doorbell

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime


@dataclass
class Work:
    """The session, the time this work happens at, and the doorbells to ring after commit."""

    session: Session
    now: datetime
    bells: list[Doorbell] = field(default_factory=list)

    def ring(self, bell: Doorbell | None) -> None:
        if bell is not None:
            self.bells.append(bell)


@contextmanager
def unit_of_work(rt: Runtime, now: datetime | None = None) -> Iterator[Work]:
    """Commit on success (roll back on error), then publish the doorbells."""
    with session_scope(rt.engine) as session:
        work = Work(session, now or rt.now())
        yield work
    rt.publisher.publish(work.bells)
