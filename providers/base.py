"""The provider contract: a provider sends one message on one channel.

Providers know nothing about the dispatcher: they receive their own config model
and an ``httpx.Client`` through the constructor, turn a :class:`Message` into the
provider's wire format, and return a :class:`SendResult` or raise one of the
errors in :mod:`providers.errors`. Receipts travel the other way through
:class:`WebhookReceiver` implementations.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class Channel(enum.StrEnum):
    """A way of reaching a customer. Several providers may serve one channel."""

    PUSH = "push"
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    VIBER = "viber"
    VK = "vk"
    EMAIL = "email"
    SMS = "sms"


class Signal(enum.StrEnum):
    """How far a message got, in increasing order of certainty."""

    SENT = "sent"  #: the provider accepted it
    DELIVERED = "delivered"  #: it reached the device / mailbox / handset
    READ = "read"  #: the customer opened or read it
    #: the customer followed a tracked link or tapped the message (implies read): push
    #: reports it when the app says so; the dispatcher adds it on every channel when link
    #: tracking is on
    CLICKED = "clicked"

    @property
    def rank(self) -> int:
        return _SIGNAL_RANK[self]


_SIGNAL_RANK = {Signal.SENT: 0, Signal.DELIVERED: 1, Signal.READ: 2, Signal.CLICKED: 3}

#: What each channel can confirm (DESIGN §6). ``sent`` is always available.
CHANNEL_SIGNALS: Mapping[Channel, frozenset[Signal]] = {
    # the app's receipts: delivered, read, and clicked (a tap on the notification)
    Channel.PUSH: frozenset({Signal.SENT, Signal.DELIVERED, Signal.READ, Signal.CLICKED}),
    Channel.TELEGRAM: frozenset({Signal.SENT, Signal.READ}),  # read: its "Got it" button
    Channel.WHATSAPP: frozenset({Signal.SENT, Signal.DELIVERED, Signal.READ}),
    Channel.VIBER: frozenset({Signal.SENT, Signal.DELIVERED, Signal.READ}),
    Channel.VK: frozenset({Signal.SENT, Signal.READ}),
    Channel.EMAIL: frozenset({Signal.SENT, Signal.DELIVERED, Signal.READ}),
    Channel.SMS: frozenset({Signal.SENT, Signal.DELIVERED}),
}


@dataclass(frozen=True, slots=True)
class Reports:
    """What one configured provider can confirm, and how to make it confirm more.

    ``hints`` maps a signal the provider could report with other settings to the
    setting that turns it on (``"ack_button"``): the cascade check names it when a
    step waits for that signal.
    """

    signals: frozenset[Signal]
    hints: Mapping[Signal, str] = field(default_factory=dict)


def reports_of(provider: object, channel: Channel) -> Reports:
    """The provider's own ``reports()`` if it has one, else everything its channel can."""
    own = getattr(provider, "reports", None)
    if callable(own):
        result = own()
        if isinstance(result, Reports):
            return result
    return Reports(CHANNEL_SIGNALS[channel])


#: Channels that charge for every message: an unknown outcome is never resent there.
PAID_CHANNELS: frozenset[Channel] = frozenset({Channel.SMS})

#: Channels where free-form text is allowed only this long after the customer last wrote
#: to us; outside it only an approved template may be sent (WhatsApp's service window).
SERVICE_WINDOWS: Mapping[Channel, timedelta] = {Channel.WHATSAPP: timedelta(hours=24)}


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """A provider-side template (WhatsApp business-initiated messages)."""

    name: str
    language: str
    params: tuple[str, ...] = ()
    #: The index of the template's quick-reply button that confirms reading, if it has one.
    ack_button: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message for one address.

    ``reference`` is our attempt id: providers that echo a value back in their
    callbacks (Mailgun ``v:`` variables, Viber ``tracking_data``, Twilio's
    status callback URL) carry it so receipts can be matched even before the
    provider message id is stored. ``idempotency_key`` is stable across retries
    of the same attempt (VK ``random_id``, APNs ``apns-id``, Web Push ``Topic``).
    """

    recipient: str  #: channel address: device token, chat id, E.164 phone, e-mail
    text: str
    reference: str
    idempotency_key: str
    title: str | None = None  #: push title / e-mail subject
    html: str | None = None
    template: TemplateRef | None = None
    data: Mapping[str, str] = field(default_factory=dict)  #: push data payload, strings only
    #: The customer wrote to us within the channel's service window (``SERVICE_WINDOWS``):
    #: free-form ``text`` may be sent; otherwise only ``template``.
    window_open: bool = False


@dataclass(frozen=True, slots=True)
class SimulatedReceipt:
    """A receipt the sandbox promises to deliver ``after`` seconds from the send."""

    after: float
    signal: Signal


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider accepted the message."""

    provider_message_id: str
    cost: float | None = None  #: what the provider reported it costs, if it does
    simulated: tuple[SimulatedReceipt, ...] = ()  #: sandbox only


