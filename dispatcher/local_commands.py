"""The ``dispatcher`` commands that work on this machine rather than through the API:
``up``, ``api``, ``worker``, ``beat`` and ``flower`` (each checks providers and cascades
first and refuses a port already in use), ``migrate`` and ``cascades check``.

As in :mod:`dispatcher.cli`, nothing that imports prometheus_client is imported at
module level.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from config.cascade_files import load_cascades
from config.cascades import Cascade
from config.settings import Settings
from dispatcher import logs
from dispatcher.launcher import LaunchError, flower_command
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import QUEUES, create_celery


def _check(settings: Settings) -> None:
    """Fail fast: providers and cascades are validated before anything starts."""
    from dispatcher.runtime import build_router, capabilities

    router = build_router(settings, None)
    load_cascades(settings.cascades_dir, capabilities(settings, router))


def ensure_port_free(host: str, port: int, variable: str) -> None:
    """Fail with one line naming the setting when something already listens on the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LaunchError(
                    f"{variable}: port {port} on {host} is already in use "
                    f"(is it already running? stop it or set {variable})"
                ) from None
            raise LaunchError(
                f"{variable}: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None


def _exec(argv: list[str]) -> int:
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process with a fixed command


def _chain(cascade: Cascade) -> str:
    return " -> ".join(
        step.channel
        if not step.among
        else f"messenger({','.join(m.channel for m in step.members())})"
        for step in cascade.steps
    )


def _variant_chain(cascade: Cascade, variant: str) -> str:
    """A variant's chain, marked when it runs in adaptive order (its own or the cascade's)."""
    runs = cascade.variant(variant)
    return _chain(runs) + (" [adaptive order]" if runs.order == "adaptive" else "")


def cmd_cascades_check(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.runtime import build_router, capabilities

    path = Path(args.path) if args.path else settings.cascades_dir
    router = build_router(settings, None)
    cascades = load_cascades(path, capabilities(settings, router))
    for name, cascade in sorted(cascades.items()):
        chain = _chain(cascade)
        if cascade.order == "adaptive":
            chain += "; order adaptive"
        if cascade.experiment is not None:  # A/B: each variant's weight, steps and order
            chain += f"; experiment {cascade.experiment_name}: " + ", ".join(
                f"{v.name} ({v.weight:g}) {_variant_chain(cascade, v.name)}"
                for v in cascade.experiment.variants
            )
        locales = ""
        if cascade.templates:  # every variant rendered with sample data at load
            others = "".join(f", {locale}" for locale in cascade.locales)
            locales = f"; locales: {cascade.default_locale} (default){others}"
        print(f"ok  {name}: {chain}{locales}")
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.migrate import upgrade

    upgrade(settings.effective_database_url)
    print("database is up to date")
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    _check(settings)
    ensure_port_free(settings.api_host, settings.api_port, "CASCADE_API_PORT")
    logs.configure("api", settings.log_format, settings.log_level)
    uvicorn.run(
        "dispatcher.api.app:production_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=args.workers or settings.api_workers,
        # Each worker process imports the app before it answers the supervisor's health
        # pings; on a busy host that takes longer than uvicorn's default 5 s, and a worker
        # killed for it is restarted forever.
        timeout_worker_healthcheck=60,
        log_config=None,  # keep the one format configured above
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    _check(settings)
    queues = args.queues or ",".join(QUEUES)
    concurrency = str(args.concurrency or settings.worker_concurrency)
    pool = args.pool or settings.worker_pool
    if pool == "threads":
        # The threads claim and record in shared rounds (group commit), one connection per
        # round: a few connections serve many threads. An explicit setting wins.
        os.environ.setdefault("CASCADE_DB_POOL_SIZE", str(min(int(concurrency), 10)))
    os.environ["CASCADE_PROCESS"] = "worker"
    # The worker's own settings agree with the flags (send groups size their threads by them).
    os.environ["CASCADE_WORKER_POOL"], os.environ["CASCADE_WORKER_CONCURRENCY"] = pool, concurrency
    return _exec(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "dispatcher.worker",
            "worker",
            "-Q",
            queues,
            "-c",
            concurrency,
            "--pool",
            pool,
            *(["-E"] if settings.task_events else []),
            "-n",
            f"cascade-{os.getpid()}@%h",
            "--loglevel",
            "INFO",
        ]
    )


def cmd_beat(_: argparse.Namespace, settings: Settings) -> int:
    """Run the sweep in this process, every ``CASCADE_SWEEP_INTERVAL`` s, as lease holder."""
    from dispatcher import flower, metrics, scheduler
    from dispatcher.runtime import build_runtime

    _check(settings)
    logs.configure("beat", settings.log_format, settings.log_level)
    celery = create_celery(settings)
    flower.install(celery, "beat")  # escalations and receipts the sweep applies, in Flower
    rt = build_runtime(settings, CeleryPublisher(celery, settings.send_group))
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.build(rt).run(stop)
    return 0


def cmd_flower(_: argparse.Namespace, settings: Settings) -> int:
    argv, env = flower_command(settings)
    ensure_port_free(settings.flower_address, settings.flower_port, "CASCADE_FLOWER_PORT")
    os.environ.update(env)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # Flower serves its own /metrics
    return _exec(argv)


def cmd_up(_: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.launcher import up
    from dispatcher.migrate import upgrade

    _check(settings)
    flower_command(settings)  # refuses an exposed Flower without a password, before starting
    ensure_port_free(settings.api_host, settings.api_port, "CASCADE_API_PORT")
    ensure_port_free(settings.flower_address, settings.flower_port, "CASCADE_FLOWER_PORT")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    return up(settings)
