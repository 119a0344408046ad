"""SMTP: the message we compose, TLS modes, AUTH, and reply-code mapping on a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from providers.base import Message
from providers.errors import (
    InvalidAddressError,
    NotSentError,
    ProviderConfigError,
    ProviderError,
    RejectedError,
    UnknownOutcomeError,
)
from providers.smtp import SmtpConfig, SmtpProvider, _classify
from tests.simulators.server import free_port
from tests.simulators.smtp import SmtpSim
from tests.support.retries import record_retry_waits

MESSAGE = Message(
    recipient="alice@example.org",
    text="Your order #42 is on its way.\n.leading dot survives\nÜmlaut too",
    html="<p>Your order #42 is on its way</p>",
    title="Order shipped",
    reference="att_1",
    idempotency_key="idem_1",
)


@pytest.fixture(name="waits")
def _waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_retry_waits(monkeypatch, SmtpProvider._deliver)


def _provider(sim: SmtpSim, **overrides: Any) -> SmtpProvider:
    values: dict[str, Any] = {
        "host": sim.host,
        "port": sim.port,
        "security": sim.security,
        "username": "cascade",
        "password": "s3cret",
        "sender": "Shop <noreply@shop.example>",
        "ca_file": str(sim.ca_file),
        "local_hostname": "cascade.test",
        "timeout": 5.0,
    }
    config = SmtpConfig.model_validate({**values, **overrides})
    return SmtpProvider(config, httpx.Client())


@pytest.fixture(name="plain")
def _plain() -> Iterator[SmtpSim]:
    with SmtpSim("none") as sim:
        yield sim


@pytest.mark.parametrize("security", ["none", "starttls", "ssl"])
def test_message_is_submitted(security: str) -> None:
    """In every security mode the relay gets our headers, both parts and our Message-ID."""
    with SmtpSim(security) as sim:  # type: ignore[arg-type]
        result = _provider(sim).send(MESSAGE)
    [received] = sim.messages
    assert received.login == "cascade"
    assert received.mail_from == "noreply@shop.example"
    assert received.rcpt_tos == ["alice@example.org"]
    email = received.email
    assert email["Message-ID"] == f"<{result.provider_message_id}>"
    assert result.provider_message_id.endswith("@shop.example")
    assert email["X-Cascade-Reference"] == "att_1"
    assert email["Subject"] == "Order shipped"
    assert email["From"] == "Shop <noreply@shop.example>"
    assert email["To"] == "alice@example.org"
    text = email.get_body(("plain",))
    html = email.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == MESSAGE.text
    assert html.get_content().strip() == MESSAGE.html
    assert result.cost is None


def test_text_only_message(plain: SmtpSim) -> None:
    """Without html the mail is a single text/plain part; without a title, no Subject."""
    message = Message(recipient="bob@example.org", text="hi", reference="r", idempotency_key="k")
    _provider(plain).send(message)
    email = plain.messages[0].email
    assert email.get_content_type() == "text/plain"
    assert email["Subject"] is None


@pytest.mark.parametrize(
    ("recipient", "error", "code"),
    [
        ("tempfail@example.org", NotSentError, "451 4.3.0"),
        ("unknown@example.org", InvalidAddressError, "550 5.1.1"),
        ("full@example.org", RejectedError, "552 5.2.2"),
        ("spam@example.org", RejectedError, "554 5.7.1"),
        ("drop@example.org", UnknownOutcomeError, "after_data"),
    ],
)
def test_recipient_scenarios(
    plain: SmtpSim, waits: list[float], recipient: str, error: type[ProviderError], code: str
) -> None:
    """RCPT and end-of-DATA replies, and a cut after the body, map per RFC 5321/3463."""
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(ProviderError) as caught:
        _provider(plain).send(message)
    assert type(caught.value) is error
    assert caught.value.code == code
    assert recipient not in str(caught.value)
    assert plain.messages == []
    assert len(waits) == (2 if error is NotSentError else 0)  # only "not sent" is retried


def test_wrong_password_is_config(plain: SmtpSim) -> None:
    """535 on AUTH means our credentials are wrong."""
    with pytest.raises(ProviderConfigError) as caught:
        _provider(plain, password="wrong").send(MESSAGE)
    assert str(caught.value.code).startswith("535")
    assert "wrong" not in str(caught.value)


def test_missing_auth_is_config(plain: SmtpSim) -> None:
    """A relay that wants AUTH answers MAIL with 530: a config error."""
    with pytest.raises(ProviderConfigError) as caught:
        _provider(plain, username=None).send(MESSAGE)
    assert str(caught.value.code).startswith("530")


def test_connection_refused_is_not_sent(waits: list[float]) -> None:
    """Nobody listening: the mail provably did not leave; quick retries happen."""
    config = SmtpConfig(host="127.0.0.1", port=free_port(), security="none", sender="a@b.example")
    with pytest.raises(NotSentError):
        SmtpProvider(config, httpx.Client()).send(MESSAGE)
    assert len(waits) == 2


def test_untrusted_certificate_is_config() -> None:
    """A certificate we cannot verify is ours to fix, not a reason to retry."""
    with SmtpSim("ssl") as sim:
        provider = _provider(sim, ca_file=None)
        with pytest.raises(ProviderConfigError):
            provider.send(MESSAGE)
    assert sim.messages == []


def test_starttls_required_but_not_offered(plain: SmtpSim) -> None:
    """Asking for STARTTLS from a server that lacks it never falls back to plain text."""
    with pytest.raises(ProviderConfigError):
        _provider(plain, security="starttls").send(MESSAGE)
    assert plain.messages == []


@pytest.mark.parametrize(
    "recipient", ["not-an-address", "Alice <alice@example.org>", "a@b.example\r\nBcc: x@y"]
)
def test_bad_recipients_never_connect(recipient: str) -> None:
    """Anything but a bare address is refused before a connection is made."""
    config = SmtpConfig(host="127.0.0.1", port=free_port(), sender="a@b.example")
    message = Message(recipient=recipient, text="hi", reference="r", idempotency_key="k")
    with pytest.raises(InvalidAddressError):
        SmtpProvider(config).send(message)


def test_header_injection_in_subject_is_refused(plain: SmtpSim) -> None:
    """A line break in the title cannot smuggle headers."""
    message = Message(
        recipient="bob@example.org",
        text="hi",
        title="Hello\r\nBcc: victim@example.org",
        reference="r",
        idempotency_key="k",
    )
    with pytest.raises(RejectedError):
        _provider(plain).send(message)
    assert plain.messages == []


CODES: list[tuple[int, bytes, str, type[ProviderError]]] = [
    (421, b"4.7.0 Try again later", "greeting", NotSentError),
    (554, b"5.7.1 No SMTP service here", "greeting", ProviderConfigError),
    (535, b"5.7.8 Authentication credentials invalid", "auth", ProviderConfigError),
    (530, b"5.7.0 Authentication required", "mail", ProviderConfigError),
    (553, b"5.1.8 Sender address rejected", "mail", ProviderConfigError),
    (452, b"4.3.1 Insufficient system storage", "mail", NotSentError),
    (450, b"4.2.0 Mailbox busy", "rcpt", NotSentError),
    (550, b"5.1.1 User unknown", "rcpt", InvalidAddressError),
    (551, b"User not local", "rcpt", InvalidAddressError),
    (553, b"5.1.3 Bad recipient address syntax", "rcpt", InvalidAddressError),
    (550, b"5.7.1 Relaying denied", "rcpt", RejectedError),
    (552, b"5.2.2 Mailbox full", "rcpt", RejectedError),
    (554, b"5.7.1 Message rejected", "end of data", RejectedError),
    (550, b"5.7.1 Spam", "end of data", RejectedError),
    (451, b"4.3.0 Local error", "end of data", NotSentError),
    (503, b"5.5.1 Bad sequence", "data", RejectedError),
]


@pytest.mark.parametrize(("code", "text", "phase", "error"), CODES)
def test_reply_code_table(code: int, text: bytes, phase: str, error: type[ProviderError]) -> None:
    """Every documented reply class lands in the right branch of the error tree."""
    mapped = _classify(code, text, phase)
    assert type(mapped) is error
    assert mapped.code is not None
    assert mapped.code.startswith(str(code))


def test_unused_http_client_is_accepted() -> None:
    """Providers are built uniformly as ``cls(config, client)``."""
    config = SmtpConfig(host="smtp.example", sender="noreply@shop.example")
    provider: Callable[..., Any] = SmtpProvider
    assert provider(config, httpx.Client()).name == "smtp"
