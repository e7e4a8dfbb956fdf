"""NotifierProjection: queues the mails an event owes; it never sends one itself."""

import logging
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.notifier import messages
from downstream_examples.notifier.tables import SCHEMA, metadata, outgoing, recipients
from events import Envelope, Event, PasswordChanged, UserDeleted, UserRegistered, UserUpdated
from events.erasure import is_erased_email

logger = logging.getLogger(__name__)

# A welcome mail a day late is still welcome; one for a registration of last year is not.
DEFAULT_MAX_EVENT_AGE = timedelta(hours=24)


class NotifierProjection(Projection):
    """Keeps `notifier.recipients` and adds the mails an event owes to `notifier.outgoing`.

    A mail cannot be rolled back, so `apply` only writes a row in the toolkit's transaction
    (the outbox pattern, on the consumer side); NotificationSender delivers it afterwards.
    Events older than `max_event_age` (a group started at the beginning of a long history,
    a replay) update the recipients but owe no mail; None sends for events of any age.

    A deleted user leaves nothing here: UserDeleted removes their address and every mail
    queued, sent or failed for them (to_address, body). A mail to an erased address (a
    redacted event, replayed or read late) is never queued: there is nobody to write to.
    """

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserUpdated, PasswordChanged, UserDeleted}
    )
    metadata = metadata

    def __init__(self, *, max_event_age: timedelta | None = DEFAULT_MAX_EVENT_AGE) -> None:
        self.max_event_age = max_event_age

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Remember the address, and queue the welcome mail or the password notice."""
        match event:
            case UserRegistered():
                row = {"user_id": event.user_id, "email": event.email, "username": event.username}
                await conn.execute(
                    insert(recipients)
                    .values(row)
                    .on_conflict_do_update(index_elements=[recipients.c.user_id], set_=row)
                )
                subject, body = messages.welcome(event.username)
                await self._queue(conn, envelope, messages.WELCOME, event.email, subject, body)
            case UserUpdated() if "email" in event.model_fields_set and event.email is not None:
                await conn.execute(
                    update(recipients)
                    .where(recipients.c.user_id == event.user_id)
                    .values(email=event.email)
                )
            case PasswordChanged():
                await self._queue_password_notice(conn, event, envelope)
            case UserDeleted():
                # Forget the user: the address, and every mail owed to or sent to them. A mail
                # the sender is delivering right now holds its row lock; this waits for it.
                await conn.execute(delete(recipients).where(recipients.c.user_id == event.user_id))
                await conn.execute(delete(outgoing).where(outgoing.c.user_id == event.user_id))

    async def reset(self, conn: AsyncConnection) -> None:
        """Empty the recipients only: `outgoing` records mails owed and sent, not a view.

        Truncating it would make a replay owe (and send) every mail of the history again;
        kept, the replayed events find their rows and add nothing.
        """
        await conn.execute(text(f'TRUNCATE "{SCHEMA}"."{recipients.name}"'))

    async def _queue_password_notice(
        self, conn: AsyncConnection, event: PasswordChanged, envelope: Envelope
    ) -> None:
        if self._too_old(envelope):
            return
        found = (
            await conn.execute(
                select(recipients.c.email, recipients.c.username).where(
                    recipients.c.user_id == event.user_id
                )
            )
        ).first()
        if found is None:
            # Only when this group never saw the registration (a late start, trimmed history).
            logger.warning(
                "%s: no address for user %s; password notice %s not sent",
                self.name,
                event.user_id,
                envelope.id,
            )
            return
        subject, body = messages.password_changed(found.username, event.reason, event.changed_at)
        await self._queue(conn, envelope, messages.PASSWORD_CHANGED, found.email, subject, body)

    async def _queue(
        self,
        conn: AsyncConnection,
        envelope: Envelope,
        kind: str,
        to_address: str,
        subject: str,
        body: str,
    ) -> None:
        if self._too_old(envelope) or is_erased_email(to_address):
            return
        await conn.execute(
            insert(outgoing)
            .values(
                event_id=envelope.id,
                user_id=envelope.user_id,
                kind=kind,
                to_address=to_address,
                subject=subject,
                body=body,
            )
            .on_conflict_do_nothing(index_elements=[outgoing.c.event_id])
        )

    def _too_old(self, envelope: Envelope) -> bool:
        if self.max_event_age is None:
            return False
        # The contract's times carry a zone; a naive one is read as UTC rather than failing.
        happened = envelope.time if envelope.time.tzinfo else envelope.time.replace(tzinfo=UTC)
        if datetime.now(UTC) - happened <= self.max_event_age:
            return False
        logger.info("%s: %s %s is too old for a mail", self.name, envelope.type, envelope.id)
        return True
