"""One log format for every Cascade process: API, worker, beat and Flower.

Each line names the process (``api``, ``worker``, ``beat``, ``flower``) and its pid,
then the logger and the message, then the ``extra=`` fields of the call
(``provider=twilio attempt_id=… notification_id=…``): the standard library drops
those unless the format names them, so the formatter appends every one it finds.
``CASCADE_LOG_FORMAT=json`` prints one JSON object per line instead, with the same
fields as keys.

No PII: call sites pass ids, provider names and codes only; the formatter adds
nothing from the message's content.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)
#: ``extra=`` keys not worth a line: Celery repeats its message's arguments (and the
#: traceback of an expected failure) in ``data``.
_SKIP = frozenset({"data"})
#: Loggers too chatty at INFO: httpx logs request URLs (device endpoints, bot tokens).
_QUIET = ("httpx", "httpcore", "hpack", "asyncio")


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of ``record``, in the order they were given."""
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD and k not in _SKIP and not k.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-11-29T10:00:00.123Z worker[812] INFO dispatcher.health: provider demoted
    provider=twilio kind=not_sent``"""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text(v)}" for k, v in extras(record).items())
        line = (
            f"{_timestamp(record)} {self.process}[{record.process}] {record.levelname} "
            f"{record.name}: {record.getMessage()}"
        )
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``process``, ``pid``, ``level``, ``logger``,
    ``message``, then the ``extra=`` fields."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": _timestamp(record),
            "process": self.process,
            "pid": record.process,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            body.setdefault(key, value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def formatter(process: str, fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter(process) if fmt == "json" else TextFormatter(process)


def configure(process: str, fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Make the root logger print ``process``'s lines in the one format, to stderr.

    Replaces handlers set up before (``logging.basicConfig``, uvicorn's, Celery's), so
    libraries' lines (uvicorn access, Celery task results, Flower) share the format.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(process, fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "flower"):
        logger = logging.getLogger(name)
        for own in list(logger.handlers):  # their own handlers would print a second format
            logger.removeHandler(own)
        logger.propagate = True
