"""Everything one process needs, built once: settings, cascades, database, providers.

Workers build it lazily in each child process (after fork), the API at startup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine

from config.capabilities import Capabilities
from config.cascade_files import load_cascades
from config.cascades import Cascade
from config.settings import Settings
from dispatcher import engagement, metrics
from dispatcher.batch import Batch
from dispatcher.db import get_engine
from dispatcher.experiments import VariantStatuses
from dispatcher.health import ProviderHealth
from dispatcher.publisher import Publisher
from dispatcher.routing import Router
from dispatcher.throttle import Throttle, parse_limit
from providers.base import Signal
from providers.http import make_client

Clock = Callable[[], datetime]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    cascades: dict[str, Cascade]
    engine: Engine
    router: Router
    publisher: Publisher
    clock: Clock = utcnow
    next_latency_check: datetime = EPOCH  #: when the sweep next checks receipt latency
    throttle: Throttle = field(default_factory=Throttle.unlimited)  #: global provider limits
    batches: dict[str, Batch[Any, Any]] = field(default_factory=dict)  #: group commit, by step
    #: A/B variant statuses (stopped/promoted), cached for a few seconds per process.
    experiments: VariantStatuses = field(default_factory=VariantStatuses)

    def now(self) -> datetime:
        return self.clock()

    def batch(self, name: str, process: Callable[[list[Any]], Any]) -> Batch[Any, Any]:
        """This process's group commit for ``name`` (claims, records, intake), made on first use."""
        found = self.batches.get(name)
        if found is None:
            found = self.batches.setdefault(name, Batch(process, self.settings.batch_size))
        return found

    def close(self) -> None:
        """Close the providers' connections (shared client and their own, e.g. APNs)."""
        self.router.close()


def build_router(settings: Settings, redis_client: object | None) -> Router:
    health = ProviderHealth(
        redis_client,
        threshold=settings.demote_after_failures,
        window=settings.demote_window,
        cooldown=settings.demote_cooldown,
    )
    return Router(
        channels=settings.channels,
        provider_settings=settings.providers,
        sandbox=settings.sandbox.provider_config() if settings.sandbox.enabled else None,
        client=make_client(),
        health=health,
        public_url=settings.public_url,
        receipt_secret=settings.effective_receipt_secret,
    )


def capabilities(settings: Settings, router: Router) -> Capabilities:
    """What a cascade step may wait for: what the providers report, plus ``clicked`` on
    every channel when link tracking is on (:mod:`dispatcher.links`)."""
    return router.capabilities().with_signal(
        Signal.CLICKED, enabled=settings.link_tracking, hint="CASCADE_LINK_TRACKING=true"
    )


def build_throttle(settings: Settings, redis_client: redis.Redis | None) -> Throttle:
    """Rate limits from ``CASCADE_PROVIDERS__<NAME>__RATE_LIMIT`` and ``CASCADE_RATE_LIMITS``."""
    providers = {
        name: parse_limit(values["rate_limit"], f"CASCADE_PROVIDERS__{name.upper()}__RATE_LIMIT")
        for name, values in settings.providers.items()
        if values.get("rate_limit") is not None
    }
    channels = {
        channel.value: parse_limit(value, f"CASCADE_RATE_LIMITS__{channel.value.upper()}")
        for channel, value in settings.rate_limits.items()
    }
    return Throttle(
        redis_client, providers=providers, channels=channels, max_wait=settings.throttle_max_wait
    )


def build_runtime(
    settings: Settings, publisher: Publisher, clock: Clock = utcnow, *, pre_ping: bool = True
) -> Runtime:
    """Validate providers and cascades (fail fast) and connect the database.

    ``pre_ping=False`` (the worker): no test query per pooled connection; its claims
    retry on a dead connection instead (:func:`~dispatcher.db.retry_disconnect`)."""
    metrics.install()  # this process's committed history is counted
    engagement.install(settings)
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2
    )
    router = build_router(settings, redis_client)
    cascades = load_cascades(settings.cascades_dir, capabilities(settings, router))
    engine = get_engine(settings.effective_database_url, settings.db_pool_size, pre_ping=pre_ping)
    throttle = build_throttle(settings, redis_client)
    return Runtime(settings, cascades, engine, router, publisher, clock, throttle=throttle)
