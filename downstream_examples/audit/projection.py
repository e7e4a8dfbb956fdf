"""AuditProjection: every event of every user, appended to `audit.events`, redacted on deletion."""

from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Table, func, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.audit.tables import (
    REDACTED_FUNCTION,
    REFUSE_CHANGE_FUNCTION,
    SCHEMA,
    audit_events,
    metadata,
    refuse_change_trigger,
)
from events import EVENT_TYPES, Envelope, Event, UserDeleted


class AuditProjection(Projection):
    """Appends each event, as delivered, to `audit.events`.

    It handles every type of the contract it was built with, and keeps types newer than
    that contract too, as delivered: an audit log must not have holes. On UserDeleted it
    blanks that user's PII in every row recorded so far (the one change its trigger allows):
    the log keeps the fact of each event, not who it was. Through the toolkit no event of a
    user comes after their deletion (it is their last sequence; lower ones are duplicates).
    A replay rebuilds the whole log (there is nothing else in the schema to keep).
    """

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(EVENT_TYPES.values())
    metadata = metadata
    keeps_unknown_types: ClassVar[bool] = True

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the schema and table, then the trigger that refuses UPDATE and DELETE."""
        # The base class's lock, held to the end of the transaction, also serialises the
        # function and trigger below between processes starting together.
        await super().create_tables(conn)
        await conn.execute(text(REDACTED_FUNCTION))
        await conn.execute(text(REFUSE_CHANGE_FUNCTION))
        await conn.execute(text(refuse_change_trigger(self.schema)))

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Append the event; one already recorded (same id) is left as it is."""
        await _append(conn, self.table(audit_events), [envelope])

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        """Append the events in one statement."""
        await _append(conn, self.table(audit_events), [envelope for _, envelope in batch])

    async def apply_unknown(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Append an event of any type, as delivered."""
        await _append(conn, self.table(audit_events), [envelope])


async def _append(conn: AsyncConnection, table: Table, envelopes: Sequence[Envelope]) -> None:
    rows = [
        {
            "event_id": envelope.id,
            "user_id": envelope.user_id,
            "sequence": envelope.sequence,
            "type": envelope.type,
            "occurred_at": envelope.time,
            "source": envelope.source,
            "data": envelope.data,
        }
        for envelope in envelopes
    ]
    await conn.execute(
        insert(table).values(rows).on_conflict_do_nothing(index_elements=[table.c.event_id])
    )
    deleted = sorted({e.user_id for e in envelopes if e.type == UserDeleted.type_name()})
    if deleted:
        # Only rows that change: a replay from an already redacted log rewrites nothing.
        redacted = getattr(func, SCHEMA).redacted(table.c.data, table.c.user_id, type_=JSONB)
        await conn.execute(
            update(table)
            .where(table.c.user_id.in_(deleted), table.c.data != redacted)
            .values(data=redacted)
        )
