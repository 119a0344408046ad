"""The ``dispatcher`` command: ``up``, ``api``, ``worker``, ``beat``, ``flower``,
``migrate``, ``cascades check``, and ``send``/``status``/``stats`` against a running API.
Errors are one clear message, never a traceback.

Nothing that imports prometheus_client is imported at module level: the metrics
directory (multiprocess mode) must be in the environment before it is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import httpx

from config.cascade_files import CascadeConfigError
from config.settings import Settings, SettingsError, get_settings
from dispatcher import __version__, experiment_commands, remote
from dispatcher.client import ApiError
from dispatcher.launcher import LaunchError
from dispatcher.local_commands import (
    cmd_api,
    cmd_beat,
    cmd_cascades_check,
    cmd_flower,
    cmd_migrate,
    cmd_up,
    cmd_worker,
)
from dispatcher.queues import QUEUES

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
