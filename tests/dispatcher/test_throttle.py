"""The global token bucket against real Redis, with an injected clock (no sleeping)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis

from config.settings import Settings
from dispatcher.routing import RoutingError
from dispatcher.runtime import build_throttle
from dispatcher.throttle import Limit, Throttle, Throttled, parse_limit
from tests.support.clock import FakeClock
from tests.support.dispatching import Make, drain
from tests.support.scenario import outbox, put_customer, send, show


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="client")
def _client(redis_base: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_base}/10")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def make(client: redis.Redis, clock: Clock, sleeps: list[float], **limits: Limit) -> Throttle:
    return Throttle(client, providers=limits, max_wait=1.0, clock=clock, sleep=sleeps.append)


def test_burst_then_one_slot_per_interval(client: redis.Redis):
    """10/s with burst 3: three at once, then each next one waits 0.1 s more."""
    clock, sleeps = Clock(), list[float]()
    throttle = make(client, clock, sleeps, tg=Limit(10, 3))
    waits = [throttle.reserve("tg", "telegram") for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    clock.now += 10  # the bucket refills, but never beyond the burst
    assert [throttle.reserve("tg", "telegram") for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_wait_sleeps_for_its_slot(client: redis.Redis):
    """wait() sleeps exactly until the reserved slot."""
    clock, sleeps = Clock(), list[float]()
    throttle = make(client, clock, sleeps, tg=Limit(4))
    for _ in range(3):
        throttle.wait("tg", "telegram")
    assert sleeps == pytest.approx([0.25, 0.5])


def test_too_long_a_wait_raises_and_reserves_nothing(client: redis.Redis):
    """Past max_wait: Throttled (a NotSentError) with retry_after; the slot is not taken."""
    clock, sleeps = Clock(), list[float]()
    throttle = make(client, clock, sleeps, tg=Limit(2))  # one slot per 0.5 s
    assert [throttle.reserve("tg", "telegram") for _ in range(3)] == pytest.approx([0, 0.5, 1.0])
    with pytest.raises(Throttled) as raised:
        throttle.reserve("tg", "telegram")
    assert raised.value.retry_after == pytest.approx(1.5)
    assert raised.value.code == "throttled"
    clock.now += 1.5  # nothing was reserved by the refused call: the next slot is now
    assert throttle.reserve("tg", "telegram") == pytest.approx(0)


def test_the_rate_never_exceeds_the_limit_for_many_callers(client: redis.Redis):
    """Two throttles (two workers) share one bucket: slots per window <= burst + rate * w."""
    clock = Clock()
    workers = [make(client, clock, [], tg=Limit(50, 5)) for _ in range(2)]
    starts: list[float] = []
    for step in range(400):
        clock.now += 0.004  # callers arrive at 250/s, five times the limit
        worker = workers[step % 2]
        with contextlib.suppress(Throttled):
            starts.append(clock.now + (worker.reserve("tg", "telegram") or 0))
    starts.sort()
    assert len(starts) > 50
    for i, start in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s < start + 1.0)
        assert in_window <= 5 + 50


def test_limits_are_per_provider_and_channel_defaults_apply(client: redis.Redis):
    """A provider's own limit wins; the channel default covers the sandbox; others are free."""
    clock = Clock()
    throttle = Throttle(
        client,
        providers={"telegram": Limit(1)},
        channels={"whatsapp": Limit(1)},
        clock=clock,
        max_wait=5,
    )
    assert throttle.reserve("telegram", "telegram") == 0
    assert throttle.reserve("telegram", "telegram") == pytest.approx(1)
    assert throttle.reserve("sandbox", "whatsapp") == 0
    assert throttle.reserve("sandbox", "whatsapp") == pytest.approx(1)
    assert throttle.reserve("sandbox", "telegram") is None  # no limit for the sandbox there
    assert throttle.reserve("sandbox", "push") is None


def test_redis_server_clock_by_default(client: redis.Redis):
    """Without an injected clock the bucket uses Redis's own TIME (one clock for all hosts)."""
    throttle = Throttle(client, providers={"tg": Limit(1, 2)}, max_wait=5)
    assert throttle.reserve("tg", "telegram") == 0
    assert throttle.reserve("tg", "telegram") == 0
    assert 0.5 < (throttle.reserve("tg", "telegram") or 0) <= 1.0


