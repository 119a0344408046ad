"""Processes the fault suite starts, breaks and restarts: a private Redis, a private
PostgreSQL cluster, and ``dispatcher worker`` / ``dispatcher beat`` subprocesses.

Each helper owns only what it started (by process id, never by name), so a test
can SIGKILL a worker child or restart "its" database without touching the
machine's shared Redis on 6379 or PostgreSQL on 5432.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dispatcher.launcher import free_port, redis_answers, redis_binary
from tests.support.services import unavailable
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A directory of our own under the system temp dir, removed afterwards.

    Not under pytest's ``tmp_path``: other pytest sessions on the machine prune old
    ``pytest-of-<user>/pytest-N`` trees, which would pull the data directory from under
    processes that run for minutes; and PostgreSQL (run as ``postgres``) could not
    reach into pytest's 0700 root anyway.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Terminate ``process`` (then kill it if it lingers)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def children(pid: int) -> list[int]:
    """Direct child process ids of ``pid`` (Linux ``/proc``)."""
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            found.extend(int(part) for part in Path(path).read_text().split())
        except OSError:
            continue
    return sorted(set(found))


@dataclass
class PrivateRedis:
    """A redis-server of our own on a free port; it can be flushed, killed and restarted."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = redis_binary()
        if binary is None:
            unavailable("no redis-server binary for a private Redis")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(binary),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: redis_answers(self.url + "/0", timeout=0.2), timeout=10, what="private Redis"
        )

    def flushall(self) -> None:
        redis.Redis.from_url(self.url).flushall()

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone, clients see a dropped connection."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, down_for: float = 1.0) -> None:
        """Kill, stay down ``down_for`` s (clients must cope), start empty on the same port."""
        self.kill()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, timeout=5)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, run as ``postgres``.

    initdb refuses to run as root, so every command runs through ``runuser -u postgres``
    when this process is root; the data directory is owned by that user.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    bindir: Path | None = field(default_factory=_postgres_bin)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> None:
        if self.bindir is None or (os.geteuid() == 0 and not shutil.which("runuser")):
            unavailable("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.directory.chmod(0o755)
        assert self.bindir is not None
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"
        )

    def _ctl(self, action: str, *extra: str) -> None:
        assert self.bindir is not None
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._run(
            str(self.bindir / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
            *extra,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``fast``: disconnect every client, ``immediate``: crash) and start again."""
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        if self.data.exists():
            self._ctl("stop", "-m", "immediate")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            self.url().replace("+psycopg", ""), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def dispatcher_process(
    command: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``dispatcher <command>`` as a subprocess (it execs Celery in place, same pid)."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", *command],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_children(process: subprocess.Popen[bytes], count: int, log: Path) -> list[int]:
    """Wait until the prefork parent has ``count`` children again; return their pids."""

    def ready() -> list[int] | None:
        if process.poll() is not None:
            raise AssertionError(f"worker exited:\n{log.read_text()[-3000:]}")
        found = children(process.pid)
        return found if len(found) >= count else None

    return wait_until(ready, timeout=180, what=f"{count} worker children")
