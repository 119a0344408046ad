"""Group commit (dispatcher/batch.py) with real threads: who runs which round, and errors."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from dispatcher.batch import Batch
from tests.support.waiting import wait_until


class Recorder:
    """``process``: doubles each item; the first round waits for the gate."""

    def __init__(self) -> None:
        self.rounds: list[list[int]] = []
        self.gate = threading.Event()
        self.running = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.rounds.append(list(items))
        if len(self.rounds) == 1:
            self.running.set()
            assert self.gate.wait(10)
        return [i * 2 for i in items]


def _submit_all(
    batch: Batch[int, int], items: list[int]
) -> tuple[dict[int, object], list[threading.Thread]]:
    results: dict[int, object] = {}

    def call(item: int) -> None:
        try:
            results[item] = batch.submit(item)
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in items]
    for thread in threads:
        thread.start()
    return results, threads


def _behind_a_running_round(
    batch: Batch[int, int], recorder: Recorder, first: int, items: list[int]
) -> tuple[dict[int, object], dict[int, object]]:
    """Submit ``first`` and hold its round; queue ``items`` behind it; release; results."""
    first_results, first_threads = _submit_all(batch, [first])
    assert recorder.running.wait(10)
    results, threads = _submit_all(batch, items)
    wait_until(lambda: batch.queued() == len(items), timeout=10, what="the callers to queue")
    recorder.gate.set()
    for thread in first_threads + threads:
        thread.join(10)
    return first_results, results


def test_callers_arriving_while_a_round_runs_share_the_next_round():
    recorder = Recorder()
    batch: Batch[int, int] = Batch(recorder)
    first, results = _behind_a_running_round(batch, recorder, 1, list(range(2, 10)))
    assert recorder.rounds[0] == [1]
    assert sorted(recorder.rounds[1]) == list(range(2, 10))  # one round for all eight
    assert len(recorder.rounds) == 2
    assert first == {1: 2}
    assert results == {i: i * 2 for i in range(2, 10)}  # each caller gets its own result
    assert (batch.rounds, batch.largest) == (2, 8)


def test_a_caller_alone_runs_at_once():
    seen: list[list[int]] = []

    def process(items: list[int]) -> list[int]:
        seen.append(items)
        return [i + 1 for i in items]

    batch: Batch[int, int] = Batch(process)
    assert [batch.submit(i) for i in range(3)] == [1, 2, 3]
    assert seen == [[0], [1], [2]]


def test_a_round_is_cut_at_the_limit():
    recorder = Recorder()
    batch: Batch[int, int] = Batch(recorder, limit=3)
    _, results = _behind_a_running_round(batch, recorder, 0, list(range(1, 8)))
    assert [len(r) for r in recorder.rounds] == [1, 3, 3, 1]
    assert results == {i: i * 2 for i in range(1, 8)}


def test_a_failing_item_fails_only_its_own_caller():
    rounds: list[list[int]] = []
    gate, running = threading.Event(), threading.Event()

    def process(items: list[int]) -> Sequence[int | BaseException]:
        rounds.append(list(items))
        if len(rounds) == 1:
            running.set()
            assert gate.wait(10)
        if 13 in items:
            raise ValueError("unlucky")  # the whole round's transaction would roll back
        return [i * 2 for i in items]

    batch: Batch[int, int] = Batch(process)
    _, first_threads = _submit_all(batch, [1])
    assert running.wait(10)
    results, threads = _submit_all(batch, [12, 13, 14])
    wait_until(lambda: batch.queued() == 3, timeout=10, what="the callers to queue")
    gate.set()
    for thread in first_threads + threads:
        thread.join(10)
    assert results[12] == 24
    assert results[14] == 28
    assert isinstance(results[13], ValueError)
    assert sorted(rounds[1]) == [12, 13, 14]
    assert sorted(map(tuple, rounds[2:])) == [(12,), (13,), (14,)]  # then one by one


def test_an_exception_result_is_raised_in_its_caller_only():
    batch: Batch[int, int] = Batch(lambda items: [KeyError(i) if i < 0 else i for i in items])
    assert batch.submit(5) == 5
    with pytest.raises(KeyError):
        batch.submit(-1)
