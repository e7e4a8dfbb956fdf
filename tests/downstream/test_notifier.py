"""The notifier on real PostgreSQL: mails queued exactly once per event, then delivered."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.settings import AuthSettings
from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.replay import replay
from consumers.settings import ConsumerSettings
from downstream_examples.notifier.main import create_mailer, create_notifier
from downstream_examples.notifier.projection import NotifierProjection
from downstream_examples.notifier.sender import NotificationSender
from downstream_examples.notifier.settings import NotifierSettings
from events import (
    Envelope,
    PasswordChanged,
    UserDeleted,
    UserRegistered,
    UserUpdated,
    to_envelope,
)
from infra.mail import FileMailbox, MailDeliveryError, Mailer, Message, SmtpMailer
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, eventually, register

pytestmark = pytest.mark.integration

SENDER = "Userbus <no-reply@userbus.test>"


# --- events -------------------------------------------------------------------------------


def registered(name: str | None = None, *, time: datetime | None = None) -> Envelope:
    """A UserRegistered envelope of a new user."""
    name = name or unique_username()
    event = UserRegistered(
        user_id=uuid.uuid4(),
        username=name,
        email=f"{name}@example.com",
        role="user",
        registered_at=time or datetime.now(UTC),
    )
    return to_envelope(event, sequence=1, source="/test", time=time)


def password_changed(registration: Envelope, sequence: int = 2) -> Envelope:
    """The PasswordChanged envelope of a registered user."""
    event = PasswordChanged(
        user_id=registration.user_id, changed_at=datetime.now(UTC), reason="change"
    )
    return to_envelope(event, sequence=sequence, source="/test")


def email_changed(registration: Envelope, email: str, sequence: int = 2) -> Envelope:
    """A UserUpdated envelope that changes only the email."""
    event = UserUpdated(user_id=registration.user_id, updated_at=datetime.now(UTC), email=email)
    return to_envelope(event, sequence=sequence, source="/test")


def deleted(registration: Envelope, sequence: int) -> Envelope:
    """The UserDeleted envelope of a registered user."""
    event = UserDeleted(
        user_id=registration.user_id,
        username=registration.data["username"],
        deleted_at=datetime.now(UTC),
    )
    return to_envelope(event, sequence=sequence, source="/test")


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class Notifications:
    """The projection applied straight to this test's database, and its sender."""

    engine: AsyncEngine
    applier: ProjectionApplier
    mailbox: FileMailbox

    async def apply(self, *envelopes: Envelope) -> BatchOutcome:
        """Apply a batch as the consumer does, in one transaction."""
        async with self.engine.begin() as conn:
            return await self.applier.apply_batch(conn, envelopes)

    def sender(self, mailer: Mailer | None = None, **options: Any) -> NotificationSender:
        """A sender on this database, by default into the test's mailbox."""
        return NotificationSender(self.engine, mailer or self.mailbox, **options)

    async def outgoing(self) -> list[dict[str, Any]]:
        """The outgoing rows, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(text("SELECT * FROM notifier.outgoing ORDER BY created_at"))
            return [dict(row._mapping) for row in rows]

    def mails(self) -> list[EmailMessage]:
        """The mails in the mailbox, in sending order."""
        return self.mailbox.messages()


@pytest.fixture
async def notifications(engine: AsyncEngine, tmp_path: Path) -> Notifications:
    """The notifier's tables on this test's own database, and an empty file mailbox."""
    applier = ProjectionApplier(NotifierProjection())
    async with engine.begin() as conn:
        await applier.setup(conn)
    return Notifications(engine, applier, FileMailbox(tmp_path / "mailbox", SENDER))


class FlakyMailer:
    """Fails its first `failures` sends like an unreachable SMTP server, then delivers."""

    def __init__(self, inner: FileMailbox, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def send(self, message: Message) -> None:
        """Raise MailDeliveryError until the failures are used up, then deliver."""
        self.calls += 1
        if self.calls <= self.failures:
            raise MailDeliveryError(message.to, message.subject, "421 try again later")
        await self.inner.send(message)


# --- the projection and the sender ---------------------------------------------------------


async def test_a_registration_applied_twice_sends_one_welcome_mail(
    notifications: Notifications,
) -> None:
    envelope = registered()
    await notifications.apply(envelope)
    outcome = await notifications.apply(envelope)  # redelivered
    assert outcome.duplicates == 1
    # Even applied without its tracking record (as a replay does), it owes nothing more.
    async with notifications.engine.begin() as conn:
        event = UserRegistered.model_validate(envelope.data)
        await notifications.applier.projection.apply(conn, event, envelope)

    [row] = await notifications.outgoing()
    assert (row["event_id"], row["kind"], row["status"]) == (envelope.id, "welcome", "pending")
    sender = notifications.sender()
    assert await sender.send_due() == 1
    assert await sender.send_due() == 0

    [mail] = notifications.mails()
    assert mail["To"] == envelope.data["email"]
    assert mail["Subject"] == f"Welcome, {envelope.data['username']}"
    assert envelope.data["username"] in mail.get_content()
    [row] = await notifications.outgoing()
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert row["sent_at"] is not None


async def test_a_password_change_sends_a_notice_to_the_registered_address(
    notifications: Notifications,
) -> None:
    registration = registered()
    await notifications.apply(registration, password_changed(registration))
    await notifications.sender().send_due()

    _welcome, notice = notifications.mails()
    assert notice["To"] == registration.data["email"]
    assert notice["Subject"] == "Your password was changed"
    assert registration.data["username"] in notice.get_content()


async def test_a_notice_goes_to_the_address_the_user_changed_to(
    notifications: Notifications,
) -> None:
    registration = registered()
    new_address = f"new_{uuid.uuid4().hex[:8]}@example.com"
    await notifications.apply(
        registration, email_changed(registration, new_address), password_changed(registration, 3)
    )
    await notifications.sender().send_due()

    assert [mail["To"] for mail in notifications.mails()] == [
        registration.data["email"],
        new_address,
    ]


async def test_deleting_a_user_drops_their_pending_mails(notifications: Notifications) -> None:
    registration, other = registered(), registered()
    await notifications.apply(registration, other, password_changed(registration))
    await notifications.apply(deleted(registration, 3))

    assert [row["user_id"] for row in await notifications.outgoing()] == [other.user_id]
    await notifications.sender().send_due()
    assert [mail["To"] for mail in notifications.mails()] == [other.data["email"]]


async def test_the_sender_retries_a_failing_mailer_then_succeeds(
    notifications: Notifications,
) -> None:
    envelope = registered()
    await notifications.apply(envelope)
    mailer = FlakyMailer(notifications.mailbox, failures=2)
    sender = notifications.sender(mailer, retry_base_seconds=0.05, poll_seconds=0.01)

    assert await sender.send_due() == 0  # failed once; the retry is not due yet
    [row] = await notifications.outgoing()
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "pending",
        1,
        "421 try again later",
    )
    stop = asyncio.Event()
    running = asyncio.create_task(sender.run(stop))
    try:

        async def delivered() -> bool:
            return len(notifications.mails()) == 1

        await eventually(delivered, timeout=5)
    finally:
        stop.set()
        await running
    assert mailer.calls == 3
    [row] = await notifications.outgoing()
    assert (row["status"], row["attempts"]) == ("sent", 3)


async def test_the_sender_gives_up_after_its_attempts_and_marks_the_mail_failed(
    notifications: Notifications, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = registered()
    await notifications.apply(envelope)
    mailer = FlakyMailer(notifications.mailbox, failures=1000)
    sender = notifications.sender(mailer, max_attempts=3, retry_base_seconds=0)

    with caplog.at_level(logging.ERROR, logger="downstream_examples.notifier.sender"):
        assert await sender.send_due() == 0
    assert mailer.calls == 3
    [row] = await notifications.outgoing()
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert "giving up" in caplog.text
    assert str(envelope.id) in caplog.text
    assert await sender.send_due() == 0
    assert mailer.calls == 3


class SlowToAcknowledge:
    """Delivers the first mail, then is slow to return; the second send fails meanwhile."""

    def __init__(self, inner: FileMailbox) -> None:
        self.inner = inner
        self.calls = 0
        self.first_delivered = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.inner.send(message)
            self.first_delivered.set()
            await asyncio.sleep(0.3)
            return
        await self.first_delivered.wait()
        raise MailDeliveryError(message.to, message.subject, "550 mailbox unavailable")


async def test_a_worker_dying_lets_the_other_mark_the_mail_it_sent(
    notifications: Notifications,
) -> None:
    # Cancelled between its send and its mark, the other worker's mail stayed pending and
    # went out again after the restart.
    await notifications.apply(registered(), registered())
    sender = notifications.sender(SlowToAcknowledge(notifications.mailbox), workers=2)

    async def a_bug(*_: object) -> None:
        raise RuntimeError("a bug in recording the failure")

    sender._record_failure = a_bug  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug"):
        await asyncio.wait_for(sender.run(asyncio.Event()), 5)

    rows = await notifications.outgoing()
    assert sorted(row["status"] for row in rows) == ["pending", "sent"]
    assert len(notifications.mails()) == 1


async def test_concurrent_senders_send_each_mail_once(notifications: Notifications) -> None:
    envelopes = [registered() for _ in range(12)]
    await notifications.apply(*envelopes)
    senders = [notifications.sender() for _ in range(3)]

    counts = await asyncio.gather(*(sender.send_due() for sender in senders))

    assert sum(counts) == 12
    assert sorted(mail["To"] for mail in notifications.mails()) == sorted(
        e.data["email"] for e in envelopes
    )


async def test_an_old_registration_is_remembered_but_owes_no_welcome_mail(
    notifications: Notifications,
) -> None:
    registration = registered(time=datetime.now(UTC) - timedelta(days=30))
    await notifications.apply(registration, password_changed(registration))
    await notifications.sender().send_due()

    [notice] = notifications.mails()
    assert notice["To"] == registration.data["email"]
    assert notice["Subject"] == "Your password was changed"


@dataclass
class ListSource:
    """An event history held in memory."""

    envelopes: Sequence[Envelope]

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The history in one batch."""
        yield list(self.envelopes)


