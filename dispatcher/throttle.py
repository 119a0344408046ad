"""A global rate limit per provider: one token bucket in Redis shared by every worker.

Celery's ``rate_limit`` is per worker process; a provider's limit (Telegram ~30
messages/s per bot, WhatsApp 80/s) holds across all of them. The bucket is a
GCRA reservation in one Lua script: each caller reserves the next free slot and
sleeps until it, so in any window of ``w`` seconds at most ``burst + rate * w``
requests start, whichever worker makes them. A caller that would wait longer than
``max_wait`` reserves nothing and gets :class:`Throttled` (a ``NotSentError``
carrying ``retry_after``), so the attempt goes back to the database, not to sleep.

Limits: ``CASCADE_PROVIDERS__<NAME>__RATE_LIMIT`` for one provider, and
``CASCADE_RATE_LIMITS`` (JSON, per channel) for any provider of the channel without
its own, the sandbox included. A limit is ``30`` (messages/s; burst 1), ``"30/10"``
(burst 10) or ``{"rate": 30, "burst": 10}``. Without Redis the limit is not enforced
(logged), never a failed send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from dispatcher.routing import RoutingError
from providers.errors import NotSentError

log = logging.getLogger(__name__)

#: KEYS[1] the bucket; ARGV rate, burst, max_wait, now ("" = the Redis server's clock).
#: Stores the theoretical arrival time (TAT) of the next request; returns {granted, wait}.
_RESERVE = """
local rate, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local interval = 1 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, tostring(wait)} end
local ttl = math.ceil((tat + interval - now) * 1000) + 1000
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', ttl)
return {1, tostring(wait)}
"""


class Throttled(NotSentError):
    """The provider's rate limit is reached for longer than a worker should wait."""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` messages per second, at most ``burst`` at once."""

    rate: float
    burst: int = 1


def parse_limit(value: Any, name: str) -> Limit:
    """``30``, ``"30"``, ``"30/10"`` or ``{"rate": 30, "burst": 10}``; ``name`` is the
    variable named in the error."""
    try:
        if isinstance(value, Mapping):
            rate, burst = float(value["rate"]), int(value.get("burst", 1))
        elif isinstance(value, str) and "/" in value:
            left, right = value.split("/", 1)
            rate, burst = float(left), int(right)
        else:
            rate, burst = float(value), 1
    except (KeyError, TypeError, ValueError):
        raise RoutingError(f"{name}: give messages/s, e.g. 30 or '30/10' (rate/burst)") from None
    if rate <= 0 or burst < 1:
        raise RoutingError(f"{name}: the rate must be positive and the burst at least 1")
    return Limit(rate, burst)


class Throttle:
    """Takes a token right before each provider call; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis | None,
        *,
        providers: Mapping[str, Limit] | None = None,
        channels: Mapping[str, Limit] | None = None,
        max_wait: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        prefix: str = "cascade:throttle",
    ) -> None:
        self._client = client
        self._providers = dict(providers or {})
        self._channels = dict(channels or {})
        self._max_wait = max_wait
        self._clock = clock  #: None: the Redis server's clock (one clock for all hosts)
        self._sleep = sleep
        self._prefix = prefix
        self._script = client.register_script(_RESERVE) if client is not None else None

    @classmethod
    def unlimited(cls) -> Throttle:
        return cls(None)

    def limit_for(self, provider: str, channel: str) -> Limit | None:
        """The provider's own limit, else its channel's default, else none."""
        return self._providers.get(provider) or self._channels.get(channel)

    def pace(self, providers: Sequence[str], channel: str) -> int | None:
        """How many sends of ``channel`` one process may have waiting for slots at once
        without throttling its own siblings: ``rate * max_wait`` of the strictest limit
        among ``providers`` (at least 1); None when none of them is limited.

        With ``k`` callers in line, one that takes the place of the caller just served
        reserves a slot about ``k / rate`` seconds ahead: within ``max_wait`` for ``k``
        up to ``rate * max_wait`` (a burst only shortens the first waits)."""
        limits = [limit for name in providers if (limit := self.limit_for(name, channel))]
        if not limits:
            return None
        return min(max(1, int(x.rate * self._max_wait)) for x in limits)

    def reserve(self, provider: str, channel: str) -> float | None:
        """Reserve a slot: seconds to wait before sending, or None when nothing is limited.

        Raises:
            Throttled: the next slot is more than ``max_wait`` away; nothing reserved.
        """
        limit = self.limit_for(provider, channel)
        if limit is None or self._script is None:
            return None
        now = "" if self._clock is None else repr(self._clock())
        key = f"{self._prefix}:{provider}:{channel}"
        try:
            granted, wait = self._script(
                keys=[key], args=[limit.rate, limit.burst, self._max_wait, now]
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit not enforced", extra={"error": type(exc).__name__})
            return None
        seconds = float(wait)
        if not int(granted):
            raise Throttled(
                f"{provider}: rate limit {limit.rate:g}/s reached",
                code="throttled",
                retry_after=seconds,
            )
        return seconds

    def wait(self, provider: str, channel: str) -> None:
        """Block until this caller may call ``provider`` (at most ``max_wait``), or raise
        :class:`Throttled`."""
        seconds = self.reserve(provider, channel)
        if seconds:
            self._sleep(seconds)
