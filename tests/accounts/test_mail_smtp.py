"""The smtp mail backend against a real SMTP server (aiosmtpd) started by the test: the
verification and reset links arrive in real messages; STARTTLS is verified against a
certificate authority and AUTH goes over it; a server that is away does not undo a sign-up."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from market.accounts.mail import SmtpBackend, compose
from market.accounts.settings import MailSettings
from market.db import utcnow
from market.errors import ServiceUnavailable
from tests.accounts.conftest import LINK, NEW_PASSWORD, sign_up

SMTP_USER, SMTP_PASSWORD = "market", "relay secret of the test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Inbox:
    """aiosmtpd's handler: keeps every message it accepts, parsed, with its envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (SMTP_USER, SMTP_PASSWORD)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.fixture
def plain_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Inbox, int]]:
    """STARTTLS required, AUTH required (and only after TLS); the client trusts the test's
    certificate authority through OpenSSL's SSL_CERT_FILE, the system store's variable."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "market test mail")])
    now = utcnow()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        auth_required=True,
        authenticator=inbox.authenticate,
    )
    controller.start()
    yield inbox, port
    controller.stop()


def _smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "sender": "Market <no-reply@market.example>",
        **extra,
    }


def test_sign_up_and_reset_links_arrive_over_smtp(make_app, plain_server) -> None:
    inbox, port = plain_server
    app = make_app(
        accounts={"signup": "open", "base_url": "https://market.example/"}, mail=_smtp(port)
    )
    client = app.test_client()
    created = sign_up(client, "smtp.person@people.example")
    assert created.status_code == 201
    assert created.get_json()["verification_mail_sent"] is True

    ((recipients, message),) = inbox.wait_for(1)
    assert recipients == ["smtp.person@people.example"]
    assert message["From"] == "Market <no-reply@market.example>"
    assert message["Message-ID"] and message["Date"]
    match = LINK.search(_text(message))
    assert match and match.group(0).startswith("https://market.example/verify-email/")
    assert client.get(match.group(1)).status_code == 200
    me = client.post(
        "/api/v1/tokens", json={"email": "smtp.person@people.example", "password": NEW_PASSWORD}
    )
    assert me.status_code == 201

    assert (
        client.post(
            "/api/v1/password-resets", json={"email": "smtp.person@people.example"}
        ).status_code
        == 202
    )
    messages = inbox.wait_for(2)
    assert len(messages) == 2
    reset = LINK.search(_text(messages[1][1]))
    assert reset and "/password/reset/" in reset.group(1)
    assert client.get(reset.group(1)).status_code == 200


def test_starttls_and_auth_against_a_real_server(make_app, tls_server) -> None:
    inbox, port = tls_server
    app = make_app(
        accounts={"signup": "open"},
        mail=_smtp(port, smtp_starttls=True, smtp_user=SMTP_USER, smtp_password=SMTP_PASSWORD),
    )
    created = sign_up(app.test_client(), "secure@people.example")
    assert created.get_json()["verification_mail_sent"] is True
    ((recipients, message),) = inbox.wait_for(1)
    assert recipients == ["secure@people.example"]
    assert LINK.search(_text(message))
    assert inbox.logins == [SMTP_USER]


def test_a_wrong_smtp_password_or_no_tls_sends_nothing(tls_server) -> None:
    inbox, port = tls_server
    message = compose(
        sender="no-reply@market.example", to="x@people.example", subject="s", text="t"
    )
    wrong = SmtpBackend(
        MailSettings(
            backend="smtp",
            smtp_port=port,
            smtp_starttls=True,
            smtp_user=SMTP_USER,
            smtp_password="not it",
        )
    )
    with pytest.raises(ServiceUnavailable):
        wrong.send(message)
    without_tls = SmtpBackend(MailSettings(backend="smtp", smtp_port=port, smtp_starttls=False))
    with pytest.raises(ServiceUnavailable):
        without_tls.send(message)
    assert inbox.messages == []


def test_a_mail_server_that_is_away_does_not_undo_the_sign_up(make_app) -> None:
    app = make_app(accounts={"signup": "open"}, mail=_smtp(free_port(), smtp_timeout_s=5))
    client = app.test_client()
    created = sign_up(client, "patient@people.example")
    assert created.status_code == 201
    assert created.get_json()["verification_mail_sent"] is False
    # The account is whole: it signs in, and a new link can be asked for later.
    token = client.post(
        "/api/v1/tokens", json={"email": "patient@people.example", "password": NEW_PASSWORD}
    )
    assert token.status_code == 201
