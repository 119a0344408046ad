"""Provider health shared by all workers through Redis: failures demote a provider.

A provider that fails ``threshold`` times (provider-level failures only: outage,
config error, "not sent" after quick retries) within ``window`` seconds is
demoted until ``now + cooldown``; the router then tries the channel's other
providers first. It recovers on its own when the cool-down ends. The deadline is
stored as a timestamp and compared with the caller's ``now`` (injected clock).
Losing Redis loses only this advisory state, never a notification.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

DEMOTIONS = Counter("cascade_provider_demotions", "Providers demoted after failures", ["provider"])
FAILURES = Counter("cascade_provider_failures", "Provider-level failures", ["provider", "kind"])


class ProviderHealth:
    """Failure counting and demotion, keyed by provider name."""

    def __init__(
        self,
        redis: Any,
        *,
        threshold: int = 3,
        window: float = 60.0,
        cooldown: float = 300.0,
        prefix: str = "cascade:health",
    ) -> None:
        self._redis = redis
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self._prefix = prefix

    def _key(self, kind: str, provider: str) -> str:
        return f"{self._prefix}:{kind}:{provider}"

    def failed(self, provider: str, kind: str, now: datetime) -> bool:
        """Count one provider-level failure; True if this demoted the provider."""
        FAILURES.labels(provider, kind).inc()
        if self._redis is None:
            return False
        key = self._key("failures", provider)
        try:
            count = int(self._redis.incr(key))
            if count == 1:
                self._redis.expire(key, max(1, int(self.window)))
            if count < self.threshold:
                return False
            self._redis.delete(key)
        except Exception as exc:
            log.warning("provider health unavailable", extra={"error": type(exc).__name__})
            return False
        return self.demote(provider, kind, now)

    def demote(self, provider: str, reason: str, now: datetime) -> bool:
        """Demote ``provider`` until ``now + cooldown``; False if it already was."""
        if self._redis is None or self.demoted(provider, now):
            return False
        until = now.timestamp() + self.cooldown
        try:
            self._redis.set(self._key("demoted", provider), until, ex=int(self.cooldown) + 3600)
        except Exception as exc:
            log.warning("provider health unavailable", extra={"error": type(exc).__name__})
            return False
        DEMOTIONS.labels(provider).inc()
        log.error(
            "provider demoted",
            extra={"provider": provider, "kind": reason, "cooldown_s": self.cooldown},
        )
        return True

    def succeeded(self, provider: str) -> None:
        if self._redis is None:
            return
        with contextlib.suppress(Exception):  # advisory state only
            self._redis.delete(self._key("failures", provider))

    def demoted(self, provider: str, now: datetime) -> bool:
        """True while the provider's cool-down has not ended at ``now``."""
        if self._redis is None:
            return False
        try:
            until = self._redis.get(self._key("demoted", provider))
        except Exception:
            return False
        return until is not None and now.timestamp() < float(until)
