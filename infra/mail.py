"""Outgoing mail: the Mailer protocol, a directory mailbox, an SMTP sender and their settings.

Bodies carry single-use secrets (password-reset tokens), so nothing here logs a body or puts
one into an exception; a recipient and a subject may be named.
"""

import asyncio
import logging
import os
import smtplib
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field, SecretStr

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One plain-text mail to one recipient."""

    to: str
    subject: str
    body: str


class Mailer(Protocol):
    """Something that delivers a mail, or raises."""

    async def send(self, message: Message) -> None:
        """Deliver `message`."""
        ...


class MailDeliveryError(Exception):
    """A mail could not be handed over; the text names recipient and subject, never the body."""

    def __init__(self, to: str, subject: str, reason: str) -> None:
        super().__init__(f"could not deliver {subject!r} to {to}: {reason}")
        self.to = to
        self.subject = subject
        self.reason = reason


def to_email(message: Message, sender: str) -> EmailMessage:
    """The RFC 5322 form of `message`, sent by `sender`."""
    email = EmailMessage(policy=policy.default)
    # The policy rejects CR/LF in header values, which rules out header injection.
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    # An explicit domain: without one make_msgid asks DNS for this host's name, which can hang.
    email["Message-ID"] = make_msgid(domain=_domain(sender))
    email.set_content(message.body)
    return email


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


class FileMailbox:
    """Development and tests: each mail is an .eml file in a directory, named in sending order."""

    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender
        self._clock_lock = threading.Lock()
        self._last_ns = 0

    async def send(self, message: Message) -> None:
        """Write `message` as a new .eml file, whole or not at all."""
        email = to_email(message, self.sender)
        name = f"{self._next_ns():020d}-{uuid.uuid4().hex}.eml"
        # Newline-terminated lines, as mail files on disk usually are; SMTP gets CRLF.
        await asyncio.to_thread(self._write, name, email.as_bytes())
        logger.debug("mail to %s (%s) written to %s", message.to, message.subject, name)

    def messages(self) -> list[EmailMessage]:
        """Every mail in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        return [
            message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
            for path in sorted(self.directory.glob("*.eml"))
        ]

    def _next_ns(self) -> int:
        # The clock may be coarse or step back; names must still sort in sending order.
        with self._clock_lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.directory / name
        # A dot name that is not *.eml: readers never see a half-written mail.
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


class SmtpMailer:
    """Sends through an SMTP server with the standard library, in a worker thread.

    `implicit_tls` speaks TLS from the first byte (SMTPS, port 465); otherwise `starttls`
    upgrades the connection (submission, port 587) and refuses to send if the server cannot.
    Either verifies the server's certificate against the system's roots or `cafile`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        cafile: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        if username is not None and password is None:
            raise ValueError("an SMTP username needs a password")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.cafile = cafile
        # Applies to each network operation, so one send can take a few times longer.
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, sender={self.sender!r})"

    async def send(self, message: Message) -> None:
        """Hand `message` to the SMTP server; raise MailDeliveryError if it cannot be done."""
        email = to_email(message, self.sender)
        try:
            await asyncio.to_thread(self._send, email)
        except (smtplib.SMTPException, OSError) as exc:
            # Only the exception's class and the server's reply: never anything of the body.
            raise MailDeliveryError(
                message.to, message.subject, f"{type(exc).__name__}: {exc}"
            ) from exc
        logger.debug("mail to %s (%s) sent via %s", message.to, message.subject, self.host)

    def _send(self, email: EmailMessage) -> None:
        context = ssl.create_default_context(cafile=self.cafile)
        smtp = (
            smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            if self.implicit_tls
            else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        )
        with smtp:
            # Over implicit TLS the connection is encrypted already: no STARTTLS on top.
            if self.starttls and not self.implicit_tls:
                smtp.starttls(context=context)
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(email)


class MailSettings(BaseModel):
    """The mail fields of a service's settings (USERBUS_SMTP_HOST, USERBUS_MAIL_FROM, ...).

    Mixed into the auth service's and the notifier's settings, so that one deployment
    configures one mail server; each keeps a file mailbox of its own.
    """

    # SMTP when smtp_host is set, else one file per message in the service's mailbox.
    mail_from: str = "userbus <no-reply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    # SMTPS (usually port 465): TLS from the first byte; USERBUS_SMTP_STARTTLS then does not
    # apply. A private CA's certificate file verifies the server (else the system's roots).
    smtp_implicit_tls: bool = False
    smtp_cafile: Path | None = None


def mailer_from(settings: MailSettings, mailbox: Path) -> Mailer:
    """SMTP when a host is configured, else the file mailbox in `mailbox` (development, tests)."""
    if settings.smtp_host is None:
        return FileMailbox(mailbox, settings.mail_from)
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        implicit_tls=settings.smtp_implicit_tls,
        cafile=settings.smtp_cafile,
    )
