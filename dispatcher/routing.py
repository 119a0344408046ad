"""Which provider sends on which channel: priority, weights, demotion, the sandbox.

``CASCADE_CHANNELS__SMS='["twilio", "smsru"]'`` lists a channel's providers in
priority order; ``"twilio:3"`` gives a weight (weighted providers share the
traffic; the others follow in order). A channel with no providers listed is
served by the sandbox when it is on. Demoted providers move to the back.
A provider with ``accepts(address)`` only gets the addresses it can send to: on the push
channel a subscription JSON goes to Web Push, a hex device token to APNs, any other
token to FCM, whatever the order.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from config.capabilities import Capabilities
from dispatcher.health import ProviderHealth
from providers import REGISTRY
from providers.base import Channel, Provider, Signal, WebhookReceiver, reports_of
from providers.sandbox import SandboxConfig, SandboxProvider


class RoutingError(ValueError):
    """Provider settings are wrong; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    weight: float | None = None


def parse_routes(channels: Mapping[Channel, list[str]]) -> dict[Channel, list[Route]]:
    """The providers of each channel; every wrong entry reported at once."""
    routes: dict[Channel, list[Route]] = {}
    problems: list[str] = []
    for channel, entries in channels.items():
        parsed = []
        variable = f"CASCADE_CHANNELS__{channel.upper()}"
        for entry in entries:
            name, _, weight = entry.partition(":")
            if name not in REGISTRY:
                known = ", ".join(sorted(REGISTRY)) or "none"
                problems.append(f"{variable}: unknown provider {name!r} (known: {known})")
            elif REGISTRY[name].channel != channel:
                problems.append(
                    f"{variable}: {name} serves {REGISTRY[name].channel}, not {channel}"
                )
            else:
                try:
                    parsed.append(Route(name, float(weight) if weight else None))
                except ValueError:
                    problems.append(f"{variable}: bad weight in {entry!r}")
        routes[channel] = parsed
    if problems:
        raise RoutingError("\n  ".join(problems))
    return routes


