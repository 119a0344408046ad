"""The HTTP boundary shared by all providers.

:func:`map_http_errors` translates transport failures into the error tree at one
place, so provider modules only build payloads and parse responses. The rule
that matters for money: an error *before* the request left (connect error,
connect/pool timeout) is :class:`NotSentError`; an error *after* the body may
have reached the provider (read/write timeout, dropped connection) is
:class:`UnknownOutcomeError`.

:func:`quick_retry` is the only retry layer inside providers: a few fast
attempts for :class:`NotSentError` only. What survives is retried by the
dispatcher (``due_at`` backoff), and everything permanent by the cascade.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from providers.errors import NotSentError, ProviderConfigError, RejectedError, UnknownOutcomeError

T = TypeVar("T")

#: Connect fast (a dead host is "not sent"), read patiently (a slow provider may
#: still accept the message, and a read timeout is an unknown outcome).
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=15.0, write=10.0, pool=3.0)


def make_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT, **kwargs: object) -> httpx.Client:
    """One client per process (or thread), reused for every send."""
    return httpx.Client(timeout=timeout, **kwargs)  # type: ignore[arg-type]


@contextmanager
def map_http_errors(provider: str) -> Iterator[None]:
    """Translate httpx transport exceptions into the provider error tree."""
    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ProviderConfigError(f"{provider}: bad base_url ({type(exc).__name__})") from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise NotSentError(f"{provider}: could not connect ({type(exc).__name__})") from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError) as exc:
        raise UnknownOutcomeError(
            f"{provider}: no answer after sending ({type(exc).__name__})"
        ) from exc
    except httpx.TransportError as exc:
        raise UnknownOutcomeError(f"{provider}: transport error ({type(exc).__name__})") from exc


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds or as an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def raise_for_status_class(
    provider: str, response: httpx.Response, *, code: str | None = None
) -> None:
    """Default mapping for providers whose HTTP status carries the meaning.

    429 and 503 are "not sent" (the provider refused to take it); other 5xx are
    unknown (it may have been processed); 401/403 are config errors; other 4xx are
    rejections of this message. 2xx/3xx pass.
    """
    status = response.status_code
    if status < 400:
        return
    detail = f"{provider}: HTTP {status}"
    if status in (429, 503):
        raise NotSentError(
            detail, code=code or str(status), retry_after=retry_after_seconds(response)
        )
    if status >= 500:
        raise UnknownOutcomeError(detail, code=code or str(status))
    if status in (401, 403):
        raise ProviderConfigError(detail, code=code or str(status))
    raise RejectedError(detail, code=code or str(status))


def _short_retry_after(exc: BaseException) -> bool:
    """Retry quickly only when not told to wait long: long waits belong to the dispatcher."""
    if not isinstance(exc, NotSentError):
        return False
    return exc.retry_after is None or exc.retry_after <= 2.0


def quick_retry(
    attempts: int = 3, max_wait: float = 1.0
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: a few fast retries of :class:`NotSentError`, then re-raise it."""
    return retry(
        retry=retry_if_exception(_short_retry_after),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.1, max=max_wait, jitter=0.1),
        reraise=True,
    )
