"""E-mail over SMTP submission (stdlib ``smtplib``), one connection per message.

The SMTP dialogue is driven step by step rather than through ``send_message``
because the moment that matters is when the message body has been written:
any failure before it means the relay never took the message
(:class:`NotSentError`), any silence or disconnect after it means it may have
(:class:`UnknownOutcomeError`). Reply codes follow RFC 5321 §4.2.1 (4yz
transient, 5yz permanent) and RFC 3463 enhanced codes (``5.1.x`` bad mailbox).

Our own ``Message-ID`` is the provider message id (without angle brackets), so
bounces can be matched later. The ``httpx.Client`` argument is accepted for
uniform construction and unused.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import ClassVar, Literal

import httpx
from pydantic import SecretStr

from providers.base import Channel, Message, ProviderConfig, SendResult
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)
from providers.http import DEFAULT_TIMEOUT, quick_retry

_ENHANCED = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_BARE_NEWLINE = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class SmtpConfig(ProviderConfig):
    """An SMTP submission server and the sender address."""

    host: str
    port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str  #: ``From`` header, e.g. ``Shop <noreply@shop.example>``
    ca_file: Path | None = None  #: trust this CA bundle instead of the system store
    local_hostname: str | None = None  #: EHLO name (default: the machine's FQDN)


class SmtpProvider:
    """Submits e-mail to an SMTP relay."""

    name: ClassVar[str] = "smtp"
    channel: ClassVar[Channel] = Channel.EMAIL
    config_model: ClassVar[type[ProviderConfig]] = SmtpConfig

    def __init__(self, config: SmtpConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        del client  # SMTP does not speak HTTP
        self._envelope_from = parseaddr(config.sender)[1]
        if "@" not in self._envelope_from:
            raise ProviderConfigError("smtp: sender has no address", code="bad_sender")
        self._tls = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None
        )

    def send(self, message: Message) -> SendResult:
        recipient = parseaddr(message.recipient)[1]
        if "@" not in recipient or recipient != message.recipient.strip():
            raise InvalidAddressError("smtp: not an e-mail address", code="bad_address")
        email, message_id = self._compose(message, recipient)
        self._deliver(recipient, email)
        return SendResult(provider_message_id=message_id.strip("<>"))

    def _compose(self, message: Message, recipient: str) -> tuple[bytes, str]:
        message_id = make_msgid(domain=self._envelope_from.rpartition("@")[2])
        email = EmailMessage(policy=SMTP_POLICY)
        try:
            email["From"] = self.config.sender
            email["To"] = recipient
            if message.title:
                email["Subject"] = message.title
            email["Date"] = format_datetime(datetime.now(UTC))
            email["Message-ID"] = message_id
            email["X-Cascade-Reference"] = message.reference
        except ValueError:  # a header with a line break: refuse rather than inject
            raise RejectedError("smtp: header value not allowed", code="bad_header") from None
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email.as_bytes(), message_id

    @quick_retry()
    def _deliver(self, recipient: str, email: bytes) -> None:
        smtp = self._connect()
        try:
            self._secure(smtp)
            self._login(smtp)
            _expect(smtp.mail(self._envelope_from), (250,), "mail")
            _expect(smtp.rcpt(recipient), (250, 251), "rcpt")
            _expect(smtp.docmd("DATA"), (354,), "data")
            try:
                smtp.send(_dot_stuffed(email))
                reply = smtp.getreply()
            except OSError as exc:  # smtplib's errors are OSErrors too
                raise UnknownOutcomeError(
                    f"smtp: no reply after the message body ({type(exc).__name__})",
                    code="after_data",
                ) from exc
            _expect(reply, (250,), "end of data")
        except OSError as exc:
            raise NotSentError(f"smtp: connection lost ({type(exc).__name__})") from exc
        finally:
            _close(smtp)

    def _connect(self) -> smtplib.SMTP:
        """Connect (short timeout) and read the greeting; then wait patiently for replies."""
        config = self.config
        timeout = min(DEFAULT_TIMEOUT.connect or 3.0, config.timeout)
        try:
            if config.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    local_hostname=config.local_hostname,
                    timeout=timeout,
                    context=self._tls,
                )
            else:
                smtp = smtplib.SMTP(
                    config.host, config.port, local_hostname=config.local_hostname, timeout=timeout
                )
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220
            raise _classify(exc.smtp_code, _bytes(exc.smtp_error), "greeting") from exc
        except ssl.SSLError as exc:  # certificate or protocol mismatch: ours to fix
            raise ProviderConfigError(f"smtp: TLS failed ({type(exc).__name__})") from exc
        except OSError as exc:
            raise NotSentError(f"smtp: could not connect ({type(exc).__name__})") from exc
        if smtp.sock is not None:
            smtp.sock.settimeout(config.timeout)
        return smtp

    def _secure(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.ehlo()
            if self.config.security == "starttls":
                smtp.starttls(context=self._tls)
                smtp.ehlo()
        except ssl.SSLError as exc:
            raise ProviderConfigError(f"smtp: TLS failed ({type(exc).__name__})") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderConfigError("smtp: server does not offer STARTTLS") from exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        if not self.config.username:
            return
        password = self.config.password.get_secret_value() if self.config.password else ""
        try:
            smtp.login(self.config.username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise _classify(exc.smtp_code, _bytes(exc.smtp_error), "auth") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderConfigError("smtp: server does not offer AUTH", code="no_auth") from exc
        except smtplib.SMTPServerDisconnected:
            raise  # not sent: handled by the caller
        except smtplib.SMTPException as exc:  # no common mechanism
            raise ProviderConfigError("smtp: AUTH failed", code="auth") from exc


def _expect(reply: tuple[int, bytes], accepted: tuple[int, ...], phase: str) -> None:
    code, text = reply
    if code not in accepted:
        raise _classify(code, text, phase)


def _classify(code: int, text: bytes, phase: str) -> ProviderError:
    """Map one negative SMTP reply to the error tree (never echoing its text)."""
    match = _ENHANCED.match(text)
    enhanced = b".".join(match.groups()).decode() if match else None
    label = f"{code} {enhanced}" if enhanced else str(code)
    detail = f"smtp: {phase} refused ({label})"
    if code in (530, 534, 535, 538) or (phase in ("auth", "greeting") and code >= 500):
        return ProviderConfigError(detail, code=label)
    if 400 <= code < 500 or code == -1:
        return NotSentError(detail, code=label)
    if code in (552, 554) or phase in ("data", "end of data"):
        return RejectedError(detail, code=label)
    if phase == "mail":  # our sender address or account is refused
        return ProviderConfigError(detail, code=label)
    bad_mailbox = enhanced is None or enhanced.startswith("5.1.")
    if phase == "rcpt" and code in (550, 551, 553) and bad_mailbox:
        return InvalidAddressError(detail, code=label)
    return RejectedError(detail, code=label)


def _dot_stuffed(email: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled, and the final dot."""
    data = _LEADING_DOT.sub(b"..", _BARE_NEWLINE.sub(b"\r\n", email))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "replace")


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