async def test_a_replay_sends_nothing_again(notifications: Notifications) -> None:
    registration = registered()
    history = [registration, password_changed(registration)]
    await notifications.apply(*history)
    await notifications.sender().send_due()

    outcome = await replay(NotifierProjection(), notifications.engine, ListSource(history))

    assert outcome.applied == 2
    assert await notifications.sender().send_due() == 0
    assert len(notifications.mails()) == 2


def test_the_mailer_is_the_file_mailbox_unless_an_smtp_host_is_set(tmp_path: Path) -> None:
    mailbox = create_mailer(NotifierSettings(data_dir=tmp_path))
    assert isinstance(mailbox, FileMailbox)
    assert mailbox.directory == tmp_path / "notifier-mailbox"
    smtp = create_mailer(NotifierSettings(smtp_host="mail.example.com", smtp_port=2525))
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.host, smtp.port) == ("mail.example.com", 2525)


# --- end to end ---------------------------------------------------------------------------


async def test_registration_and_password_change_over_http_each_mail_once(
    isolated_auth_settings: AuthSettings,
    relay_settings: RelaySettings,
    consumer_settings: ConsumerSettings,
    tmp_path: Path,
) -> None:
    mailbox = FileMailbox(tmp_path / "notifier-mailbox", SENDER)
    notifier = create_notifier(
        consumer_settings,
        mailbox,
        NotifierSettings(notifier_poll_seconds=0.02, notifier_workers=1),
    )
    stop = asyncio.Event()
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    running = asyncio.create_task(notifier.run(stop))
    try:
        async with api_client(isolated_auth_settings) as client:
            username = unique_username()
            await register(client, username)

            async def mails(count: int) -> bool:
                return len(mailbox.messages()) == count

            await eventually(lambda: mails(1))
            response = await client.post(
                "/auth/password",
                json={
                    "username": username,
                    "old_password": "a long passphrase",
                    "new_password": "another long passphrase",
                },
            )
            assert response.status_code == 204
            await eventually(lambda: mails(2))
    finally:
        stop.set()
        await running
        await relay

    welcome, notice = mailbox.messages()
    assert (welcome["To"], welcome["Subject"]) == (
        f"{username}@example.com",
        f"Welcome, {username}",
    )
    assert (notice["To"], notice["Subject"]) == (
        f"{username}@example.com",
        "Your password was changed",
    )
    assert notifier.sender.sent == 2
    assert notifier.consumer.totals.applied == 2
