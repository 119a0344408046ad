"""What a bench run stands on: a private Redis, a database per backend, Cascade's processes.

Everything is started here and stopped by process id: a redis-server on a free port,
a SQLite file in a temporary directory or the PostgreSQL database ``cascade_bench_<pid>``
(dropped at the end),
and ``dispatcher api|worker|beat`` as subprocesses configured only through their
``CASCADE_*`` environment, exactly as an operator would run them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from celery import Celery
from sqlalchemy import Engine, MetaData, create_engine, text

from dispatcher.launcher import free_port, start_embedded_redis
from dispatcher.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789"
POSTGRES = os.environ.get("CASCADE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Our own name: another checkout's bench may drop ``cascade_bench`` while this one runs.
BENCH_DB = f"cascade_bench_{os.getpid()}"
CASCADE_YAML = """\
name: bench
description: Benchmark cascade. Push first, SMS after an hour without a read.
category: transactional
ttl: 3h
quiet_hours: ignore
steps:
  - channel: push
    wait_for: read
    timeout: 1h
  - channel: sms
    wait_for: delivered
    timeout: 1h
"""


@contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    """A redis-server of our own on a free port; its URL (database 0)."""
    url, process = start_embedded_redis(tmp / "redis")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def create_database(backend: str, tmp: Path) -> str | None:
    """A fresh, migrated database; None when PostgreSQL does not answer."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        try:
            with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        except psycopg.OperationalError:
            return None
        base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{BENCH_DB}"
    upgrade(url)
    return url


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def plain_engine(url: str) -> Engine:
    """An engine for the bench's own reads and bulk writes (not Cascade's pool)."""
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 60})
    return create_engine(url, pool_size=2)


def wipe(engine: Engine, keep: tuple[str, ...] = ()) -> None:
    """Delete every row of every table except the migration version and ``keep``."""
    meta = MetaData()
    meta.reflect(engine)
    names = [t.name for t in meta.sorted_tables if t.name not in ("alembic_version", *keep)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(names):
                conn.execute(text(f"DELETE FROM {name}"))  # noqa: S608 - reflected table names


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def worker_rss(pid: int) -> tuple[int, list[int]]:
    """RSS in KiB of a worker's main process and of each of its pool children."""
    return rss_kib(pid), [rss_kib(c) for c in children(pid)]


@dataclass
class Stack:
    """One backend's database plus the shared Redis, and the processes started on them."""

    backend: str
    url: str
    redis_url: str
    tmp: Path
    concurrency: int = 2
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cascades = self.tmp / "cascades"
        cascades.mkdir(exist_ok=True)
        (cascades / "bench.yaml").write_text(CASCADE_YAML)
        self.engine = plain_engine(self.url)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
        env.update(
            CASCADE_DATABASE_URL=self.url,
            CASCADE_REDIS_URL=self.redis_url,
            CASCADE_CASCADES_DIR=str(self.tmp / "cascades"),
            CASCADE_DATA_DIR=str(self.tmp),
            CASCADE_API_KEYS=KEY,
            CASCADE_WORKER_CONCURRENCY=str(self.concurrency),
            PYTHONPATH=str(ROOT),
        )
        env.update({f"CASCADE_{k.upper()}": v for k, v in extra.items()})
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def http_server(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[int, object]:
        """Start an HTTP server (``{port}`` in argv is filled in); wait for /healthz or /docs."""
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        env = {k: v.replace("{port}", str(port)) for k, v in env.items()}
        process = self.spawn(name, argv, env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                    return port, process
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not start; see {self.tmp / (name + '.log')}")

    def api(self) -> tuple[int, object]:
        env = self.env(max_body_bytes=str(64 << 20))  # a broadcast lists its customers
        argv = [sys.executable, "-m", "dispatcher.cli", "api"]
        return self.http_server("api", argv, {**env, "CASCADE_API_PORT": "{port}"})

    def worker(self, queues: str | None = None, **extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "dispatcher.cli", "worker"]
        if queues:
            argv += ["--queues", queues]
        process = self.spawn("worker", argv, self.env(**extra))
        try:
            wait_for_worker(self.redis_url, process)
        except RuntimeError:
            self.stop(process)
            raise RuntimeError("the worker did not start:\n" + self.log_tail("worker")) from None
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def beat(self, **extra: str) -> subprocess.Popen[bytes]:
        """Start beat and wait until it leads the sweep (start-up is not measured)."""
        log = self.tmp / "beat.log"
        offset = log.stat().st_size if log.exists() else 0
        argv = [sys.executable, "-m", "dispatcher.cli", "beat"]
        process = self.spawn("beat", argv, self.env(**extra))
        deadline = time.monotonic() + 180
        while b"dispatcher.scheduler: sweeping" not in log.read_bytes()[offset:]:
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop(process)
                raise RuntimeError("beat did not start:\n" + self.log_tail("beat"))
            time.sleep(0.2)
        return process

    def stop(self, process: object) -> None:
        assert isinstance(process, subprocess.Popen)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.processes)):
            self.stop(process)

    def flush_redis(self) -> None:
        redis.Redis.from_url(self.redis_url).flushdb()


def wait_for_worker(redis_url: str, process: subprocess.Popen[bytes]) -> None:
    """Until the worker (any Celery worker on this broker) answers a ping."""
    probe = Celery("bench-probe", broker=redis_url, set_as_current=False)
    deadline = time.monotonic() + 180  # a loaded 2-core machine starts slowly
    while not probe.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start")
    probe.close()
