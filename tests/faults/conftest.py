"""Fixtures of the fault suite: one world (private Redis, a PostgreSQL database, worker,
sweep worker and beat subprocesses) shared by the scenarios of this package.

Starting the processes is the slow part, so the scenarios that break Redis, kill
children, add a beat or duplicate messages share one world; each starts from an
empty database and a fresh simulator record. The world must survive every scenario
(that is part of what is tested). The PostgreSQL restart builds its own world on a
private cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dispatcher.db import get_engine
from dispatcher.migrate import upgrade
from tests.faults.harness import FaultWorld, fault_world, standard_processes
from tests.support.database import truncate
from tests.support.processes import PrivateRedis, private_dir
from tests.support.services import drop_postgres_database, postgres_database


@pytest.fixture(scope="package", name="fault_redis")
def _fault_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the suite's own: scenarios flush, kill and restart it."""
    with private_dir("cascade-faults-redis-") as directory:
        server = PrivateRedis(directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="package", name="fault_postgres")
def _fault_postgres() -> Iterator[str]:
    """A fresh, migrated database on the shared PostgreSQL server."""
    name = f"cascade_faults_{os.getpid()}"
    url = postgres_database(name)
    upgrade(url)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        drop_postgres_database(name)


@pytest.fixture(scope="package", name="shared_world")
def _shared_world(fault_postgres: str, fault_redis: PrivateRedis) -> Iterator[FaultWorld]:
    with (
        private_dir("cascade-faults-world-") as data,
        fault_world(
            database_url=fault_postgres, redis_url=fault_redis.url + "/0", data=data, delay=0.5
        ) as world,
    ):
        standard_processes(world, concurrency=4)
        yield world


@pytest.fixture(name="world")
def _world(shared_world: FaultWorld) -> FaultWorld:
    """The shared world with an empty database and nothing recorded by the simulator."""
    truncate(shared_world.runtime.engine)
    shared_world.sim.sent.clear()
    shared_world.sim.requests.clear()
    return shared_world
