"""A group's sends run concurrently, each to its end, even when one of them raises."""

from __future__ import annotations

import os
import threading

import pytest

from dispatcher.send_groups import SendThreads, summary, threads_per_process


def test_a_group_runs_its_sends_at_once_and_keeps_their_order():
    """Four sends that each wait for all four to have started: only concurrency passes."""
    started = threading.Barrier(4, timeout=5)

    def send(attempt_id: str, notification_id: str) -> str:
        started.wait()
        return f"{attempt_id}/{notification_id}"

    pairs = [(f"a{i}", f"n{i}") for i in range(4)]
    assert SendThreads(4).run_all(send, pairs) == ["a0/n0", "a1/n1", "a2/n2", "a3/n3"]


def test_one_send_raising_does_not_stop_the_others():
    done: list[str] = []

    def send(attempt_id: str, _: str) -> str:
        if attempt_id == "a1":
            raise RuntimeError("database away")
        done.append(attempt_id)
        return attempt_id

    with pytest.raises(RuntimeError, match="database away"):
        SendThreads(2).run_all(send, [(f"a{i}", "") for i in range(5)])
    assert sorted(done) == ["a0", "a2", "a3", "a4"]


def test_the_threads_are_rebuilt_in_a_forked_child():
    threads = SendThreads(1)
    assert threads.run_all(lambda a, _: os.getpid(), [("a", "")]) == [os.getpid()]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's executor threads do not exist here
        try:
            ran = threads.run_all(lambda a, _: os.getpid(), [("a", "")])
            os.write(write, b"ok" if ran == [os.getpid()] else b"no")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok"


def test_threads_per_process_and_the_summary():
    assert threads_per_process("threads", 128, 32) == 128
    assert threads_per_process("prefork", 2, 32) == 32
    assert summary(["sent via fcm", "sent via fcm", "failed via fcm: gone"]) == (
        "3 attempts: 2 sent via fcm, 1 failed via fcm: gone"
    )


def test_a_paced_group_has_at_most_pace_sends_at_once():
    """Eight sends, pace 2: never more than two inside ``send`` together (and two do meet)."""
    lock, inside, most = threading.Lock(), [0], [0]

    def send(attempt_id: str, _: str) -> str:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.05)
        with lock:
            inside[0] -= 1
        return attempt_id

    pairs = [(f"a{i}", "") for i in range(8)]
    assert SendThreads(8).run_all(send, pairs, pace=2) == [a for a, _ in pairs]
    assert most[0] == 2
