"""The HTTP boundary shared by all providers.

:func:`map_http_errors` translates transport failures into the error tree at one
place, so provider modules only build payloads and parse responses. The rule
that matters for money: an error *before* the request left (connect error,
connect/pool timeout) is :class:`NotSentError`; an error *after* the body may
have reached the provider (read/write timeout, dropped connection) is
:class:`UnknownOutcomeError`.

One rule for HTTP server errors, the same for every provider
(:func:`server_error`): **503 means the request was not processed**, so it is
:class:`NotSentError` whatever the body says (RFC 9110 §15.6.4 "unable to handle
the request"; FCM ``UNAVAILABLE``, APNs ``ServiceUnavailable``, Twilio 20503 all
say "try again"). **Any other 5xx may have been processed** (Twilio documents
that retrying a 500 on a send can deliver twice), so it is
:class:`UnknownOutcomeError`, unless the provider's body carries an error code it
documents as refused (FCM ``UNAVAILABLE``, WhatsApp throttling codes, Telegram
``retry_after``); each provider applies that part itself.

:func:`quick_retry` is the only retry layer inside providers: a few fast
attempts for :class:`NotSentError` only, bounded by :data:`QUICK_RETRY`. What
survives is retried by the dispatcher (``due_at`` backoff), and everything
permanent by the cascade.
"""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from providers.errors import (
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)

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


#: The status that proves a request was not processed (see the module docstring).
UNAVAILABLE = 503


def server_error(
    provider: str, response: httpx.Response, *, code: str | None = None
) -> ProviderError | None:
    """The one rule for 5xx: 503 is "not sent", any other 5xx an unknown outcome.

    Returns None below 500. A provider that reads its body's error codes first must
    still let a 503 win (tests/providers/test_status_rule.py holds every provider to it).
    """
    status = response.status_code
    if status < 500:
        return None
    detail = f"{provider}: HTTP {status}"
    if status == UNAVAILABLE:
        return NotSentError(
            detail, code=code or str(status), retry_after=retry_after_seconds(response)
        )
    return UnknownOutcomeError(detail, code=code or str(status))


def raise_for_status_class(
    provider: str, response: httpx.Response, *, code: str | None = None
) -> None:
    """Default mapping for providers whose HTTP status carries the meaning.

    429 is "not sent" (the provider refused to take it); 5xx follow
    :func:`server_error`; 401/403 are config errors; other 4xx are rejections of
    this message. 2xx/3xx pass.
    """
    status = response.status_code
    if status < 400:
        return
    detail = f"{provider}: HTTP {status}"
    if status == 429:
        raise NotSentError(
            detail, code=code or str(status), retry_after=retry_after_seconds(response)
        )
    error = server_error(provider, response, code=code)
    if error is not None:
        raise error
    if status in (401, 403):
        raise ProviderConfigError(detail, code=code or str(status))
    raise RejectedError(detail, code=code or str(status))


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How much of a worker's time the quick retries of one send may take.

    ===================  =======  ====================================================
    ``attempts``         3        tries in all, the first included
    ``total``            5.0 s    tries and waits together: no retry starts (and no
                                  wait is slept) that would end past it
    ``max_wait``         1.0 s    cap of the exponential backoff between tries
    ``max_retry_after``  2.0 s    a longer ``Retry-After`` is never slept here: the
                                  :class:`NotSentError` goes to the dispatcher at once,
                                  which reschedules the attempt in the database
    ===================  =======  ====================================================

    A ``Retry-After`` within the cap is honoured (the wait is at least that long).
    A try in progress is bounded by its own timeouts, not by ``total``.
    """

    attempts: int = 3
    total: float = 5.0
    max_wait: float = 1.0
    max_retry_after: float = 2.0


#: The policy every provider's ``@quick_retry()`` uses.
QUICK_RETRY = RetryBudget()


def quick_retry(
    budget: RetryBudget = QUICK_RETRY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: a few fast retries of :class:`NotSentError` within ``budget``, then re-raise.

    ``sleep`` and ``clock`` are injectable for tests; the decorated function's
    ``retry`` attribute is its :class:`tenacity.Retrying` (tests may replace its
    ``sleep`` too).
    """
    backoff = wait_exponential_jitter(multiplier=0.1, max=budget.max_wait, jitter=0.1)

    def short_enough(exc: BaseException) -> bool:
        """Only "not sent", and only when not told to wait longer than the cap."""
        if not isinstance(exc, NotSentError):
            return False
        return exc.retry_after is None or exc.retry_after <= budget.max_retry_after

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return max(float(backoff(state)), float(asked))

    retrying = Retrying(
        retry=retry_if_exception(short_enough), wait=wait, sleep=sleep, reraise=True
    )

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            started = clock()

            def stop(state: RetryCallState) -> bool:
                if state.attempt_number >= budget.attempts:
                    return True
                return clock() - started + state.upcoming_sleep > budget.total

            return retrying.copy(stop=stop)(fn, *args, **kwargs)

        wrapper.retry = retrying  # type: ignore[attr-defined]
        return wrapper

    return decorate