def _build(
    name: str,
    settings: Mapping[str, Any],
    client: httpx.Client,
    public_url: str,
    receipt_secret: str,
) -> Any:
    """One provider from its ``CASCADE_PROVIDERS__<NAME>__*`` settings; every problem named."""
    if name not in REGISTRY:
        raise RoutingError(f"CASCADE_PROVIDERS__{name.upper()}: unknown provider")
    cls = REGISTRY[name]
    raw = dict(settings)
    raw.pop("rate_limit", None)  # the dispatcher's global throttle reads it
    if "status_callback_url" in cls.config_model.model_fields and public_url:
        # Providers told per message where to call back default to our webhook.
        raw.setdefault("status_callback_url", f"{public_url.rstrip('/')}/v1/webhooks/{name}")
    if "ack_key" in cls.config_model.model_fields and receipt_secret:
        # Buttons that confirm reading carry a MAC made with a key of their own.
        raw.setdefault("ack_key", _derived_key(receipt_secret, f"{name}-ack"))
    try:
        config = cls.config_model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "__".join(["CASCADE_PROVIDERS", name, *map(str, error["loc"])]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{variable}: {message}")
        raise RoutingError("\n  ".join(lines)) from None
    return cls(config, client)


class Router:
    """Builds providers once per process and orders them for each send."""

    def __init__(
        self,
        *,
        channels: Mapping[Channel, list[str]],
        provider_settings: Mapping[str, Mapping[str, Any]],
        sandbox: SandboxConfig | None,
        client: httpx.Client,
        health: ProviderHealth,
        public_url: str = "",
        receipt_secret: str = "",
    ) -> None:
        self._routes = parse_routes(channels)
        self._health = health
        self._client = client
        self._providers: dict[str, Any] = {}
        names = {route.provider for routes in self._routes.values() for route in routes}
        problems: list[str] = []
        for name in sorted(names | set(provider_settings)):
            try:
                self._providers[name] = _build(
                    name, provider_settings.get(name, {}), client, public_url, receipt_secret
                )
            except RoutingError as exc:
                problems.append(str(exc))
        if problems:
            # Every missing or wrong provider setting at once, not one per run.
            raise RoutingError("\n  ".join(problems))
        self._sandbox = {c: SandboxProvider(c, sandbox) for c in Channel} if sandbox else {}

    def close(self) -> None:
        """Close what the providers opened themselves (APNs' HTTP/2 client), then the shared
        HTTP client. Safe to call twice."""
        for provider in self._providers.values():
            close = getattr(provider, "close", None)
            if callable(close):
                close()
        self._client.close()

    @property
    def health(self) -> ProviderHealth:
        return self._health

    def available_channels(self) -> set[Channel]:
        """Channels something can send on (for cascade validation)."""
        configured = {channel for channel, routes in self._routes.items() if routes}
        return configured | set(self._sandbox)

    def capabilities(self) -> Capabilities:
        """What each available channel can confirm: what all of its providers report (a
        failover provider that cannot report a signal would leave the step waiting), with
        the setting that would add a missing signal, named per provider."""
        signals: dict[Channel, frozenset[Signal]] = {}
        hints: dict[tuple[Channel, Signal], str] = {}
        for channel in self.available_channels():
            routes = self._routes.get(channel) or []
            if not routes:
                signals[channel] = reports_of(self._sandbox[channel], channel).signals
                continue
            reports = [
                (r.provider, reports_of(self._providers[r.provider], channel)) for r in routes
            ]
            signals[channel] = frozenset.intersection(*(report.signals for _, report in reports))
            for name, report in reports:
                for signal, setting in report.hints.items():
                    if signal not in report.signals:
                        hints[(channel, signal)] = (
                            f"CASCADE_PROVIDERS__{name}__{setting}".upper() + " is set"
                        )
        return Capabilities(signals, hints)

    def candidates(
        self, channel: Channel, recipient: str, now: datetime, seed: str
    ) -> list[Provider]:
        """Providers to try for one attempt, best first; demoted ones last."""
        routes = self._routes.get(channel) or []
        if not routes:
            return [self._sandbox[channel]] if channel in self._sandbox else []
        fitting = [r for r in routes if _accepts(self._providers[r.provider], recipient)]
        ordered = _weighted_order(fitting, random.Random(seed))
        healthy = [r for r in ordered if not self._health.demoted(r.provider, now)]
        demoted = [r for r in ordered if r not in healthy]
        return [self._providers[r.provider] for r in healthy + demoted]

    def channel_providers(self, channel: Channel) -> list[str]:
        """The names of the providers that may send on ``channel`` (the sandbox's if none)."""
        routes = self._routes.get(channel) or []
        if routes:
            return [route.provider for route in routes]
        return [self._sandbox[channel].name] if channel in self._sandbox else []

    def provider_names(self) -> list[str]:
        """The real providers configured in this process."""
        return sorted(self._providers)

    def provider(self, name: str) -> Any:
        return self._providers.get(name)

    def receiver(self, name: str) -> WebhookReceiver | None:
        provider = self._providers.get(name)
        return provider if provider is not None and hasattr(provider, "handle") else None

    def configured_cost(self, provider: Provider) -> float | None:
        config = getattr(provider, "config", None) or getattr(provider, "_config", None)
        cost = getattr(config, "cost", None)
        return float(cost) if cost else None


def _derived_key(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _accepts(provider: Any, recipient: str) -> bool:
    accepts = getattr(provider, "accepts", None)
    return True if accepts is None else bool(accepts(recipient))


def _weighted_order(routes: list[Route], rng: random.Random) -> list[Route]:
    weighted = [r for r in routes if r.weight]
    if len(weighted) < 2:
        return routes
    pool, first = list(weighted), []
    while pool:
        pick = rng.choices(pool, weights=[r.weight or 0 for r in pool])[0]
        first.append(pick)
        pool.remove(pick)
    return first + [r for r in routes if not r.weight]
