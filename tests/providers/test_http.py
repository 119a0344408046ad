"""The HTTP boundary: every status maps somewhere, and quick retries stay within budget.

Quick retries run against ``httpx.MockTransport`` with an injected sleep and clock: a
"slow" call advances the fake clock instead of taking time, so nothing sleeps here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from providers.errors import (
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)
from providers.http import (
    QUICK_RETRY,
    RetryBudget,
    map_http_errors,
    quick_retry,
    raise_for_status_class,
)

URL = "https://provider.test/send"


@pytest.mark.parametrize("status", range(200, 600))
def test_every_status_maps_somewhere(status: int) -> None:
    """Below 400 passes; 429 and 503 are "not sent"; other 5xx unknown; 401/403 config."""
    response = httpx.Response(status)
    if status < 400:
        raise_for_status_class("p", response)
        return
    with pytest.raises(ProviderError) as caught:
        raise_for_status_class("p", response)
    expected: type[ProviderError]
    if status in (429, 503):
        expected = NotSentError
    elif status >= 500:
        expected = UnknownOutcomeError
    elif status in (401, 403):
        expected = ProviderConfigError
    else:
        expected = RejectedError
    assert type(caught.value) is expected


@dataclass
class World:
    """A fake clock, the sleeps asked for, and the requests seen."""

    now: float = 1000.0
    waits: list[float] = field(default_factory=list)
    calls: int = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def sender(
    world: World,
    answers: list[httpx.Response | Exception],
    *,
    takes: float = 0.0,
    budget: RetryBudget = QUICK_RETRY,
) -> Callable[[], httpx.Response]:
    """A send through MockTransport; each call "takes" ``takes`` seconds of the fake clock."""

    def handler(request: httpx.Request) -> httpx.Response:
        world.calls += 1
        world.now += takes
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handler))

    @quick_retry(budget, sleep=world.sleep, clock=world.clock)
    def send() -> httpx.Response:
        with map_http_errors("p"):
            response = client.post(URL, json={})
        raise_for_status_class("p", response)
        return response

    return send


def test_not_sent_is_retried_up_to_the_attempt_limit() -> None:
    """A refused connection every time: 3 tries, 2 short backoff waits, then "not sent"."""
    world = World()
    send = sender(world, [httpx.ConnectError("refused")])
    with pytest.raises(NotSentError):
        send()
    assert world.calls == QUICK_RETRY.attempts
    assert len(world.waits) == QUICK_RETRY.attempts - 1
    assert all(0 < w <= QUICK_RETRY.max_wait for w in world.waits)


def test_a_retry_that_succeeds_returns_the_answer() -> None:
    """Refused once, then accepted: one wait, the answer comes back."""
    world = World()
    send = sender(world, [httpx.Response(503), httpx.Response(200)])
    assert send().status_code == 200
    assert world.calls == 2


def test_total_budget_bounds_tries_and_waits() -> None:
    """Connect timeouts of 3 s each: a second try fits in 5 s, a third would not start."""
    world = World()
    send = sender(world, [httpx.ConnectTimeout("slow")], takes=3.0)
    start = world.now
    with pytest.raises(NotSentError):
        send()
    assert world.calls == 2
    assert len(world.waits) == 1
    assert world.now - start <= 3.0 + QUICK_RETRY.max_wait + 3.0


@pytest.mark.parametrize("takes", [0.0, 0.4, 1.0, 1.9, 2.5, 4.0, 4.9, 6.0])
@pytest.mark.parametrize("retry_after", [None, "0.5", "2"])
def test_no_try_starts_after_the_budget(takes: float, retry_after: str | None) -> None:
    """However long calls take and whatever short Retry-After is asked, every try starts
    within ``total`` seconds of the first, and the attempt limit holds."""
    world = World()
    starts: list[float] = []
    headers = {"Retry-After": retry_after} if retry_after else {}

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append(world.now)
        world.now += takes
        return httpx.Response(503, headers=headers)

    client = httpx.Client(transport=httpx.MockTransport(handler))

    @quick_retry(sleep=world.sleep, clock=world.clock)
    def send() -> None:
        with map_http_errors("p"):
            raise_for_status_class("p", client.post(URL))

    with pytest.raises(NotSentError):
        send()
    assert 1 <= len(starts) <= QUICK_RETRY.attempts
    assert all(start - starts[0] <= QUICK_RETRY.total for start in starts)
    assert world.now - starts[0] <= QUICK_RETRY.total + takes


def test_retry_after_within_the_cap_is_honoured() -> None:
    """429 with Retry-After: 1.5 waits 1.5 s (not the shorter backoff), then succeeds."""
    world = World()
    limited = httpx.Response(429, headers={"Retry-After": "1.5"})
    send = sender(world, [limited, httpx.Response(200)])
    assert send().status_code == 200
    assert world.waits == [1.5]


def test_longer_retry_after_is_raised_not_slept() -> None:
    """429 with Retry-After above the cap: one request, no sleep; the dispatcher gets it."""
    world = World()
    over = QUICK_RETRY.max_retry_after + 1
    send = sender(world, [httpx.Response(429, headers={"Retry-After": str(over)})])
    with pytest.raises(NotSentError) as caught:
        send()
    assert caught.value.retry_after == over
    assert world.calls == 1
    assert world.waits == []


def test_a_wait_that_would_overrun_the_budget_is_not_slept() -> None:
    """A 4-s refusal asking for 2 s: 4 + 2 is past the 5-s budget, so it is raised at once."""
    world = World()
    send = sender(world, [httpx.Response(503, headers={"Retry-After": "2"})], takes=4.0)
    with pytest.raises(NotSentError) as caught:
        send()
    assert caught.value.retry_after == 2.0
    assert world.calls == 1
    assert world.waits == []


@pytest.mark.parametrize(
    "answer",
    [httpx.ReadTimeout("no answer"), httpx.Response(500), httpx.Response(400)],
    ids=["read-timeout", "500", "400"],
)
def test_only_not_sent_is_retried(answer: httpx.Response | Exception) -> None:
    """Unknown outcomes and rejections are never retried here: one request."""
    world = World()
    send = sender(world, [answer])
    with pytest.raises(ProviderError) as caught:
        send()
    assert not isinstance(caught.value, NotSentError)
    assert world.calls == 1
    assert world.waits == []


def test_a_smaller_budget_is_respected() -> None:
    """A policy of 2 tries within 1 s: 2 tries at most even when each is instant."""
    world = World()
    send = sender(
        world, [httpx.ConnectError("x")], budget=RetryBudget(attempts=2, total=1.0, max_wait=0.2)
    )
    with pytest.raises(NotSentError):
        send()
    assert world.calls == 2
    assert all(w <= 0.2 for w in world.waits)
