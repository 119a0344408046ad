"""The sandbox provider: sends nothing, returns ids, and can promise receipts.

It is the default for a fresh install, so the README demo shows a real cascade
escalating. Receipts are not delivered by the sandbox itself: :class:`SendResult`
carries ``simulated`` receipts and the dispatcher stores them as provider events
due at ``sent_at + after``, applied by the sweep through the same path as real
webhooks. Randomness is seeded per message, so runs are reproducible.

``scenarios`` maps an address to an outcome, so failure paths can be shown and
tested without a real provider: ``rejected``, ``invalid``, ``not_sent``,
``unknown`` or ``config``. ``latency_ms`` makes every answer take that long, like
a real provider's HTTP call (benchmarks use it to measure sends in flight).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    CHANNEL_SIGNALS,
    Channel,
    Message,
    ProviderConfig,
    SendResult,
    Signal,
    SimulatedReceipt,
)
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)

Scenario = Literal["ok", "rejected", "invalid", "not_sent", "unknown", "config"]


class SandboxBehaviour(BaseModel):
    """How one channel's sandbox answers: probabilities and delays of receipts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivered_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    delivered_after: float = Field(default=2.0, ge=0.0)
    read_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    read_after: float = Field(default=5.0, ge=0.0)


class SandboxConfig(ProviderConfig):
    """Sandbox settings shared by all channels."""

    seed: int = 0
    outbox: Path | None = None  #: JSON-lines journal of sends (ids only, no content)
    channels: dict[Channel, SandboxBehaviour] = Field(default_factory=dict)
    scenarios: dict[str, Scenario] = Field(default_factory=dict)
    latency_ms: float = Field(default=0.0, ge=0.0)  #: every answer comes after this long


_FAILURES: dict[str, type[ProviderError]] = {
    "rejected": RejectedError,
    "invalid": InvalidAddressError,
    "not_sent": NotSentError,
    "unknown": UnknownOutcomeError,
    "config": ProviderConfigError,
}


class SandboxProvider:
    """A provider for any channel that only pretends to send."""

    def __init__(
        self,
        channel: Channel,
        config: SandboxConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._channel = channel
        self._config = config
        self._sleep = sleep
        self._behaviour = config.channels.get(channel, SandboxBehaviour())

    @property
    def name(self) -> str:
        return "sandbox"

    @property
    def channel(self) -> Channel:
        return self._channel

    def send(self, message: Message) -> SendResult:
        if self._config.latency_ms:
            self._sleep(self._config.latency_ms / 1000)
        scenario = self._config.scenarios.get(message.recipient, "ok")
        if scenario != "ok":
            raise _FAILURES[scenario](f"sandbox: scripted {scenario}", code=f"sandbox_{scenario}")
        rng = random.Random(f"{self._config.seed}:{message.idempotency_key}")
        message_id = f"sbx-{self._channel.value}-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        result = SendResult(provider_message_id=message_id, simulated=self._simulate(rng))
        self._journal(message, result)
        return result

    def _simulate(self, rng: random.Random) -> tuple[SimulatedReceipt, ...]:
        signals = CHANNEL_SIGNALS[self._channel]
        behaviour = self._behaviour
        receipts: list[SimulatedReceipt] = []
        delivered = Signal.DELIVERED in signals and rng.random() < behaviour.delivered_probability
        if delivered:
            receipts.append(SimulatedReceipt(behaviour.delivered_after, Signal.DELIVERED))
        can_read = Signal.READ in signals and (delivered or Signal.DELIVERED not in signals)
        if can_read and rng.random() < behaviour.read_probability:
            receipts.append(SimulatedReceipt(behaviour.read_after, Signal.READ))
        return tuple(receipts)

    def _journal(self, message: Message, result: SendResult) -> None:
        if self._config.outbox is None:
            return
        line = json.dumps(
            {
                "channel": self._channel.value,
                "reference": message.reference,
                "idempotency_key": message.idempotency_key,
                "provider_message_id": result.provider_message_id,
                "at": time.time(),  #: when the "provider" took it (rate checks)
            }
        )
        # One write() of one line with O_APPEND is atomic across worker processes.
        fd = os.open(self._config.outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
