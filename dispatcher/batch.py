"""Group commit: threads that arrive together share one transaction.

With the threads pool, tens of sends are in flight in one process. Each one
claims its attempt and later records its outcome; done one by one, that is two
transactions per send, and the commits (and the CPU spent per statement) bound
the process long before the providers do. A :class:`Batch` lets every thread
call :meth:`Batch.submit` with its own item: the first caller to arrive while
nobody is working becomes the leader and runs ``process`` over everything that
queued up meanwhile, in one go; the others wait for their own result. When the
leader is done, the oldest waiter (if any) leads the next round. Nothing waits
on a timer: a thread alone (prefork, a quiet worker) runs its item at once.

``process`` returns one result per item, in order; a result that is an
exception is raised in its own caller only. If ``process`` raises for a round
of several items, each item is run again on its own, so one bad item cannot
fail the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")

#: A round's results: one per item, each a value or the exception its caller raises.
Outcomes = Sequence["Result | BaseException"]


class _Slot(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "lead", "value")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.value: Result | None = None
        self.error: BaseException | None = None

    def result(self) -> Result:
        if self.error is not None:
            raise self.error
        return cast(Result, self.value)


class Batch(Generic[Item, Result]):
    """Runs ``process`` over the items of the callers that arrive together."""

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Result | BaseException]],
        limit: int = 100,
    ) -> None:
        self._process = process
        self._limit = max(1, limit)
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item, Result]] = []
        self._busy = False
        self.rounds = 0  #: how many rounds ran (tests and benches read it)
        self.largest = 0  #: the most items one round took

    def queued(self) -> int:
        """Callers waiting for a round (not counting the one running)."""
        with self._lock:
            return len(self._waiting)

    def submit(self, item: Item) -> Result:
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            slot.lead = not self._busy
            self._busy = True
        if not slot.lead:
            slot.done.wait()
            if not slot.lead:  # served by a leader
                return slot.result()
        self._lead()
        return slot.result()

    def _lead(self) -> None:
        with self._lock:
            round_ = self._waiting[: self._limit]
            del self._waiting[: self._limit]
            self.rounds += 1
            self.largest = max(self.largest, len(round_))
        try:
            self._run(round_)
        finally:
            with self._lock:
                if self._waiting:  # the oldest waiter leads the next round
                    self._waiting[0].lead = True
                    self._waiting[0].done.set()
                else:
                    self._busy = False
            for slot in round_:
                slot.lead = False
                slot.done.set()

    def _run(self, round_: list[_Slot[Item, Result]]) -> None:
        try:
            outcomes = self._process([slot.item for slot in round_])
        except BaseException as exc:
            if len(round_) == 1:
                round_[0].error = exc
                return
            for slot in round_:  # one bad item must not fail the others
                self._run([slot])
            return
        for slot, outcome in zip(round_, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                slot.error = outcome
            else:
                slot.value = outcome
