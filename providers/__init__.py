"""Channel providers: one module per provider, all behind :class:`providers.base.Provider`.

``REGISTRY`` is the explicit, readable list of real providers (name -> class).
Each class declares ``name``, ``channel`` and ``config_model`` and is built as
``cls(config, client)``; those with callbacks also have ``handle(WebhookRequest)``,
and those that open connections of their own (APNs' HTTP/2 client) have ``close()``.
The sandbox provider is separate: it serves any channel.
"""

from __future__ import annotations

from typing import Any

from providers.apns import ApnsProvider
from providers.fcm import FcmProvider
from providers.mailgun import MailgunProvider
from providers.smsru import SmsRuProvider
from providers.smtp import SmtpProvider
from providers.telegram import TelegramProvider
from providers.twilio import TwilioProvider
from providers.viber import ViberProvider
from providers.vk import VkProvider
from providers.webpush import WebPushProvider
from providers.whatsapp import WhatsAppProvider

REGISTRY: dict[str, Any] = {
    "fcm": FcmProvider,
    "apns": ApnsProvider,
    "webpush": WebPushProvider,
    "telegram": TelegramProvider,
    "whatsapp": WhatsAppProvider,
    "viber": ViberProvider,
    "vk": VkProvider,
    "smtp": SmtpProvider,
    "mailgun": MailgunProvider,
    "twilio": TwilioProvider,
    "smsru": SmsRuProvider,
}

__all__ = ["REGISTRY"]
