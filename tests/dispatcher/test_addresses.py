"""Addresses are validated and normalised per channel before anything is stored."""

from __future__ import annotations

import json

import pytest

from dispatcher.addresses import AddressError, normalize
from providers.base import Channel

SUBSCRIPTION = json.dumps(
    {"endpoint": "https://push.example/abc", "keys": {"p256dh": "BPx", "auth": "xyz"}}
)


@pytest.mark.parametrize(
    ("channel", "raw", "normal"),
    [
        (Channel.SMS, "+14155552671", "+14155552671"),
        (Channel.WHATSAPP, "+7 916 123-45-67", "+79161234567"),
        (Channel.EMAIL, "Alice@Example.COM", "Alice@example.com"),
        (Channel.PUSH, "d" * 32, "d" * 32),
        (Channel.PUSH, SUBSCRIPTION, SUBSCRIPTION),
        (Channel.TELEGRAM, "-1001234567890", "-1001234567890"),
        (Channel.VK, " 5550001 ", "5550001"),
        (Channel.VIBER, "01234567890A=", "01234567890A="),
    ],
)
def test_valid(channel: Channel, raw: str, normal: str):
    """Valid addresses come back in their canonical form."""
    assert normalize(channel, raw) == normal


@pytest.mark.parametrize(
    ("channel", "raw", "message"),
    [
        (Channel.SMS, "14155552671", "E.164"),
        (Channel.SMS, "+1415555", "E.164"),
        (Channel.EMAIL, "alice@", "not a valid e-mail"),
        (Channel.PUSH, "short", "device token"),
        (
            Channel.PUSH,
            '{"endpoint": "ftp://x", "keys": {"p256dh": "a", "auth": "b"}}',
            "Web Push subscription",
        ),
        (Channel.PUSH, '{"endpoint": "https://x"}', "Web Push subscription"),
        (Channel.TELEGRAM, "@alice", "numeric id"),
        (Channel.VK, "-5", "numeric id"),
        (Channel.VIBER, "bad id with spaces", "Viber user id"),
    ],
)
def test_invalid(channel: Channel, raw: str, message: str):
    """Invalid addresses are refused with a message saying what is expected."""
    with pytest.raises(AddressError, match=message):
        normalize(channel, raw)
