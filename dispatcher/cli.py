"""The ``dispatcher`` command: ``up``, ``api``, ``worker``, ``beat``, ``flower``,
``migrate`` and ``cascades check``. Errors are one clear message, never a traceback.

Nothing that imports prometheus_client is imported at module level: the metrics
directory (multiprocess mode) must be in the environment before it is.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from config.cascades import CascadeConfigError, load_cascades
from config.settings import Settings, SettingsError, get_settings
from dispatcher import logs
from dispatcher.launcher import LaunchError, flower_command
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import QUEUES, create_celery

#: Commands that run a Cascade process (and so count metrics).
_PROCESSES = frozenset({"up", "api", "worker", "beat"})


def metrics_environment(settings: Settings) -> None:
    """Multiprocess mode for prometheus_client: every process of this host writes its
    samples to one directory (kept unless ``PROMETHEUS_MULTIPROC_DIR`` is already set)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = settings.effective_metrics_dir
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _check(settings: Settings) -> None:
    """Fail fast: providers and cascades are validated before anything starts."""
    from dispatcher.runtime import build_router

    router = build_router(settings, None)
    load_cascades(settings.cascades_dir, router.available_channels())


def _exec(argv: list[str]) -> int:
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process with a fixed command


def cmd_cascades_check(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.runtime import build_router

    path = Path(args.path) if args.path else settings.cascades_dir
    router = build_router(settings, None)
    cascades = load_cascades(path, router.available_channels())
    for name, cascade in sorted(cascades.items()):
        chain = " -> ".join(
            step.channel
            if not step.among
            else f"messenger({','.join(m.channel for m in step.members())})"
            for step in cascade.steps
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


def cmd_api(_: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    _check(settings)
    logs.configure("api", settings.log_format, settings.log_level)
    uvicorn.run(
        "dispatcher.api.app:production_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
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
            "-E",
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
    rt = build_runtime(settings, CeleryPublisher(celery))
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.build(rt).run(stop)
    return 0


def cmd_flower(_: argparse.Namespace, settings: Settings) -> int:
    argv, env = flower_command(settings)
    os.environ.update(env)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # Flower serves its own /metrics
    return _exec(argv)


def cmd_up(_: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.launcher import up
    from dispatcher.migrate import upgrade

    _check(settings)
    flower_command(settings)  # refuses an exposed Flower without a password, before starting
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    return up(settings)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="dispatcher", description="Cascade notification dispatcher")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run API, worker, beat and Flower locally").set_defaults(func=cmd_up)
    sub.add_parser("api", help="run the REST API").set_defaults(func=cmd_api)
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", help="comma-separated queues (default: all)")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        help="prefork (default): processes; threads: many sends in flight in one process",
    )
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="run the sweep scheduler").set_defaults(func=cmd_beat)
    sub.add_parser("flower", help="run Flower").set_defaults(func=cmd_flower)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    cascades = sub.add_parser("cascades", help="cascade files")
    cascades_sub = cascades.add_subparsers(dest="action", required=True)
    check = cascades_sub.add_parser("check", help="validate cascade files")
    check.add_argument("path", nargs="?", help="directory (default: CASCADE_CASCADES_DIR)")
    check.set_defaults(func=cmd_cascades_check)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return 2
    if args.command in _PROCESSES:
        metrics_environment(settings)
    from dispatcher.routing import RoutingError

    try:
        return int(args.func(args, settings))
    except (SettingsError, RoutingError, LaunchError) as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
    except CascadeConfigError as exc:
        print("dispatcher: invalid cascades:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