def test_unreachable_redis_does_not_fail_sends():
    """No Redis: the limit is not enforced (and logged), the send goes on."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    throttle = Throttle(dead, providers={"tg": Limit(1)})
    assert throttle.reserve("tg", "telegram") is None


@pytest.mark.parametrize(
    ("value", "limit"),
    [(30, Limit(30)), ("30", Limit(30)), ("80/10", Limit(80, 10)), ({"rate": 5}, Limit(5))],
)
def test_parse_limit(value: object, limit: Limit):
    """Limits read as numbers, 'rate/burst' strings or objects."""
    assert parse_limit(value, "X") == limit


@pytest.mark.parametrize("value", ["fast", 0, "10/0", {"burst": 3}])
def test_bad_limits_name_the_variable(value: object):
    """A wrong limit stops startup with the variable's name."""
    with pytest.raises(RoutingError, match="CASCADE_RATE_LIMITS__TELEGRAM"):
        build_throttle(Settings(_env_file=None, rate_limits={"telegram": value}), None)


def test_settings_feed_the_throttle():
    """Provider RATE_LIMIT and CASCADE_RATE_LIMITS both reach the throttle."""
    settings = Settings(
        _env_file=None,
        rate_limits={"whatsapp": "80/10"},
        providers={"telegram": {"token": "1:x", "rate_limit": "30"}},
    )
    throttle = build_throttle(settings, None)
    assert throttle.limit_for("telegram", "telegram") == Limit(30)
    assert throttle.limit_for("sandbox", "whatsapp") == Limit(80, 10)
    assert throttle.limit_for("sandbox", "sms") is None


def test_a_throttled_send_goes_back_to_pending_without_demotion(make: Make, clock: FakeClock):
    """Over the limit: the attempt is rescheduled (no provider call), and nobody is demoted."""
    runtime, api = make(demote_after_failures=1)
    runtime.throttle = Throttle(
        redis.Redis.from_url(runtime.settings.redis_url),
        channels={"push": Limit(1)},
        max_wait=0,
        clock=lambda: clock().timestamp(),
    )
    put_customer(api, "t1")
    put_customer(api, "t2")
    first, second = send(api, "t1")["id"], send(api, "t2")["id"]
    assert drain(runtime) == ["sent", "throttled"]
    attempt = show(api, second)["attempts"][0]
    assert (attempt["state"], attempt["error_code"]) == ("pending", "throttled")
    assert attempt["tries"] == 0  # pacing is not a failed try
    assert show(api, first)["attempts"][0]["state"] == "sent"
    assert not runtime.router.health.demoted("sandbox", clock())
    assert [s["reference"] for s in outbox(runtime.settings.data_dir / "outbox.jsonl")] == [
        show(api, first)["attempts"][0]["id"]
    ]


def test_pace_keeps_a_line_of_callers_within_max_wait(client: redis.Redis):
    """rate * max_wait callers in line, each replaced as the one ahead is served, never wait
    past max_wait; one more in line would."""
    clock = Clock()
    throttle = Throttle(
        client,
        providers={"telegram": Limit(5), "wa1": Limit(80, 10), "wa2": Limit(20, 2)},
        channels={"push": Limit(0.2)},
        clock=clock,
        max_wait=1.0,
    )
    assert throttle.pace(["telegram"], "telegram") == 5
    assert throttle.pace(["wa1", "wa2"], "whatsapp") == 20
    assert throttle.pace(["sandbox"], "push") == 1  # below one a second: one at a time
    assert throttle.pace(["sandbox"], "sms") is None
    assert throttle.pace([], "sms") is None
    line = [clock.now + (throttle.reserve("telegram", "telegram") or 0.0) for _ in range(5)]
    for _ in range(50):  # the first in line is served just after its slot; another joins
        clock.now = line.pop(0) + 0.001
        wait = throttle.reserve("telegram", "telegram") or 0.0  # raises Throttled if too long
        assert wait <= 1.0
        line.append(clock.now + wait)
    with pytest.raises(Throttled):  # a sixth in line
        throttle.reserve("telegram", "telegram")
