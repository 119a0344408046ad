"""Requests for a tracked link that are not a person clicking it.

Messengers fetch a link to draw its preview card the moment a message arrives, and mail
security gateways open every link of an incoming e-mail to scan the target. Those
requests still get their redirect (a preview of the real page is what the sender wants),
but they record nothing and confirm nothing. :func:`not_a_click` says why, or None:

* ``method``: anything but GET (HEAD and OPTIONS are how scanners and link checkers probe);
* ``no_user_agent``: browsers always send one; bare HTTP clients and probes often do not;
* ``preview_agent``: a User-Agent containing one of :data:`PREVIEW_AGENTS`;
* ``too_soon``: within :data:`MIN_DELAY` of the send, or before the send was recorded:
  faster than a person reads a message and taps, the speed of a gateway scanning mail
  on arrival.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: A click this soon after the send is a machine's.
MIN_DELAY = timedelta(seconds=1)

#: Substrings (lower case) of the User-Agents of link-preview fetchers and mail scanners,
#: with where each is documented or observed.
PREVIEW_AGENTS: tuple[str, ...] = (
    "telegrambot",  # Telegram link previews: "TelegramBot (like TwitterBot)"
    "whatsapp",  # WhatsApp previews: "WhatsApp/2.23.20.0 A"
    # Meta's crawlers (Messenger, Facebook, Instagram):
    # developers.facebook.com/docs/sharing/webmasters/web-crawlers
    "facebookexternalhit",
    "facebookcatalog",
    "viber",  # Viber link previews: "Viber/…"
    "vkshare",  # VK link previews: "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)"
    "slackbot",  # Slack unfurling: "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
    "twitterbot",  # X/Twitter cards: developer.x.com/en/docs/x-for-websites/cards
    "discordbot",  # Discord embeds: "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"
    "skypeuripreview",  # Skype / Teams previews: "… SkypeUriPreview Preview/0.5"
    "bingpreview",  # Bing and Outlook.com previews: "… BingPreview/1.0b"
    "linkedinbot",  # LinkedIn previews: "LinkedInBot/1.0"
    "googleimageproxy",  # Gmail's image proxy: "… (via ggpht.com GoogleImageProxy)"
    "google-safety",  # Google Safe Browsing checks in Gmail: "Google-Safety"
    "microsoft office",  # Office apps opening links (protocol discovery): "Microsoft Office/16.0 …"
    "ms-office",  # Office link probes: "… ms-office; MSOffice 16"
    "safelinks",  # Microsoft Defender for Office 365 Safe Links detonation
    "mimecast",  # Mimecast URL Protect
    "proofpoint",  # Proofpoint URL Defense
    "barracuda",  # Barracuda Link Protection
    "symantec",  # Symantec / Broadcom email security scanner
    "forcepoint",  # Forcepoint email security
    "trendmicro",  # Trend Micro email security, written either way
    "trend micro",
    "python-requests",  # scripted fetches, not a person
    "curl/",  # scripted fetches, not a person
    "wget/",  # scripted fetches, not a person
)


def not_a_click(
    method: str, user_agent: str | None, sent_at: datetime | None, now: datetime
) -> str | None:
    """Why this request is a preview or a scan rather than a click, or None (a click)."""
    if method.upper() != "GET":
        return "method"
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "no_user_agent"
    if any(marker in agent for marker in PREVIEW_AGENTS):
        return "preview_agent"
    if sent_at is None or now - sent_at < MIN_DELAY:
        return "too_soon"
    return None
