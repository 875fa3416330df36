"""Real SMTP servers for tests (aiosmtpd on a free loopback port), collecting what they receive.

Fixtures:
- `smtp_server`: plain SMTP, no TLS, no login (a local catcher, like the demo's).
- `smtp_tls_server`: STARTTLS required before anything else, with a certificate for
  localhost/127.0.0.1 issued by a throwaway CA made in the test (`ca_file`), and a login
  (`username`/`password`); `auth_attempts` records every login the server saw, so a test
  can prove that nothing was sent before TLS was verified.

Both yield a `SmtpCatcher`: `host`, `port`, `messages` (list of `email.message.EmailMessage`),
`envelopes` (mail_from, rcpt_tos), `wait_for(n, timeout)`, and `environ(...)`: the SMTP_* and
WARP_REPORT_RECIPIENTS variables that point warp-sync at it (for `EmailSettings.from_env` or
the `email` resource).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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

LOOPBACK = "127.0.0.1"
DEFAULT_RECIPIENTS = "ops@example.test, admin@example.test"


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: list[str]


@dataclass
class SmtpCatcher:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until at least `count` messages arrived; fail the test otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                pytest.fail(f"expected {count} message(s) at the SMTP server, got {len(self.messages)}")
            return list(self.messages)

    def wait_for_subject(self, part: str, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until a message whose subject holds `part` arrived; return those that match (a shared server may
        also hold other tests' alerts)."""
        def matching() -> list[EmailMessage]:
            return [m for m in self.messages if part in (m["Subject"] or "")]

        with self._arrived:
            if not self._arrived.wait_for(lambda: bool(matching()), timeout=timeout):
                pytest.fail(f"no message with {part!r} in its subject; subjects: {[m['Subject'] for m in self.messages]}")
            return matching()

    def clear(self) -> None:
        """Forget what arrived (for a server that outlives one test)."""
        with self._arrived:
            self.messages.clear()
            self.envelopes.clear()
            self.auth_attempts.clear()

    def environ(self, recipients: str = DEFAULT_RECIPIENTS, **overrides: str) -> dict[str, str]:
        env = {
            "SMTP_HOST": self.host,
            "SMTP_PORT": str(self.port),
            "SMTP_STARTTLS": "true" if self.tls else "false",
            "SMTP_FROM": "warp-sync@example.test",
            "SMTP_TIMEOUT_SECONDS": "5",
            "WARP_REPORT_RECIPIENTS": recipients,
        }
        if self.tls:
            env["SMTP_CA_FILE"] = self.ca_file or ""
            env["SMTP_USERNAME"] = self.username or ""
            env["SMTP_PASSWORD"] = self.password or ""
        env.update(overrides)
        return env

    # aiosmtpd handler hook, called on the server's thread.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self._arrived:
            self.envelopes.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(message)  # type: ignore[arg-type]
            self._arrived.notify_all()
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start_catcher(catcher: SmtpCatcher, **smtp_options: Any) -> Controller:
    last_error: Exception | None = None
    for _ in range(5):  # another process may take the port between probing and binding
        catcher.port = _free_port()
        controller = Controller(catcher, hostname=LOOPBACK, port=catcher.port, server_hostname="localhost", **smtp_options)
        try:
            controller.start()
            return controller
        except Exception as exc:  # noqa: BLE001 - aiosmtpd reports a taken port in several ways
            last_error = exc
    raise RuntimeError(f"could not start the test SMTP server: {last_error}")


@pytest.fixture
def smtp_server() -> Iterator[SmtpCatcher]:
    catcher = SmtpCatcher(host=LOOPBACK, port=0)
    controller = start_catcher(catcher)
    try:
        yield catcher
    finally:
        controller.stop()


# --- TLS -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmtpCertificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_certificates(folder: Path) -> SmtpCertificates:
    """A throwaway CA and a server certificate it signed, for `localhost` and 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warp-sync test CA")])
    ca_cert = (
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
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certs = SmtpCertificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    certs.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    certs.key_file.chmod(0o600)
    return certs


@pytest.fixture
def smtp_tls_server(tmp_path: Path) -> Iterator[SmtpCatcher]:
    certs = make_test_certificates(tmp_path / "smtp-certs")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certs.cert_file, certs.key_file)
    catcher = SmtpCatcher(
        host=LOOPBACK, port=0, tls=True, ca_file=str(certs.ca_file), username="warp-mailer", password="s3cret-pw"
    )

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        catcher.auth_attempts.append(login)
        ok = login == catcher.username and auth_data.password.decode() == catcher.password
        return AuthResult(success=ok, handled=False)

    controller = start_catcher(
        catcher,
        tls_context=server_context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticate,
    )
    try:
        yield catcher
    finally:
        controller.stop()
