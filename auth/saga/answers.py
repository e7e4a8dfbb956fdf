"""ProfileAnswers: the auth service follows the profile service's answers with the toolkit."""

import logging
from typing import ClassVar

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.security.audit import AuditLog
from auth.service_layer.registrations import complete_registration, fail_registration
from auth.service_layer.unit_of_work import JoinedUnitOfWork
from consumers.projection import Projection
from events import Envelope, Event, ProfileCreated, ProfileRejected

logger = logging.getLogger(__name__)

NAME = "auth_registrations"


class ProfileAnswers(Projection):
    """Activates or deletes pending accounts as the profile service answers.

    Each answer is applied in the consumer's transaction: the account's change, its events
    in `auth.outbox` and the answer's tracking record commit together, so an answer seen
    twice changes nothing. Its only table is the toolkit's tracking table, in the schema
    `auth_registrations` of the auth database (the name is also the consumer group).
    """

    name: ClassVar[str] = NAME
    handles: ClassVar[frozenset[type[Event]]] = frozenset({ProfileCreated, ProfileRejected})
    metadata: ClassVar[MetaData] = MetaData(schema=NAME)

    def __init__(self, *, event_source: str, audit: AuditLog | None = None) -> None:
        self._event_source = event_source
        self._audit = audit or AuditLog()

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Complete the registration on ProfileCreated, compensate on ProfileRejected."""
        uow = JoinedUnitOfWork(conn, event_source=self._event_source)
        match event:
            case ProfileCreated():
                changed = await complete_registration(uow, event.user_id, audit=self._audit)
            case ProfileRejected():
                changed = await fail_registration(
                    uow, event.user_id, why=event.reason, audit=self._audit
                )
            case _:
                return
        if not changed:
            logger.info(
                "%s: %s for user %s, which is not pending: nothing to do",
                NAME, envelope.type, event.user_id,
            )  # fmt: skip
