"""Scenario 3: the PostgreSQL server restarts (fast, then immediate) under load.

A private cluster (initdb + pg_ctl on a free port) so the machine's shared server is
never restarted. Workers lose every connection mid-transaction; claims that cannot be
recorded become ``unknown`` through the sweep, never resent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatcher.db import get_engine
from dispatcher.migrate import upgrade
from tests.faults.counts import report
from tests.faults.harness import fault_world, standard_processes
from tests.support.processes import PrivatePostgres, PrivateRedis, private_dir
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

NOTIFICATIONS = 100


@pytest.fixture(name="private_postgres")
def _private_postgres() -> Iterator[PrivatePostgres]:
    with private_dir("cascade-faults-pg-") as directory:
        cluster = PrivatePostgres(directory / "cluster")
        cluster.init()
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


def test_postgres_restarts_under_load(
    private_postgres: PrivatePostgres, fault_redis: PrivateRedis, capsys
):
    """Two restarts while SMS are being sent: every notification final, no SMS twice."""
    url = private_postgres.create_database("cascade_faults")
    upgrade(url)
    with (
        private_dir("cascade-faults-world-") as data,
        fault_world(database_url=url, redis_url=fault_redis.url + "/1", data=data) as world,
    ):
        standard_processes(world, concurrency=4)
        ids = world.submit_in_flight(NOTIFICATIONS)
        open_at_restart = []
        for mode, after in (("fast", 20), ("immediate", 60)):

            def sending(after: int = after) -> bool:
                return len(world.sim.sent) >= after

            wait_until(sending, timeout=180, what=f"{after} paid sends before the {mode} restart")
            open_at_restart.append(world.open_count())
            private_postgres.restart(mode)
        world.wait_final(timeout=300)
        counts = world.tally(
            **{"open at fast restart": open_at_restart[0], "open at crash": open_at_restart[1]}
        )
        report(capsys, "PostgreSQL restarted (fast, then immediate) under load", counts)
    get_engine(url).dispose()
    assert counts.notifications == len(ids)
    counts.assert_clean()
    assert min(open_at_restart) >= 50  # the restarts really happened under load
