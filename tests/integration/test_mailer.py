"""The mailers on a real directory and a real local SMTP server (aiosmtpd)."""

import asyncio
import logging
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from infra.mail import FileMailbox, MailDeliveryError, Message, SmtpMailer

pytestmark = [
    pytest.mark.integration,
    # The test server takes AUTH over plain TCP on loopback; aiosmtpd warns about that.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

SENDER = "Userbus <no-reply@userbus.test>"
USERNAME = "mailer"
PASSWORD = "s3cret-smtp-password"


def reset_message(to: str | None = None) -> Message:
    """A password-reset mail with a token of its own, to a recipient of its own."""
    token = uuid.uuid4().hex
    return Message(
        to=to or f"user_{uuid.uuid4().hex[:8]}@example.test",
        subject=f"Reset your password {token[:6]}",
        body=f"Hello,\n\nopen https://userbus.test/reset?token={token} within 15 minutes.\n",
    )


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- FileMailbox ---------------------------------------------------------------------------


def eml_files(directory: Path) -> list[Path]:
    """The mail files in `directory`, by name."""
    return sorted(directory.glob("*.eml"))


def all_files(directory: Path) -> list[Path]:
    """Every entry of `directory`, by name (temporary files included)."""
    return sorted(directory.iterdir())


def permissions(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """A mailbox directory that does not exist yet."""
    return tmp_path / "var" / "mail"


async def test_sent_mail_is_a_parsable_file_with_headers(mail_dir: Path) -> None:
    mailbox = FileMailbox(mail_dir, SENDER)
    message = reset_message()

    await mailbox.send(message)

    (path,) = eml_files(mail_dir)
    parsed = message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
    assert parsed["From"] == SENDER
    assert parsed["To"] == message.to
    assert parsed["Subject"] == message.subject
    sent_at = parsedate_to_datetime(parsed["Date"])
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    assert parsed["Message-ID"].startswith("<")
    assert parsed["Message-ID"].endswith("@userbus.test>")
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == message.body


async def test_mailbox_files_are_private(mail_dir: Path) -> None:
    await FileMailbox(mail_dir, SENDER).send(reset_message())

    assert permissions(mail_dir) == 0o700
    (path,) = eml_files(mail_dir)
    assert permissions(path) == 0o600


async def test_messages_are_read_back_oldest_first(mail_dir: Path) -> None:
    mailbox = FileMailbox(mail_dir, SENDER)
    first, second = reset_message(), reset_message()

    await mailbox.send(first)
    await mailbox.send(second)

    assert len(eml_files(mail_dir)) == 2
    read = mailbox.messages()
    assert [m["Subject"] for m in read] == [first.subject, second.subject]
    assert [m.get_content() for m in read] == [first.body, second.body]


async def test_concurrent_sends_do_not_clash(mail_dir: Path) -> None:
    # Two mailboxes on one directory, as two processes of a dev setup would be.
    mailboxes = [FileMailbox(mail_dir, SENDER), FileMailbox(mail_dir, SENDER)]
    sent = [reset_message() for _ in range(40)]

    await asyncio.gather(*(mailboxes[i % 2].send(m) for i, m in enumerate(sent)))

    files = eml_files(mail_dir)
    assert len(files) == len(sent)
    assert all_files(mail_dir) == files, "no temporary files are left behind"
    read = mailboxes[0].messages()
    assert sorted(m.get_content() for m in read) == sorted(m.body for m in sent)


async def test_empty_mailbox_has_no_messages(mail_dir: Path) -> None:
    assert FileMailbox(mail_dir, SENDER).messages() == []


async def test_header_injection_is_refused_and_nothing_written(mail_dir: Path) -> None:
    mailbox = FileMailbox(mail_dir, SENDER)
    message = Message(to="victim@example.test\r\nBcc: attacker@example.test", subject="x", body="y")

    with pytest.raises(ValueError, match="linefeed"):
        await mailbox.send(message)

    assert mailbox.messages() == []


# --- SmtpMailer ----------------------------------------------------------------------------


@dataclass
class Received:
    """One mail as the SMTP server got it."""

    mail_from: str | None
    rcpt_tos: list[str]
    email: EmailMessage
    auth_data: Any


def text_of(email: EmailMessage) -> str:
    """The plain-text body of a mail received over SMTP, with its CRLF line ends as LF."""
    content: str = email.get_content()
    return content.replace("\r\n", "\n")


class CollectingHandler:
    """An aiosmtpd handler that keeps every mail it is given."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        """Keep the mail and accept it."""
        assert isinstance(envelope.content, bytes)
        email = message_from_bytes(envelope.content, _class=EmailMessage, policy=policy.default)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), email, session.auth_data)
        )
        return "250 Message accepted for delivery"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """An aiosmtpd authenticator that knows one user."""
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd itself answers a failure with 535.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpServer:
    """A running local SMTP server and what it has received."""

    port: int
    handler: CollectingHandler


def run_server(**smtp_options: Any) -> Iterator[SmtpServer]:
    """Run an aiosmtpd server on a free 127.0.0.1 port until the generator is closed."""
    handler = CollectingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield SmtpServer(port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server that accepts anything, without authentication."""
    yield from run_server()


@pytest.fixture
def auth_smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server that accepts mail only after AUTH (over plain TCP, for the test)."""
    yield from run_server(authenticator=check_password, auth_required=True, auth_require_tls=False)


async def test_smtp_mailer_delivers(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp_server.port, SENDER, timeout=5)
    message = reset_message()

    await mailer.send(message)

    (received,) = smtp_server.handler.received
    assert received.mail_from == "no-reply@userbus.test"
    assert received.rcpt_tos == [message.to]
    assert received.email["From"] == SENDER
    assert received.email["To"] == message.to
    assert received.email["Subject"] == message.subject
    assert received.email["Message-ID"].endswith("@userbus.test>")
    assert text_of(received.email) == message.body
    assert received.auth_data is None


async def test_smtp_mailer_logs_in_when_given_credentials(auth_smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(
        "127.0.0.1", auth_smtp_server.port, SENDER, username=USERNAME, password=PASSWORD, timeout=5
    )
    message = reset_message()

    await mailer.send(message)

    (received,) = auth_smtp_server.handler.received
    assert received.auth_data == (USERNAME.encode(), PASSWORD.encode())
    assert text_of(received.email) == message.body


async def test_smtp_mailer_without_credentials_is_refused(auth_smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer("127.0.0.1", auth_smtp_server.port, SENDER, timeout=5)
    message = reset_message()

    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(message)

    assert message.body not in str(caught.value)
    assert auth_smtp_server.handler.received == []


async def test_smtp_mailer_with_a_wrong_password_fails(auth_smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(
        "127.0.0.1", auth_smtp_server.port, SENDER, username=USERNAME, password="wrong", timeout=5
    )

    with pytest.raises(MailDeliveryError, match="SMTPAuthenticationError"):
        await mailer.send(reset_message())

    assert auth_smtp_server.handler.received == []


async def test_smtp_mailer_refuses_to_send_when_starttls_is_unavailable(
    smtp_server: SmtpServer,
) -> None:
    # The server offers no STARTTLS: the mail must not go out in the clear instead.
    mailer = SmtpMailer("127.0.0.1", smtp_server.port, SENDER, starttls=True, timeout=5)

    with pytest.raises(MailDeliveryError, match="STARTTLS"):
        await mailer.send(reset_message())

    assert smtp_server.handler.received == []


async def test_unreachable_server_fails_quickly_without_the_body() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), SENDER, timeout=0.5)
    message = reset_message()

    started = time.monotonic()
    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(message)

    assert time.monotonic() - started < 2
    error = caught.value
    assert error.to == message.to
    assert message.to in str(error)
    assert message.body not in str(error)
    assert message.body not in repr(error)
    assert message.body not in str(error.__cause__)


async def test_smtp_password_is_not_in_the_mailer_repr() -> None:
    mailer = SmtpMailer("127.0.0.1", 25, SENDER, username=USERNAME, password=PASSWORD)

    assert PASSWORD not in repr(mailer)


def test_username_without_password_is_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        SmtpMailer("127.0.0.1", 25, SENDER, username=USERNAME)


async def test_mailers_never_log_the_body(
    mail_dir: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="infra.mail")
    message = reset_message()

    await FileMailbox(mail_dir, SENDER).send(message)
    await SmtpMailer("127.0.0.1", smtp_server.port, SENDER, timeout=5).send(message)

    ours = [r.getMessage() for r in caplog.records if r.name == "infra.mail"]
    assert len(ours) == 2
    assert all(message.to in line for line in ours)
    token = message.body.split("token=")[1].split()[0]
    assert not any(token in line for line in ours)
