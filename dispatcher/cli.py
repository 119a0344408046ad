"""The ``dispatcher`` command: ``up``, ``api``, ``worker``, ``beat``, ``flower``,
``migrate``, ``cascades check``, and ``send``/``status``/``stats`` against a running API.
Errors are one clear message, never a traceback.

Nothing that imports prometheus_client is imported at module level: the metrics
directory (multiprocess mode) must be in the environment before it is.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx

from config.cascade_files import CascadeConfigError, load_cascades
from config.cascades import Cascade
from config.settings import Settings, SettingsError, get_settings
from dispatcher import __version__, experiment_commands, logs, remote
from dispatcher.client import ApiError
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


def cmd_cascades_check(args: argparse.Namespace, settings: Settings) -> int:
    from dispatcher.runtime import build_router, capabilities

    path = Path(args.path) if args.path else settings.cascades_dir
    router = build_router(settings, None)
    cascades = load_cascades(path, capabilities(settings, router))
    for name, cascade in sorted(cascades.items()):
        chain = _chain(cascade)
        if cascade.experiment is not None:  # A/B: each variant's weight and steps
            chain += f"; experiment {cascade.experiment_name}: " + ", ".join(
                f"{v.name} ({v.weight:g}) {_chain(cascade.variant(v.name))}"
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


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand with a one-line help (in the list) and a description (in its --help)."""
    return sub.add_parser(name, help=text, description=description)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="dispatcher",
        description="Cascade: a self-hosted notification dispatcher. Free channels first, "
        "paid SMS only when nobody read the message.",
        epilog="Settings come from CASCADE_* environment variables or a .env file "
        "(see the README). `dispatcher COMMAND --help` tells more.",
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(
        sub,
        "up",
        "run API, worker, beat and Flower locally",
        "Run everything on this machine: migrations, a private Redis if none answers, the "
        "API, one worker for every queue, beat and Flower. Ctrl-C stops everything.",
    ).set_defaults(func=cmd_up)
    api = _command(
        sub,
        "api",
        "run the REST API",
        "Serve the REST API on CASCADE_API_HOST:CASCADE_API_PORT (OpenAPI at /docs).",
    )
    api.add_argument(
        "--workers",
        type=int,
        help="API processes sharing the port (default: CASCADE_API_WORKERS, 1)",
    )
    api.set_defaults(func=cmd_api)
    worker = _command(
        sub,
        "worker",
        "run a Celery worker",
        "Run a Celery worker that sends attempts of the given queues (one per channel, "
        "plus engine for broadcast fan-out).",
    )
    worker.add_argument(
        "--queues", help=f"comma-separated queues (default: all: {','.join(QUEUES)})"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        help="processes or threads (default: CASCADE_WORKER_CONCURRENCY, 2)",
    )
    worker.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        help="prefork (default): processes; threads: many sends in flight in one process",
    )
    worker.set_defaults(func=cmd_worker)
    _command(
        sub,
        "beat",
        "run the sweep scheduler",
        "Run the sweep every CASCADE_SWEEP_INTERVAL seconds: escalations, lost doorbells, "
        "expiry, stale claims. Several may run; one holds the lease, the others stand by.",
    ).set_defaults(func=cmd_beat)
    _command(
        sub,
        "flower",
        "run Flower (Celery monitoring)",
        "Run Flower on CASCADE_FLOWER_ADDRESS:CASCADE_FLOWER_PORT, with basic auth when "
        "CASCADE_FLOWER_PASSWORD is set.",
    ).set_defaults(func=cmd_flower)
    _command(
        sub,
        "migrate",
        "apply database migrations",
        "Bring the database at CASCADE_DATABASE_URL up to date (run once per release).",
    ).set_defaults(func=cmd_migrate)
    cascades = _command(sub, "cascades", "cascade files", "Work with cascade YAML files.")
    cascades_sub = cascades.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = _command(
        cascades_sub,
        "check",
        "validate cascade files",
        "Validate every cascade file and list each cascade's chain of channels; every "
        "problem is reported with file, line and field.",
    )
    check.add_argument("path", nargs="?", help="directory (default: CASCADE_CASCADES_DIR)")
    check.set_defaults(func=cmd_cascades_check)
    remote.add_commands(sub)
    experiment_commands.add_commands(sub)
    return root


class _WarningFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"dispatcher: warning: {record.getMessage()}"


def _show_setting_warnings() -> None:
    """Unknown CASCADE_* variables are printed as one line each on stderr."""
    logger = logging.getLogger("cascade.settings")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_WarningFormat())
        logger.addHandler(handler)
        logger.propagate = False


def _api_error(exc: ApiError) -> None:
    print(f"dispatcher: the API answered {exc}", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error.get('field')}: {error.get('message')}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _show_setting_warnings()
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
    except (SettingsError, RoutingError, LaunchError, remote.InputError) as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
    except CascadeConfigError as exc:
        print("dispatcher: invalid cascades:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except ApiError as exc:
        _api_error(exc)
        return 1
    except httpx.HTTPError as exc:
        url = getattr(args, "url", None) or "the API"
        print(
            f"dispatcher: cannot reach {url}: {exc} (is `dispatcher api` running?)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
