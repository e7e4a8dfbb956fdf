"""ProfileAnswers: the auth service follows the profile service's answers with the toolkit."""

import logging
from dataclasses import replace
from typing import ClassVar

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.service_layer.context import AuthContext
from auth.service_layer.registrations import complete_registration, fail_registration
from auth.service_layer.unit_of_work import JoinedUnitOfWork
from consumers.projection import Projection
from events import Envelope, Event, ProfileCreated, ProfileRejected
from infra.observability.trace_context import following

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

    def __init__(self, ctx: AuthContext, *, event_source: str) -> None:
        self._ctx = ctx
        self._event_source = event_source

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Complete the registration on ProfileCreated, compensate on ProfileRejected."""
        # The use cases' unit of work joins the consumer's transaction instead of opening one.
        ctx = replace(
            self._ctx, uow_factory=lambda: JoinedUnitOfWork(conn, event_source=self._event_source)
        )
        # The account's events join the trace of the answer (and so of the registration).
        with following(envelope.traceparent, envelope.tracestate):
            match event:
                case ProfileCreated():
                    changed = await complete_registration(ctx, user_id=event.user_id)
                case ProfileRejected():
                    why = event.reason
                    changed = await fail_registration(ctx, user_id=event.user_id, why=why)
                case _:
                    return
        if not changed:
            logger.info(
                "%s: %s for user %s, which is not pending: nothing to do",
                NAME, envelope.type, event.user_id,
            )  # fmt: skip
