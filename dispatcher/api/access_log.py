"""Keep webhook secrets out of the access log.

SMS.ru signs nothing, so its callback URL carries ``?secret=<callback secret>``,
and uvicorn's access log prints the path with its query string. A filter on the
``uvicorn.access`` logger replaces the whole query string of ``/v1/webhooks/*``
with ``<redacted>`` (a parameter's name could be a secret too, e.g. ``?<secret>``).
"""

from __future__ import annotations

import logging

WEBHOOKS = "/v1/webhooks/"
ACCESS_LOGGER = "uvicorn.access"
REDACTED = "<redacted>"


class RedactWebhookQuery(logging.Filter):
    """Rewrite uvicorn's access record ``(client, method, path, version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact(path: str) -> str:
    """``/v1/webhooks/smsru?secret=s3`` -> ``/v1/webhooks/smsru?<redacted>``; others unchanged."""
    base, mark, _ = path.partition("?")
    if not mark or not base.startswith(WEBHOOKS):
        return path
    return f"{base}?{REDACTED}"


def install() -> None:
    """Add the filter to uvicorn's access logger once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactWebhookQuery) for f in logger.filters):
        logger.addFilter(RedactWebhookQuery())
