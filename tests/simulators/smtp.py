"""An SMTP submission server (aiosmtpd) with AUTH, TLS and per-recipient scenarios.

``SmtpSim(security=...)`` is a context manager serving on 127.0.0.1 and a free
port: ``"none"`` (plain), ``"starttls"`` (STARTTLS required before AUTH/MAIL) or
``"ssl"`` (implicit TLS, RFC 8314). The certificate is issued for 127.0.0.1 by a
throwaway CA whose PEM is ``sim.ca_file``. AUTH PLAIN/LOGIN accepts only
``username``/``password`` (else ``535 5.7.8``); with credentials configured,
MAIL before AUTH gets ``530 5.7.0``.

Scenario by the recipient's local part prefix:

=============  ====================================================
``tempfail``   RCPT ``451 4.3.0`` (try again later)
``unknown``    RCPT ``550 5.1.1`` (no such user)
``full``       RCPT ``552 5.2.2`` (mailbox full)
``spam``       end of DATA ``554 5.7.1`` (message refused)
``drop``       the connection is cut after the message body
anything else  ``250``; the message is appended to ``sim.messages``
=============  ====================================================
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.simulators.server import free_port

Security = Literal["none", "starttls", "ssl"]
RCPT_REPLIES = {
    "tempfail": "451 4.3.0 Mail server temporarily rejected message",
    "unknown": "550 5.1.1 Recipient address rejected: User unknown",
    "full": "552 5.2.2 Mailbox full",
}


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None

    @property
    def email(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, sim: SmtpSim) -> None:
        self.sim = sim

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.sim.username and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        local = address.partition("@")[0]
        for prefix, reply in RCPT_REPLIES.items():
            if local.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        locals_ = [r.partition("@")[0] for r in envelope.rcpt_tos]
        if any(local.startswith("drop") for local in locals_):
            server.transport.abort()  # the body arrived; the reply never will
            return "250 OK"
        if any(local.startswith("spam") for local in locals_):
            return "554 5.7.1 Message refused as spam"
        login = session.auth_data.login.decode() if session.auth_data else None
        self.sim.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, login)
        )
        return "250 2.0.0 OK queued"


class SmtpSim:
    """The server, its address and what it received."""

    def __init__(
        self,
        security: Security = "none",
        *,
        username: str | None = "cascade",
        password: str = "s3cret",  # noqa: S107 (a test server's password)
    ) -> None:
        self.security = security
        self.username = username
        self.password = password
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[Received] = []
        self._dir = tempfile.TemporaryDirectory()
        self.ca_file, server_tls = _make_tls(Path(self._dir.name))
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="sim.smtp.test",
            ssl_context=server_tls if security == "ssl" else None,
            tls_context=server_tls if security == "starttls" else None,
            require_starttls=security == "starttls",
            authenticator=self._authenticate,
            # aiosmtpd only knows about STARTTLS; under implicit TLS it would hide AUTH.
            auth_require_tls=security == "starttls",
        )

    def provider_settings(self) -> dict[str, Any]:
        """Cascade's ``smtp`` provider settings for this server."""
        return {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "password": self.password,
            "sender": "noreply@shop.example",
        }

    def __enter__(self) -> SmtpSim:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
        self._dir.cleanup()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def _make_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns (CA file, context)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cascade test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context
