"""Address validation per channel: strict, so bad input is refused at the door."""

from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from providers.base import Channel

_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-\.]{32,4096}$")
_VIBER_ID = re.compile(r"^[A-Za-z0-9+/=_\-]{4,64}$")


class AddressError(ValueError):
    """An address is not valid for its channel."""


def _phone(address: str) -> str:
    try:
        number = phonenumbers.parse(address, None)
    except phonenumbers.NumberParseException:
        raise AddressError("expected an E.164 phone number such as +15551234567") from None
    if not address.startswith("+") or not phonenumbers.is_valid_number(number):
        raise AddressError("expected a valid E.164 phone number such as +15551234567")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AddressError(f"not a valid e-mail address: {exc}") from None


def _push(address: str) -> str:
    if address.startswith("{"):
        try:
            subscription = json.loads(address)
            endpoint = urlsplit(subscription["endpoint"])
            keys = subscription["keys"]
            if endpoint.scheme not in ("https", "http") or not endpoint.netloc:
                raise ValueError
            if not keys.get("p256dh") or not keys.get("auth"):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AddressError(
                "a Web Push subscription needs endpoint and keys.p256dh/keys.auth"
            ) from None
        if endpoint.scheme == "https" and _non_public_ip(endpoint.hostname or ""):
            # Cheap SSRF guard; names are resolved and checked by the provider at send time.
            # (Plain-http endpoints only work in local test setups and are checked there.)
            raise AddressError("a Web Push endpoint must not be a private or local address")
        return address
    if not _FCM_TOKEN.match(address):
        raise AddressError("expected a device token (32-4096 URL-safe characters)")
    return address


def _non_public_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _integer_id(address: str, *, allow_negative: bool) -> str:
    text = address.strip()
    if not re.fullmatch(r"-?\d{1,20}" if allow_negative else r"\d{1,20}", text):
        raise AddressError("expected a numeric id")
    return text


def _viber(address: str) -> str:
    if not _VIBER_ID.match(address):
        raise AddressError("expected a Viber user id")
    return address


def normalize(channel: Channel, address: str) -> str:
    """The canonical form of ``address`` on ``channel``, or :class:`AddressError`."""
    if channel in (Channel.SMS, Channel.WHATSAPP):
        return _phone(address)
    if channel is Channel.EMAIL:
        return _email(address)
    if channel is Channel.PUSH:
        return _push(address)
    if channel is Channel.TELEGRAM:
        return _integer_id(address, allow_negative=True)
    if channel is Channel.VK:
        return _integer_id(address, allow_negative=False)
    return _viber(address)