class ReceiptKind(enum.StrEnum):
    """What a provider callback says about a message."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    #: The customer acted on the message (an app reporting a tap); implies read.
    CLICKED = "clicked"


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    """One status change reported by a provider, normalised.

    ``event_id`` is the deduplication key: the provider's own event id where it
    has one, else a stable digest of (message id, status, timestamp).
    ``read_up_to`` marks VK-style receipts meaning "everything up to and including
    this message id in the conversation with ``recipient`` is read".
    """

    provider: str
    event_id: str
    kind: ReceiptKind
    provider_message_id: str | None = None
    reference: str | None = None
    recipient: str | None = None
    occurred_at: datetime | None = None
    error_code: str | None = None
    invalid_address: bool = False
    read_up_to: bool = False


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A customer wrote to us: who (the channel address, as the provider gives it) and when.

    Nothing of the message itself: only its time matters (it opens a service window).
    """

    provider: str
    sender: str  #: WhatsApp: the ``wa_id``, digits without ``+``
    at: datetime


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's HTTP callback as received, independent of the web framework.

    ``url`` is the public URL the provider called (Twilio signs it), ``headers``
    have lower-case names, ``body`` is the exact raw bytes (signatures cover them).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    form: Mapping[str, list[str]] = field(default_factory=dict)
    received_at: datetime | None = None  #: injected clock, for timestamp/replay checks


@dataclass(frozen=True, slots=True)
class Nonce:
    """A one-time value of a verified callback, to be refused if it comes again.

    For providers whose signature does not cover the payload (Mailgun signs only
    ``timestamp + token``): the dispatcher stores ``value`` until ``expires_at``
    (when the signature's timestamp is refused anyway) in the transaction that
    applies the callback. ``fingerprint`` identifies the body it arrived with, so
    an identical redelivery can be told from a forged payload under a captured token.
    """

    value: str
    expires_at: datetime
    fingerprint: str


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What to answer the provider, and the receipts its callback carried."""

    status_code: int = 200
    body: str = ""
    media_type: str = "text/plain"
    events: tuple[ReceiptEvent, ...] = ()
    nonce: Nonce | None = None  #: refuse another callback carrying the same value
    inbound: tuple[InboundMessage, ...] = ()  #: customers' own messages (times only)


@runtime_checkable
class Provider(Protocol):
    """Sends messages on one channel."""

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> Channel: ...

    def send(self, message: Message) -> SendResult:
        """Send one message or raise.

        Must raise ``NotSentError`` only when the provider provably did not take
        the message (the dispatcher may then retry or try another provider), and
        ``UnknownOutcomeError`` whenever the request may have been accepted: a
        paid message is never resent after that.
        """
        ...


@runtime_checkable
class WebhookReceiver(Protocol):
    """Turns a provider's signed callback into receipt events."""

    @property
    def name(self) -> str: ...

    def handle(self, request: WebhookRequest) -> WebhookReply:
        """Verify and parse one callback (or answer a verification handshake).

        Raises:
            WebhookSignatureError: missing or wrong signature; nothing is applied.
        """
        ...


class ProviderConfig(BaseModel):
    """Settings every provider has; each provider module extends it.

    ``base_url`` is configurable so tests point a provider at a local simulator.
    ``cost`` is what one message costs us (in the operator's currency).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = ""
    cost: float = 0.0
    timeout: float = 15.0  #: read timeout in seconds; connect timeout is fixed and short
