"""SMS.ru's callback secret travels in the query string; the access log never shows it.

A real uvicorn server with its access log on serves the API; the records of
``uvicorn.access`` are formatted as uvicorn formats them for the console.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from uvicorn.logging import AccessFormatter

from dispatcher.api.access_log import redact
from dispatcher.api.app import create_app
from dispatcher.runtime import Runtime, build_router
from tests.simulators import smsru
from tests.simulators.server import serve

SECRET = "smsru-callback-secret-4711"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(name="runtime")
def _runtime(runtime: Runtime) -> Runtime:
    """The shared runtime with SMS.ru configured for callbacks."""
    settings = runtime.settings.model_copy(
        update={"providers": {"smsru": {"api_id": smsru.API_ID, "callback_secret": SECRET}}}
    )
    return Runtime(
        settings,
        runtime.cascades,
        runtime.engine,
        build_router(settings, None),
        runtime.publisher,
        runtime.clock,
    )


@pytest.fixture(name="access_lines")
def _access_lines() -> Iterator[Lines]:
    handler = Lines()
    yield handler
    logging.getLogger("uvicorn.access").removeHandler(handler)


def test_webhook_secret_is_not_in_the_access_log(runtime: Runtime, access_lines: Lines):
    """A real callback with ``?secret=`` is logged with its query redacted."""
    headers, body = smsru.callback_request([("000000-10000001", 103, 1700000000)])
    with serve(create_app(runtime), log_level="info") as url:
        logging.getLogger("uvicorn.access").addHandler(access_lines)
        response = httpx.post(
            f"{url}/v1/webhooks/smsru?secret={SECRET}", content=body, headers=headers
        )
        refused = httpx.post(f"{url}/v1/webhooks/smsru?secret=guess-{SECRET}", content=body)
    assert (response.status_code, response.text) == (200, "100")
    assert refused.status_code == 403
    logged = "\n".join(access_lines.lines)
    assert SECRET not in logged
    assert logged.count("POST /v1/webhooks/smsru?<redacted> HTTP/1.1") == 2


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/v1/webhooks/smsru?secret=s3", "/v1/webhooks/smsru?<redacted>"),
        ("/v1/webhooks/smsru?s3", "/v1/webhooks/smsru?<redacted>"),
        ("/v1/webhooks/smsru", "/v1/webhooks/smsru"),
        ("/v1/notifications?limit=5", "/v1/notifications?limit=5"),
    ],
)
def test_redact_only_touches_webhook_queries(path: str, logged: str):
    """Other paths keep their query strings (they carry no secrets)."""
    assert redact(path) == logged
